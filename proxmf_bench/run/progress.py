"""Terminal progress for ``run``: a bar over cells with an ETA and a bar for the current cell.

The cell's bar counts iterations up to ``--max-iter``, or solver seconds up to ``--max-time``
when there is no iteration cap. Used only when standard error is a terminal; otherwise the
harness runs silently.
"""

from __future__ import annotations

import sys

from tqdm import tqdm

from proxmf_bench.run.cells import Cell, CellObserver, CellResult, Limits


class ProgressBars(CellObserver):
    def __init__(self, total_cells: int, limits: Limits, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.limits = limits
        self.by_time = limits.max_iter is None
        self.grid = tqdm(total=total_cells, desc="cells", unit="cell", file=self.stream, position=0)
        self.cell_bar: tqdm | None = None

    def cell_started(self, cell: Cell, index: int, total: int) -> None:
        self._open(f"{cell.solver.label} on {cell.dataset.label} ({cell.device}, {cell.dtype}, seed {cell.seed})")

    def _open(self, label: str) -> None:
        if self.cell_bar is not None:
            self.cell_bar.close()
        if self.by_time:
            self.cell_bar = tqdm(total=self.limits.max_time, desc=label, unit="s", file=self.stream, position=1,
                                 leave=False, bar_format="{l_bar}{bar}| {n:.3g}/{total:.3g} s [{elapsed}<{remaining}{postfix}]")
        else:
            self.cell_bar = tqdm(total=self.limits.max_iter, desc=label, unit="it", file=self.stream, position=1,
                                 leave=False)

    def repeat_started(self, cell: Cell, repeat: int, total: int) -> None:
        self._open(f"{cell.solver.label} on {cell.dataset.label}, repeat {repeat}/{total}")

    def recorded(self, cell: Cell, iteration: int, time_s: float, loss: float) -> None:
        if self.cell_bar is not None:
            done = min(time_s, self.limits.max_time) if self.by_time else iteration
            self.cell_bar.update(done - self.cell_bar.n)
            self.cell_bar.set_postfix(it=iteration, loss=f"{loss:.4g}", refresh=False)

    def cell_finished(self, result: CellResult) -> None:
        if self.cell_bar is not None:
            self.cell_bar.close()
            self.cell_bar = None
        if result.stop_reason in ("error", "diverged"):
            self.grid.write(f"{result.stop_reason}: {result.cell.solver.label} on {result.cell.dataset.label}"
                            + (f": {result.error}" if result.error else ""))
        self.grid.update(1)

    def close(self) -> None:
        if self.cell_bar is not None:
            self.cell_bar.close()
        self.grid.close()
