"""Running a benchmark. ``cells``: what one run of one solver is and returns; ``harness``: the
timed stepped and black-box loops; ``schedule``: when loss is recorded; ``grid``: the grid a
run computes and its manifest; ``serial``: cells one after another; ``runner``: the Python
API behind ``proxmf-bench run``; ``store``: the run directory; ``isolation`` and
``dask_backend``: cells in worker processes and on dask; ``interrupts``: Ctrl-C and SIGTERM;
``resources``: memory; ``environment``: what ``meta.json`` records; ``progress``: the
terminal bars."""
