r"""Black-box solvers: sampled with growing iteration budgets instead of stepped.

Many libraries (scikit-learn, tensorly, torchnmf) expose only ``fit(max_iter=K)``: there is no
way to advance them one iteration at a time. Such a solver implements :class:`BlackBoxSolver`,

.. code-block:: python

    solve(problem, W0, H0, n_iter) -> (W, H)     # the factors after n_iter iterations

and the harness samples its convergence curve by calling ``solve`` at each iteration ``k`` of
the record schedule. Two ways, chosen by the solver:

- **continued** (``continues = True``): the call for ``k`` starts from the factors the previous
  call returned, with budget ``k - k_previous``. The solver declares that this gives the
  iterates of one call with the summed budget (true of every library whose iterations keep no
  state beyond the factors: scikit-learn with ``init="custom"``, tensorly, torchnmf; the
  peers' tests check it). ``time_s`` for ``k`` is the sum of the calls' durations, like a
  stepped solver's cumulative time, less the library's fixed cost per call (input checks,
  set-up; the intercept of a robust line fitted to the durations of the run's calls against
  their budgets) for every call after the first: it estimates one call of ``k`` iterations
  instead of counting that cost once per record point. ``max_time`` reads the plain sum, so
  such a run may stop slightly before its recorded time reaches the limit. The cell costs
  about one long call in wall time.
- **restarted** (the default): each call starts from the shared initial factors with budget
  ``k``, as benchopt samples black-box solvers, and ``time_s`` is that call's duration, the
  time the solver needs to reach ``k`` from scratch. Such durations are noisy from call to
  call, so the harness makes each time column non-decreasing over budgets (a running
  maximum). Sampling ``K`` iterations costs the sum of the budgets in wall time, about
  ``K / (1 - 1/rho)`` iterations for a schedule of ratio ``rho`` (about ``9 K`` with the
  default 20 points per decade).

One untimed call with budget 1 comes first, as a warm-up: libraries set things up lazily on
their first call (torchnmf's first backward pass starts autograd's threads, about 0.7 s).

Stopping rules read as for stepped solvers, with a call in place of an iteration: ``max_iter``
caps the budget (the last call reaches exactly ``max_iter``), ``max_time`` stops after the
first call whose ``time_s`` reaches it, ``tol`` stops when two consecutive budgets change the loss by
at most ``tol`` relative, and a non-finite loss stops the cell as ``diverged``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch

    from proxmf_bench.problem.problem import Problem


class BlackBoxSolver(ABC):
    """Base of solvers that can only be run for a given number of iterations.

    Subclasses implement :meth:`solve`; the class attribute ``black_box = True`` is what the
    harness looks for on a solver factory (a plain factory function may set it too).
    ``continues = True`` declares that a call from the factors of the previous one continues
    that run exactly (see the module docstring); the default restarts every call.
    """

    black_box: ClassVar[bool] = True
    continues: ClassVar[bool] = False

    @abstractmethod
    def solve(
        self, problem: Problem, W0: torch.Tensor, H0: torch.Tensor, n_iter: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Factors ``(W, H)`` after ``n_iter`` iterations started from ``(W0, H0)``.

        ``W0`` and ``H0`` are fresh copies that the solver may overwrite. The result must be
        torch tensors of the problem's shapes (any device and dtype: the harness converts).
        With ``continues = True``, ``(W0, H0)`` are the factors of the previous call after its
        first one, and ``n_iter`` the iterations to add.
        """


def is_black_box(factory: Callable[..., Any]) -> bool:
    """Whether a solver factory builds black-box solvers (``factory.black_box is True``)."""
    return getattr(factory, "black_box", False) is True


def continues(solver: Any) -> bool:
    """Whether a black-box solver continues from its previous call's factors (``continues is True``)."""
    return getattr(solver, "continues", False) is True
