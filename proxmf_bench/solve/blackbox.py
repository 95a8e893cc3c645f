r"""Black-box solvers: sampled with growing iteration budgets instead of stepped.

Many libraries (scikit-learn, tensorly, torchnmf) expose only ``fit(max_iter=K)``: there is no
way to advance them one iteration at a time. Such a solver implements :class:`BlackBoxSolver`,

.. code-block:: python

    solve(problem, W0, H0, n_iter) -> (W, H)     # the factors after n_iter iterations

and the harness samples its convergence curve the way benchopt samples black-box solvers: for
each iteration ``k`` of the record schedule it calls ``solve`` afresh with budget ``k`` from the
same initial factors as every other solver, and times each call on its own. The row for ``k``
holds the duration of that call as ``time_s``: the time the solver needs to reach iteration
``k`` from scratch, which is what the cumulative solver time of a stepped solver means too.
One untimed call with budget 1 comes first, as a warm-up: libraries set things up lazily on
their first call (torchnmf's first backward pass starts autograd's threads, about 0.7 s).

Sampling a run of ``K`` iterations this way costs the sum of the budgets in wall time, about
``K / (1 - 1/rho)`` iterations for a schedule of ratio ``rho`` (about ``9 K`` with the default
20 points per decade); the recorded times are unaffected.

Stopping rules read as for stepped solvers, with a call in place of an iteration: ``max_iter``
caps the budget (the last call uses exactly ``max_iter``), ``max_time`` stops after the first
call that took at least that long, ``tol`` stops when two consecutive budgets change the loss by
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
    """

    black_box: ClassVar[bool] = True

    @abstractmethod
    def solve(
        self, problem: Problem, W0: torch.Tensor, H0: torch.Tensor, n_iter: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Factors ``(W, H)`` after ``n_iter`` iterations started from ``(W0, H0)``.

        ``W0`` and ``H0`` are fresh copies that the solver may overwrite. The result must be
        torch tensors of the problem's shapes (any device and dtype: the harness converts).
        """


def is_black_box(factory: Callable[..., Any]) -> bool:
    """Whether a solver factory builds black-box solvers (``factory.black_box is True``)."""
    return getattr(factory, "black_box", False) is True
