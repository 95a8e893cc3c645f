"""Test plugin: solvers that each break one property of the contract on purpose.

All but the last are MU. ``half_loss`` reports half its loss from ``loss()``; ``as_float64``
returns float64 factors whatever the problem's dtype; ``floors_data`` floors ``problem.Y`` in
place; ``unseeded`` perturbs its start with NumPy's global generator, which no seed fixes;
``timed`` reads the clock in ``step``; ``chatty`` prints from ``step``; ``ignores_fixed_W``
updates ``W`` of a fixed-W problem; ``fixed_budget`` is a black-box solver that runs 10
iterations whatever budget it is given.
"""

from time import perf_counter

import numpy as np
import torch

from proxmf_bench import SolverSpec, hookimpl
from proxmf_bench.solve.blackbox import BlackBoxSolver
from proxmf_bench.solve.mu import mu_update_H, mu_update_W
from proxmf_bench.solvers.mu import MU


class HalfLoss(MU):
    def loss(self):
        return 0.5 * super().loss()


class AsFloat64(MU):
    def factors(self):
        return self.W.double(), self.H.double()


class FloorsData(MU):
    def init(self, problem, W0, H0):
        problem.Y.clamp_min_(0.5)  # "avoid zeros in the data"
        super().init(problem, W0, H0)


class Unseeded(MU):
    def init(self, problem, W0, H0):
        jitter = torch.from_numpy(np.random.uniform(0.5, 1.5, H0.shape)).to(H0)
        super().init(problem, W0, H0 * jitter)


class Timed(MU):
    def step(self):
        tic = perf_counter()
        super().step()
        self.spent = perf_counter() - tic


class Chatty(MU):
    def step(self):
        super().step()
        print("step done")


class IgnoresFixedW:
    def init(self, problem, W0, H0):
        self.Y, self.W, self.H = problem.Y, W0.clone(), H0.clone()

    def step(self):
        Y, W, H = self.Y, self.W, self.H
        mu_update_H(H, W.T @ Y, W.T @ W, 1e-12, inplace=True)
        mu_update_W(W, Y @ H.T, H @ H.T, 1e-12, inplace=True)

    def factors(self):
        return self.W, self.H


class FixedBudget(BlackBoxSolver):
    def solve(self, problem, W0, H0, n_iter):
        solver = IgnoresFixedW()
        solver.init(problem, W0, H0)
        for _ in range(10):
            solver.step()
        return solver.factors()


@hookimpl
def proxmf_register_solvers(register):
    for name, factory in (("half_loss", HalfLoss), ("as_float64", AsFloat64), ("floors_data", FloorsData),
                          ("unseeded", Unseeded), ("timed", Timed), ("chatty", Chatty),
                          ("ignores_fixed_W", IgnoresFixedW), ("fixed_budget", FixedBudget)):
        register(SolverSpec(name=name, factory=factory))
