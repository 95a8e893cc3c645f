r"""Reference optima ``f*`` of the problems of a grid, cached on disk.

A problem (:meth:`~proxmf_bench.run.cells.Cell.problem_key`: dataset and parameters, dtype,
seed, objective) gets one long float64 solve from the shared initial factors, the same ones
every solver of the problem starts from:

- the nonnegative least-squares problem of a fixed-``W`` dataset (``nnls_toy``) is convex, and
  its exact optimum is computed column by column with :func:`scipy.optimize.nnls`
  (Lawson-Hanson active set, exact to rounding);
- any other problem runs :data:`REFERENCE_SOLVER` (FISTA with function-value restart, with the
  problem's prox operators) until its best objective improves by less than
  :data:`STALL_RTOL` relative over the last ``max(100, k / 10)`` of its ``k`` iterations, then
  :data:`POLISH_SOLVER` (plain PGM, monotone) from the best point until one iteration changes
  the objective by less than :data:`POLISH_RTOL` relative; both within a budget of
  iterations and wall time (:class:`Budget`). For a nonconvex problem (NMF) this is the local
  optimum reached from the shared start, which is what the solvers of the problem approach;
  f* is then also capped by every run shown (:mod:`proxmf_bench.results.analysis`).

The value is the objective (loss from the float64 residual plus the penalties) at the best
point. The data are those of the problem's dtype, cast to float64: the reference of a float32
problem is the optimum of the float32 data.

Cache: ``<cache>/references/<digest>.json`` (:func:`~proxmf_bench.plugin.data_files.cache_dir`),
one file per problem key and data fingerprint (a digest of ``Y``, so a dataset whose data
changed under the same name is solved again). A file is written atomically; a lock file
beside it (``fcntl.flock``) makes a second process that wants the same reference wait for the
first and read its result instead of computing it again. An entry that did not converge is
computed again when asked for with a larger budget.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from proxmf_bench.errors import UserError
from proxmf_bench.plugin.data_files import REFERENCES_DIR, cache_dir
from proxmf_bench.plugin.registry import Registry
from proxmf_bench.plugin.specs import NONNEG, Objective
from proxmf_bench.problem.problem import Problem
from proxmf_bench.problem.start import data_fingerprint, initial_factors
from proxmf_bench.results.table import atomic_write_bytes
from proxmf_bench.run.cells import Cell
from proxmf_bench.run.grid import DTYPES

# The reference method, in one place: (solver name, its own parameters).
REFERENCE_SOLVER = ("fista", {"restart": "function"})
POLISH_SOLVER = ("pgm", {})
STALL_RTOL = 1e-10
POLISH_RTOL = 1e-13
POLISH_SHARE = 0.2  # of the budget left to the polishing phase
# Bump when the method changes: cached entries of another version are computed again.
METHOD_VERSION = 1
CACHE_FORMAT = 1


@dataclass(frozen=True)
class Budget:
    """How long one reference may run: iterations of the main phase and wall seconds in all."""

    max_iter: int = 20_000
    max_time: float = 120.0

    def __post_init__(self) -> None:
        if self.max_iter < 1:
            raise UserError(f"the reference budget needs at least one iteration, got {self.max_iter}")
        if not self.max_time > 0:
            raise UserError(f"the reference time budget must be > 0 seconds, got {self.max_time}")

    def covers(self, other: Mapping[str, Any]) -> bool:
        """Whether this budget is no larger than ``other`` (a cached entry's budget)."""
        return self.max_iter <= other.get("max_iter", 0) and self.max_time <= other.get("max_time", 0)


@dataclass(frozen=True)
class Reference:
    """The reference optimum of one problem, and how it was obtained."""

    problem: str
    f_star: float
    method: str
    iterations: int
    seconds: float
    converged: bool
    rel_change: float
    data_digest: str
    budget: dict[str, Any]
    cached: bool = False

    @property
    def source(self) -> str:
        """How f* was obtained, for figures and tables (the iterations are in the cache entry)."""
        return f"reference ({self.method})" if self.converged else f"reference ({self.method}; not converged)"


def nnls_optimum(problem: Problem) -> tuple[torch.Tensor, int]:
    """The exact optimum ``H*`` of ``min_H 1/2 ||Y - W H||^2, H >= 0`` for the fixed ``W_true``,
    column by column (:func:`scipy.optimize.nnls`, float64), and the number of columns."""
    from scipy.optimize import nnls

    W = problem.W_true.detach().cpu().double().numpy()
    m, n = problem.shape
    if problem.is_sparse:  # one dense column at a time, from the rows of Y^T
        Yt = problem.Yt.detach().cpu().double()
        crow, rows, values = Yt.crow_indices().numpy(), Yt.col_indices().numpy(), Yt.values().numpy()

        def column(j: int) -> np.ndarray:
            out = np.zeros(m)
            out[rows[crow[j]:crow[j + 1]]] = values[crow[j]:crow[j + 1]]
            return out
    else:
        Y = problem.Y.detach().cpu().double().numpy()

        def column(j: int) -> np.ndarray:
            return Y[:, j]
    H = np.column_stack([nnls(W, column(j))[0] for j in range(n)])
    return torch.from_numpy(H).to(problem.device), n


def _solver(registry: Registry, choice: tuple[str, dict[str, Any]], objective: Objective):
    """A fresh solver of ``choice`` with the objective's prox operators."""
    name, own = choice
    given: dict[str, Any] = dict(own)
    for block, term in (("W", objective.W), ("H", objective.H)):
        given[f"prox_{block}"] = NONNEG if term is None else term.prox.name
        if term is not None:
            given.update({f"{k}_{block}": v for k, v in term.params.items()})
    try:
        spec = registry.get_solver(name)
    except UserError:
        raise UserError(f"the reference solver {name!r} is not registered (it comes with the built-in plugins)") from None
    return spec.factory(**spec.resolve(given, registry))


def _value(problem: Problem, objective: Objective, W: torch.Tensor, H: torch.Tensor) -> float:
    """The objective at ``(W, H)``: loss from the float64 residual plus the penalties."""
    return problem.residual_loss(W, H) + objective.penalty(W, H, problem.fixed_W)


def solve_reference(
    registry: Registry, problem: Problem, objective: Objective, W0: torch.Tensor, H0: torch.Tensor,
    budget: Budget = Budget(),
) -> dict[str, Any]:
    """The reference optimum of ``problem`` (float64) from ``(W0, H0)`` (see the module
    docstring): ``f_star``, ``method``, ``iterations``, ``seconds``, ``converged``, ``rel_change``."""
    started = time.perf_counter()
    if problem.fixed_W and (objective.H is None or objective.H.label == NONNEG) and not objective.unknown:
        H, columns = nnls_optimum(problem)
        return {"f_star": problem.residual_loss(problem.W_true, H), "method": "exact NNLS (scipy.optimize.nnls)",
                "iterations": columns, "seconds": time.perf_counter() - started, "converged": True,
                "rel_change": 0.0}

    def objective_of(solver) -> float:
        W, H = solver.factors()
        return solver.loss() + objective.penalty(W, H, problem.fixed_W)

    solver = _solver(registry, REFERENCE_SOLVER, objective)
    solver.init(problem, W0.clone(), H0.clone())
    best_value, best = objective_of(solver), tuple(X.clone() for X in solver.factors())
    history = [best_value]
    k, stalled = 0, False
    while k < budget.max_iter and time.perf_counter() - started < (1 - POLISH_SHARE) * budget.max_time:
        solver.step()
        k += 1
        value = objective_of(solver)
        if not math.isfinite(value):
            break
        if value < best_value:
            best_value, best = value, tuple(X.clone() for X in solver.factors())
        history.append(best_value)
        window = max(100, k // 10)
        if k > window and history[-1 - window] - best_value <= STALL_RTOL * abs(best_value):
            stalled = True
            break
    polish = _solver(registry, POLISH_SOLVER, objective)
    polish.init(problem, *(X.clone() for X in best))
    previous, change, j = objective_of(polish), math.inf, 0
    limit = max(100, int(POLISH_SHARE * budget.max_iter))
    while j < limit and time.perf_counter() - started < budget.max_time:
        polish.step()
        j += 1
        value = objective_of(polish)
        change = abs(previous - value) / max(abs(value), 1e-300)
        previous = value
        if change <= POLISH_RTOL:
            break
    f_star = min(_value(problem, objective, *best), _value(problem, objective, *polish.factors()))
    return {"f_star": f_star, "method": f"{_label(REFERENCE_SOLVER)} then {_label(POLISH_SOLVER)}", "iterations": k + j,
            "seconds": time.perf_counter() - started, "converged": stalled and change <= POLISH_RTOL,
            "rel_change": change}


def _label(choice: tuple[str, dict[str, Any]]) -> str:
    name, own = choice
    return f"{name}[{','.join(f'{key}={value}' for key, value in own.items())}]" if own else name


def _entry_path(root: Path, key: str, digest: str) -> Path:
    name = hashlib.sha256(json.dumps([CACHE_FORMAT, METHOD_VERSION, key, digest]).encode()).hexdigest()[:32]
    return root / f"{name}.json"


def _read_entry(path: Path, key: str, digest: str, budget: Budget) -> dict[str, Any] | None:
    """The cached entry at ``path`` if it is valid for this problem and budget."""
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("format") != CACHE_FORMAT or entry.get("problem") != key \
            or entry.get("data_digest") != digest or not isinstance(entry.get("f_star"), (int, float)):
        return None
    if not entry.get("converged") and not budget.covers(entry.get("budget", {})):
        return None  # asked for a longer solve than the one cached
    return entry


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed); a no-op without ``fcntl``."""
    try:
        import fcntl
    except ImportError:  # Windows: concurrent writers each compute, the atomic rename keeps one
        yield
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def cached_reference(
    registry: Registry, problem: Problem, seed: int, key: str, objective: Objective, budget: Budget = Budget(),
    cache: str | os.PathLike | None = None, force: bool = False,
) -> Reference:
    """The reference optimum of ``problem`` (loaded in its dtype; solved in float64 from the
    initial factors of ``seed``), from the cache or computed and cached (module docstring)."""
    fingerprint = data_fingerprint(problem)
    root = cache_dir(cache) / REFERENCES_DIR
    path = _entry_path(root, key, fingerprint.digest)
    entry = None if force else _read_entry(path, key, fingerprint.digest, budget)
    cached = entry is not None
    if entry is None:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the reference cache {root}: {exc.strerror or exc}") from None
        with _exclusive(path.with_suffix(".lock")):
            entry = None if force else _read_entry(path, key, fingerprint.digest, budget)
            cached = entry is not None
            if entry is None:
                W0, H0 = initial_factors(problem, seed, fingerprint)
                exact = problem.to(problem.device, torch.float64)
                result = solve_reference(registry, exact, objective, W0.double(), H0.double(), budget)
                entry = {"format": CACHE_FORMAT, "problem": key, "data_digest": fingerprint.digest, **result,
                         "budget": asdict(budget), "created": dt.datetime.now(dt.timezone.utc).isoformat(),
                         "torch": torch.__version__}
                atomic_write_bytes(path, (json.dumps(entry, indent=1) + "\n").encode())
    return Reference(problem=key, f_star=float(entry["f_star"]), method=entry["method"],
                     iterations=int(entry["iterations"]), seconds=float(entry["seconds"]),
                     converged=bool(entry["converged"]), rel_change=float(entry["rel_change"]),
                     data_digest=entry["data_digest"], budget=entry["budget"], cached=cached)


@dataclass
class ProblemOfGrid:
    """One problem of a grid: where it comes from and what is known about its objective."""

    key: str
    cell: Cell  # the first cell of the grid that solves it
    objective: Objective
    name: str  # the objective's canonical name
    note: str  # why no reference can be computed, or ""


def grid_problems(registry: Registry, cells: Sequence[Cell]) -> list[ProblemOfGrid]:
    """The distinct problems of ``cells``, in grid order (each dataset loaded once per seed
    and dtype, to know whether it is an NNLS problem, which drops the W term)."""
    out: dict[str, ProblemOfGrid] = {}
    modes: dict[tuple[str, str, int, str], bool] = {}
    for cell in cells:
        where = (cell.dataset.name, cell.dataset.params_json(), cell.seed, cell.dtype)
        if where not in modes:
            spec = registry.get_dataset(cell.dataset.name)
            modes[where] = spec.load(cell.dataset.params, cell.seed, torch.device("cpu"), DTYPES[cell.dtype]).fixed_W
        objective = registry.get_solver(cell.solver.name).objective_for(cell.solver.params)
        name = objective.name(modes[where])
        key = cell.problem_key(name)
        if key not in out:
            out[key] = ProblemOfGrid(key, cell, objective, name, objective.note(modes[where]))
    return list(out.values())


def grid_references(
    registry: Registry, cells: Sequence[Cell], budget: Budget = Budget(), cache_dir: str | os.PathLike | None = None,
    force: bool = False, progress: bool = False, on_result=None,
) -> list[Reference]:
    """The reference optimum of every problem of ``cells`` whose objective is known (each on
    the device of its first cell). ``on_result(problem, reference or None)`` hears of each."""
    from tqdm import tqdm

    problems = grid_problems(registry, cells)
    references = []
    for item in tqdm(problems, desc="references", unit="problem", disable=not progress, leave=False):
        if item.note:
            if on_result is not None:
                on_result(item, None)
            continue
        cell = item.cell
        spec = registry.get_dataset(cell.dataset.name)
        problem = spec.load(cell.dataset.params, cell.seed, torch.device(cell.device), DTYPES[cell.dtype])
        reference = cached_reference(registry, problem, cell.seed, item.key, item.objective, budget, cache_dir, force)
        references.append(reference)
        if on_result is not None:
            on_result(item, reference)
    return references


def reference_table(references: Sequence[Reference]) -> pd.DataFrame:
    """The references as an f* table (``problem``, ``f_star``, ``source``; see
    :mod:`proxmf_bench.results.f_star`)."""
    return pd.DataFrame({"problem": pd.array([r.problem for r in references], dtype="string"),
                         "f_star": pd.array([r.f_star for r in references], dtype="float64"),
                         "source": pd.array([r.source for r in references], dtype="string")})

