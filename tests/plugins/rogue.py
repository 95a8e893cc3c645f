"""Test plugin: code that breaks the rules of the process it runs in.

``quitter[how=...,after=K]`` leaves its step after ``K`` steps by ``sys.exit(3)`` (``exit``),
``raise SystemExit("bye")`` (``systemexit``) or ``raise KeyboardInterrupt`` with no signal
(``keyboard``). ``mutating[target=...,via=...]`` writes into ``problem.Y``, ``W_true`` or
``H_true`` during ``init``: with a torch in-place op (``torch``), through a NumPy view
(``numpy``, which torch's version counter does not see), through ``.data`` (``data``, a
tensor with a version counter of its own), or by swapping two entries of ``Y`` through
NumPy (``swap``, which leaves every sum of the entries unchanged). It then runs MU.
The dataset ``quitting[how=...,seed=S]`` leaves the same ways when loaded for seed ``S``;
``sharing`` caches its problem and hands out that very object on every load, not a copy.
"""

import sys

import torch

from proxmf_bench import DatasetSpec, Param, Problem, SolverSpec, hookimpl

HOW = ("exit", "systemexit", "keyboard")


def _leave(how: str) -> None:
    if how == "exit":
        sys.exit(3)
    if how == "systemexit":
        raise SystemExit("bye")
    raise KeyboardInterrupt


class Quitter:
    def __init__(self, how="exit", after=1):
        self.how, self.after = how, after

    def init(self, problem, W0, H0):
        self.W, self.H, self.k = W0, H0, 0

    def step(self):
        self.k += 1
        if self.k > self.after:
            _leave(self.how)

    def factors(self):
        return self.W, self.H


class Mutating:
    """Modifies the problem in ``init``, then runs plain MU on what it sees."""

    def __init__(self, target="Y", via="torch"):
        self.target, self.via = target, via

    def init(self, problem, W0, H0):
        X = getattr(problem, self.target)
        if self.via == "torch":
            X.mul_(0.5).add_(torch.rand_like(X))
        elif self.via == "numpy":
            view = X.numpy()
            view[...] = view[::-1].copy()
        elif self.via == "data":
            X.data.pow_(3)
        elif self.via == "swap":
            view = X.numpy()
            view[0, 0], view[-1, -1] = view[-1, -1], view[0, 0]
        self.Y, self.W, self.H = problem.Y, W0, H0

    def step(self):
        Y, W, H = self.Y, self.W, self.H
        H.mul_((W.T @ Y) / ((W.T @ W) @ H).clamp_min(1e-12))
        W.mul_((Y @ H.T) / (W @ (H @ H.T)).clamp_min(1e-12))

    def factors(self):
        return self.W, self.H


def _load_quitting(params, seed, device, dtype):
    if seed == params["seed"]:
        _leave(params["how"])
    Y = torch.rand(12, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return Problem(Y=Y.to(device, dtype), rank=2, name="quitting")


_SHARED = {}


def _load_sharing(params, seed, device, dtype):
    if seed not in _SHARED:
        gen = torch.Generator().manual_seed(seed)
        W, H = torch.rand(12, 2, generator=gen, dtype=torch.float64), torch.rand(2, 10, generator=gen, dtype=torch.float64)
        _SHARED[seed] = Problem(Y=W @ H, rank=2, W_true=W, H_true=H, name="sharing")
    return _SHARED[seed].to(device, dtype)  # no copy on cpu/float64: the cache itself


@hookimpl
def proxmf_register_solvers(register):
    register(SolverSpec(name="quitter", factory=Quitter,
                        params=(Param("how", "exit", str, choices=HOW), Param("after", 1, int, low=0))))
    register(SolverSpec(name="mutating", factory=Mutating, params=(
        Param("target", "Y", str, choices=("Y", "W_true", "H_true")),
        Param("via", "torch", str, choices=("torch", "numpy", "data", "swap")),
    )))


@hookimpl
def proxmf_register_datasets(register):
    register(DatasetSpec(name="quitting", load=_load_quitting,
                         params=(Param("how", "exit", str, choices=HOW), Param("seed", 1, int))))
    register(DatasetSpec(name="sharing", load=_load_sharing, ground_truth=True))
