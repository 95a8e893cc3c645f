"""Terminal progress for ``run``: a bar over cells with an ETA and a bar for the current cell.

Used only when standard error is a terminal; otherwise the harness runs silently.
"""

from __future__ import annotations

import sys

from tqdm import tqdm

from proxmf_bench.run.cells import Cell, CellObserver, CellResult


class ProgressBars(CellObserver):
    def __init__(self, total_cells: int, max_iter: int, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.max_iter = max_iter
        self.grid = tqdm(total=total_cells, desc="cells", unit="cell", file=self.stream, position=0)
        self.cell_bar: tqdm | None = None

    def cell_started(self, cell: Cell, index: int, total: int) -> None:
        label = f"{cell.solver.label} on {cell.dataset.label} ({cell.device}, {cell.dtype}, seed {cell.seed})"
        self.cell_bar = tqdm(
            total=self.max_iter, desc=label, unit="it", file=self.stream, position=1, leave=False
        )

    def recorded(self, cell: Cell, iteration: int, time_s: float, loss: float) -> None:
        if self.cell_bar is not None:
            self.cell_bar.update(iteration - self.cell_bar.n)
            self.cell_bar.set_postfix(loss=f"{loss:.4g}", refresh=False)

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
