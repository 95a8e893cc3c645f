"""Test plugin: solvers whose worker process a test kills from outside.

Every process that runs a cell of these solvers writes its PID to a file in ``$LOST_PIDS``
(a directory), so the test knows whom to signal:

- ``waiting[seconds=S]`` sleeps ``S`` seconds per step (in Python, the GIL released);
- ``gil_holder`` sleeps in a C call that keeps the GIL, as a solver stuck in an extension
  would: no Python thread of its process runs until it returns (600 s).

Importing this file in a process whose parent imported it too (a worker process) with
``$LOST_HOLD`` naming an existing file blocks until that file is removed: the test then
kills a worker that is still starting. With ``$LOST_DIE_AT_START`` set, such a process
exits at once instead (every worker dies while starting).
"""

import ctypes
import os
import time
from pathlib import Path

from proxmf_bench import Param, SolverSpec, hookimpl


def _mark(kind: str) -> None:
    folder = os.environ.get("LOST_PIDS")
    if folder:
        Path(folder, f"{kind}-{os.getpid()}").write_text(str(os.getppid()))


def _hold_while_starting() -> None:
    folder, hold = os.environ.get("LOST_PIDS"), os.environ.get("LOST_HOLD", "")
    if not folder:
        return
    parent_imported = Path(folder, f"import-{os.getppid()}").exists()
    _mark("import")
    if parent_imported and os.environ.get("LOST_DIE_AT_START"):
        os._exit(7)
    while parent_imported and hold and Path(hold).exists():
        time.sleep(0.05)


_hold_while_starting()


class _Base:
    def init(self, problem, W0, H0):
        self.W, self.H = W0, H0
        self.marked = False

    def factors(self):
        return self.W, self.H

    def step(self):
        if not self.marked:
            _mark("cell")
            self.marked = True
        self.wait()


class Waiting(_Base):
    def __init__(self, seconds=0.05):
        self.seconds = seconds

    def wait(self):
        time.sleep(self.seconds)


class GilHolder(_Base):
    def wait(self):
        ctypes.PyDLL(None).sleep(600)  # PyDLL: the GIL stays held during the call


@hookimpl
def proxmf_register_solvers(register):
    register(SolverSpec(name="waiting", factory=Waiting, params=(Param("seconds", 0.05, float, low=0),)))
    register(SolverSpec(name="gil_holder", factory=GilHolder))
