"""A plugin file for the report tests: a working solver, one that fails, one that diverges,
and a dataset without ground truth."""

import torch

from proxmf_bench import DatasetSpec, Param, Problem, SolverSpec, hookimpl


class ProjectedGradient:
    """Alternating projected gradient steps ``X <- max(X - step * grad / L, 0)``."""

    def __init__(self, step: float = 1.0) -> None:
        self.step_scale = step

    def init(self, problem, W0, H0):
        self.Y, self.W, self.H, self.fixed_W = problem.Y, W0.clone(), H0.clone(), problem.fixed_W

    def step(self):
        Y, W, H = self.Y, self.W, self.H
        WtW = W.T @ W
        H.sub_(self.step_scale * (WtW @ H - W.T @ Y) / torch.linalg.matrix_norm(WtW, 2)).clamp_min_(0)
        if self.fixed_W:
            return
        HHt = H @ H.T
        W.sub_(self.step_scale * (W @ HHt - Y @ H.T) / torch.linalg.matrix_norm(HHt, 2)).clamp_min_(0)

    def factors(self):
        return self.W, self.H


class Broken(ProjectedGradient):
    """Fails on its third step, after a few recorded points."""

    def init(self, problem, W0, H0):
        super().init(problem, W0, H0)
        self.calls = 0

    def step(self):
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("broken on purpose")
        super().step()


class Exploding(ProjectedGradient):
    """Multiplies W by 1e100 per step until the loss overflows: a run that diverges."""

    def step(self):
        self.W.mul_(1e100)


def load_lowrank(params, seed, device, dtype):
    gen = torch.Generator().manual_seed(seed)
    Y = torch.rand(params["m"], 3, generator=gen, dtype=torch.float64) @ torch.rand(
        3, params["n"], generator=gen, dtype=torch.float64)
    return Problem(Y=Y, rank=3, name="lowrank").to(device, dtype)


@hookimpl
def proxmf_register_solvers(register):
    register(SolverSpec(name="pgd", factory=ProjectedGradient,
                        params=(Param("step", 1.0, float, "step as a multiple of 1/L", low=0.0),)))
    register(SolverSpec(name="broken", factory=Broken, params=()))
    register(SolverSpec(name="exploding", factory=Exploding, params=()))


@hookimpl
def proxmf_register_datasets(register):
    register(DatasetSpec(name="lowrank", load=load_lowrank,
                         params=(Param("m", 20, int, "rows", low=3), Param("n", 15, int, "columns", low=3))))
