"""A third-party plugin distributed as a package with a `proxmf_bench` entry point."""

from proxmf_bench import SolverSpec, hookimpl
from proxmf_bench.solve.mu import mu_update_H, mu_update_W


class TinyMU:
    """MU with H and W updated in the opposite order."""

    def init(self, problem, W0, H0):
        self.Y, self.W, self.H, self.fixed_W = problem.Y, W0, H0, problem.fixed_W

    def step(self):
        Y, W, H = self.Y, self.W, self.H
        if not self.fixed_W:
            mu_update_W(W, Y @ H.T, H @ H.T, 1e-12, inplace=True)
        mu_update_H(H, W.T @ Y, W.T @ W, 1e-12, inplace=True)

    def factors(self):
        return self.W, self.H


@hookimpl
def proxmf_register_solvers(register):
    register(SolverSpec(name="tiny_mu", factory=TinyMU, summary="MU, W first (tiny plugin)"))
