"""Test plugin: datasets with invalid data and solvers that misbehave on purpose."""

import os
import time
from pathlib import Path

import torch

from proxmf_bench import DatasetSpec, Param, Problem, SolverSpec, hookimpl


def _load(params, seed, device, dtype):
    Y = torch.rand(20, 15, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    if params["kind"] == "negative":
        Y[3, 4] = -1.0
    elif params["kind"] == "nan":
        Y[0, 0] = float("nan")
    return Problem(Y=Y.to(device, dtype), rank=params["rank"], name="bad")


class Exploding:
    """Multiplies the factors by 10 each step: the loss overflows to inf."""

    def init(self, problem, W0, H0):
        self.W, self.H = W0, H0

    def step(self):
        self.W.mul_(1e60)
        self.H.mul_(1e60)

    def factors(self):
        return self.W, self.H


class Crashing(Exploding):
    def __init__(self, after=2):
        self.after = after
        self.k = 0

    def step(self):
        self.k += 1
        if self.k > self.after:
            raise RuntimeError("solver blew up on purpose")


class Sleepy(Exploding):
    """Sleeps each step; touches the file named by $SLEEPY_MARKER once it is running."""

    def __init__(self, seconds=0.05):
        self.seconds = seconds

    def step(self):
        marker = os.environ.get("SLEEPY_MARKER")
        if marker:
            Path(marker).touch()
        time.sleep(self.seconds)


@hookimpl
def proxmf_register_datasets(register):
    register(DatasetSpec(
        name="bad",
        load=_load,
        params=(Param("kind", "ok", str, choices=("ok", "negative", "nan")), Param("rank", 3, int)),
    ))


@hookimpl
def proxmf_register_solvers(register):
    register(SolverSpec(name="exploding", factory=Exploding))
    register(SolverSpec(name="crashing", factory=Crashing, params=(Param("after", 2, int, low=0),)))
    register(SolverSpec(name="sleepy", factory=Sleepy, params=(Param("seconds", 0.05, float, low=0),)))
