"""Ctrl-C and SIGTERM during a run: stop cleanly the first time, at once the second time.

The first SIGINT or SIGTERM raises :class:`KeyboardInterrupt` in the main thread, so the
harness records the running cell as ``interrupted`` and the runner writes what finished.
While a finished cell is being written (:meth:`InterruptGuard.critical`) the interrupt waits
for the write to complete; while the final files are written (:meth:`InterruptGuard.deferred`)
a first signal only marks the run as interrupted. A second signal, at any point,
ends the process immediately with status ``128 + signal``: every finished cell is already
on disk in ``RUN_DIR/cells/`` and ``--resume`` continues from there.

A :class:`KeyboardInterrupt` raised while these handlers are installed and no signal has
arrived came from plugin code, not from the user: :func:`spurious_interrupt` tells the
harness so, and it records that cell as an error instead of stopping the run.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

HANDLED = (signal.SIGINT, signal.SIGTERM)

# The signal handlers installed now: objects whose ``interrupted`` says whether a signal
# reached them (an InterruptGuard, or a worker process's own handler).
_watchers: list = []


def watch(watcher) -> None:
    """Count ``watcher`` (an object with an ``interrupted`` attribute) among the installed handlers."""
    _watchers.append(watcher)


def unwatch(watcher) -> None:
    if watcher in _watchers:
        _watchers.remove(watcher)


def spurious_interrupt() -> bool:
    """Whether a ``KeyboardInterrupt`` seen now was raised by code rather than by a signal.

    True only when a handler of ours is installed (so a signal would have been noted) and none
    has noted one. Without one (a caller's own loop) every ``KeyboardInterrupt`` counts as real.
    """
    return bool(_watchers) and not any(w.interrupted for w in _watchers)


class InterruptGuard:
    """Installs the handlers on enter (main thread only) and restores the previous ones on exit.

    ``signum`` is the first signal received, or ``None``. ``note`` is printed on a second
    signal before exiting (the runner puts the run directory there).
    """

    def __init__(self, note: str = "") -> None:
        self.signum: int | None = None
        self.note = note
        self._defer = False
        self._held = False
        self._pending = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            for sig in HANDLED:
                self._previous[sig] = signal.signal(sig, self._handle)
            watch(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        unwatch(self)

    @property
    def interrupted(self) -> bool:
        return self.signum is not None

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Within this block a first signal is remembered but does not raise."""
        self._defer = True
        try:
            yield
        finally:
            self._defer = False

    @contextmanager
    def critical(self) -> Iterator[None]:
        """A first signal within this block raises only once the block has completed."""
        self._held = True
        try:
            yield
        finally:
            self._held = False
        if self._pending:
            self._pending = False
            raise KeyboardInterrupt

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            name = signal.Signals(signum).name
            sys.stderr.write(f"proxmf-bench: second {name}: exiting now. {self.note}\n")
            sys.stderr.flush()
            os._exit(128 + signum)
        self.signum = signum
        if self._held:
            self._pending = True
        elif not self._defer:
            raise KeyboardInterrupt
