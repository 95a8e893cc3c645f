"""Built-in solver plugins (installed as ``proxmf_bench.solvers``), one module per family."""
