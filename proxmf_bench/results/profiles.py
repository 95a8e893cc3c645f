r"""Dolan-Moré performance profiles, computed from the long results table (no plotting here).

An *instance* is one problem (dataset with its parameters, dtype, seed, objective) of one run
directory: two run directories given together are different instances of their problems. A
profiled *solver* is one solver variant on one device. For a tolerance ``tol``, :math:`t_{p,s}`
is the solver time at which solver ``s`` first recorded a relative suboptimality at most
``tol`` on instance ``p`` (:func:`~proxmf_bench.results.analysis.time_to_tolerance_per_seed`),
:math:`\infty` when it never did (an error, a divergence or a budget spent all count as failed).
The performance ratio and the profile (Dolan and Moré, Math. Program. 91, 2002) are

.. math::

    r_{p,s} = \frac{t_{p,s}}{\min_{s'} t_{p,s'}}, \qquad
    \rho_s(\tau) = \frac{|\{p \in P_s : r_{p,s} \le \tau\}|}{|P_s|},

with the minimum over the solvers that ran on ``p`` (:math:`r_{p,s} = \infty` for every solver
when none reached ``tol``) and :math:`P_s` the instances solver ``s`` ran on (a penalised
variant solves other problems than ``pgm``: its profile is over its own problems, and
:func:`performance_profile` says how many). :math:`\rho_s(1)` is the fraction of instances on
which ``s`` was fastest, :math:`\rho_s(\infty)` the fraction it solved at all.

An instance on which only one solver ran (a penalised variant alone on its objective) has
nothing to compare: :func:`compared_instances` leaves it out of the profile, and says which
solvers that leaves with no instance.

A best time of 0 (the tolerance met at the starting point, before any solver time) makes
every solver that met it there equally fast: their ratio is 1, the others' is ``inf`` only if
they never reached it and otherwise their time over the smallest positive time recorded on
that instance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from proxmf_bench.results.analysis import PROBLEM_KEYS, TOLERANCES, time_to_tolerance_per_seed

INSTANCE_KEYS = ["run", *PROBLEM_KEYS, "seed"]
SOLVER_KEYS = ["device", "solver"]


def solve_times(frame: pd.DataFrame, tolerances: Sequence[float] = TOLERANCES) -> pd.DataFrame:
    """:math:`t_{p,s}` for each tolerance: one row per (instance, solver, ``tol``) with
    ``time_s`` (``inf`` when never reached). Needs the ``subopt`` column of
    :func:`~proxmf_bench.results.analysis.add_suboptimality`."""
    per_seed = time_to_tolerance_per_seed(frame, tolerances)
    return per_seed[[*INSTANCE_KEYS, *SOLVER_KEYS, "tol", "time_s"]].reset_index(drop=True)


def compared_instances(times: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """``times`` without the instances on which fewer than two solvers ran, and the labels of
    the solvers that ran on no other instance (left out of the profile)."""
    solvers = times.groupby([*INSTANCE_KEYS, "tol"], sort=False, dropna=False)["solver"].transform("nunique")
    devices = times.groupby([*INSTANCE_KEYS, "tol"], sort=False, dropna=False)["device"].transform("nunique")
    kept = times[(solvers > 1) | (devices > 1)]
    left_out = [s for s in pd.unique(times["solver"]) if s not in set(kept["solver"])]
    return kept.reset_index(drop=True), left_out


def performance_ratios(times: pd.DataFrame) -> pd.DataFrame:
    """``times`` (:func:`solve_times`) with ``best_s`` (the best solver's time on the instance)
    and ``ratio`` :math:`r_{p,s}` (see the module docstring)."""
    keys = [*INSTANCE_KEYS, "tol"]
    t = times["time_s"].astype("float64")
    grouped = t.groupby([times[k] for k in keys], sort=False, dropna=False)
    best = grouped.transform("min")
    smallest_positive = t.where(t > 0).groupby([times[k] for k in keys], sort=False, dropna=False).transform("min")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(best > 0, t / best, np.where(t <= 0, 1.0, t / smallest_positive))
    ratio = np.where(np.isfinite(t), ratio, math.inf)
    return times.assign(best_s=best, ratio=ratio.astype("float64"))


def performance_profile(ratios: pd.DataFrame) -> pd.DataFrame:
    """The step function :math:`\\rho_s` of each solver and tolerance.

    One row per (``tol``, solver, distinct finite ratio ``tau``, ascending) with ``fraction``
    :math:`\\rho_s(\\tau)`, ``solved`` (instances with ratio at most ``tau``) and ``instances``
    :math:`|P_s|`; a solver that solved nothing has one row with ``tau = inf`` and fraction 0.
    """
    rows = []
    for (tol, *solver), part in ratios.groupby(["tol", *SOLVER_KEYS], sort=False):
        r = np.sort(part["ratio"].to_numpy(float))
        n = len(r)
        finite = r[np.isfinite(r)]
        if not len(finite):
            rows.append((tol, *solver, math.inf, 0.0, 0, n))
            continue
        taus = np.unique(finite)
        counts = np.searchsorted(finite, taus, side="right")
        rows.extend((tol, *solver, float(tau), count / n, int(count), n) for tau, count in zip(taus, counts))
    return pd.DataFrame(rows, columns=["tol", *SOLVER_KEYS, "tau", "fraction", "solved", "instances"])


def profile_at(profile: pd.DataFrame, tau: float) -> pd.Series:
    """:math:`\\rho_s(\\tau)` of each (``tol``, device, solver) of ``profile``."""
    keys = ["tol", *SOLVER_KEYS]
    below = profile[profile["tau"] <= tau]
    reached = below.groupby(keys, sort=False)["fraction"].max()
    index = profile.drop_duplicates(keys).set_index(keys).index
    return reached.reindex(index).fillna(0.0).rename("fraction")


def instance_count(ratios: pd.DataFrame, tol: float) -> int:
    """How many instances the profile of ``tol`` is over."""
    part = ratios[ratios["tol"] == tol]
    return int(part.groupby(INSTANCE_KEYS, sort=False, dropna=False).ngroups) if len(part) else 0
