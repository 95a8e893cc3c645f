"""Test plugin: solvers that take their process down. Only ever run them in worker processes.

``segfault`` dereferences a null pointer, ``exiting`` calls ``os._exit``, ``hanging`` never
returns from a step, ``hog`` allocates memory until it runs out, ``stubborn`` swallows
Ctrl-C (so a second one is needed). Each touches ``$FAULTY_MARKER`` (if set) once running.
"""

import ctypes
import os
import time
from pathlib import Path

import torch

from proxmf_bench import Param, SolverSpec, hookimpl


class _Base:
    def init(self, problem, W0, H0):
        self.W, self.H = W0, H0
        self.k = 0

    def factors(self):
        return self.W, self.H

    def step(self):
        self.k += 1
        marker = os.environ.get("FAULTY_MARKER")
        if marker:
            Path(marker).touch()
        if self.k > self.after:
            self.misbehave()


class Segfault(_Base):
    def __init__(self, after=2):
        self.after = after

    def misbehave(self):
        ctypes.string_at(0)


class Exiting(_Base):
    def __init__(self, after=2):
        self.after = after

    def misbehave(self):
        os._exit(3)


class Hanging(_Base):
    def __init__(self, after=2):
        self.after = after

    def misbehave(self):
        while True:
            time.sleep(1.0)


class Hog(_Base):
    def __init__(self, after=2):
        self.after = after
        self.kept = []

    def misbehave(self):
        while True:
            self.kept.append(torch.ones(32 * 1024 * 1024, dtype=torch.float64))  # 256 MiB each


class Stubborn(_Base):
    def __init__(self, after=0):
        self.after = after

    def misbehave(self):
        while True:
            try:
                time.sleep(1.0)
            except KeyboardInterrupt:
                pass


@hookimpl
def proxmf_register_solvers(register):
    for name, cls in (("segfault", Segfault), ("exiting", Exiting), ("hanging", Hanging), ("hog", Hog),
                      ("stubborn", Stubborn)):
        register(SolverSpec(name=name, factory=cls, params=(Param("after", cls().after, int, low=0),)))
