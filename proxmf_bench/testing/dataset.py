"""Contract checks of a dataset: :func:`check_dataset`.

For every default variant of the dataset (or the given parameter sets), in float32 and
float64, ``load(params, seed, device, dtype)`` must return:

- a valid :class:`~proxmf_bench.problem.problem.Problem` (``validate()`` passes: a 2-D
  floating matrix, rank within ``1..min(m, n)``), on the requested device and dtype;
- finite data, nonnegative for an NMF problem;
- the same problem for the same seed, and fresh tensors on each call (changing what one
  load returned leaves the next load alone: the harness shares a problem between solvers,
  and a cached copy must survive a solver that misbehaves);
- ground truth of shapes ``m x r`` and ``r x n`` (finite, nonnegative for NMF) when the spec
  declares ``ground_truth``.

A dataset whose declared files are not in the data directory is skipped, with the command
that fetches them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from proxmf_bench.plugin.data_files import data_dir, file_status
from proxmf_bench.plugin.selection import Variant, format_label, select
from proxmf_bench.plugin.specs import DatasetSpec, SpecLookup
from proxmf_bench.problem.problem import Problem
from proxmf_bench.testing.report import CheckReport, Counterexample, Recorder, fmt_value, needs_parameters

DTYPES = (torch.float32, torch.float64)

PARAMS = "defaults are valid parameters"
LOADS = "load() returns a valid Problem"
PLACE = "on the requested device and dtype"
DATA = "data finite, nonnegative for NMF"
DETERMINISTIC = "deterministic per seed"
FRESH = "fresh tensors on each load"
TRUTH = "ground truth: W_true m x r, H_true r x n, finite"
ORDER = (PARAMS, LOADS, PLACE, DATA, TRUTH, DETERMINISTIC, FRESH)


def check_dataset(
    spec: DatasetSpec,
    registry: SpecLookup | None = None,
    *,
    params: Sequence[Mapping[str, Any]] | None = None,
    device: str | torch.device = "cpu",
    dtypes: Sequence[torch.dtype] = DTYPES,
    seed: int = 0,
) -> CheckReport:
    """Check ``spec`` against the dataset contract; see the module docstring.

    ``params``: the parameter sets to check (as a selection gives them,
    ``[{"rank": "4"}]``); by default every variant of the spec's grid.
    """
    if registry is None:
        from proxmf_bench.plugin.registry import load_registry

        registry = load_registry()
    rec = Recorder("dataset", spec.name, ORDER)
    if needs_parameters(rec, spec, params, LOADS):
        return rec.finish()
    missing = _missing_files(spec)
    if missing:
        rec.report.note = f"{missing}; run 'proxmf-bench data fetch {spec.name}' or point --data-dir at them"
        rec.skip(LOADS, "data files not available")
        return rec.finish()
    device = torch.device(device)
    for variant in _variants(rec, spec, registry, params):
        for dtype in dtypes:
            _check_loads(rec, spec, variant, device, dtype, seed)
    if not spec.ground_truth:
        rec.skip(TRUTH, "no ground truth declared")
    return rec.finish()


def _missing_files(spec: DatasetSpec) -> str:
    root, origin = data_dir()
    for file in spec.files:
        status = file_status(file, root)
        if status != "ok":
            return f"{file.path} is {status} in the data directory {root} (from {origin})"
    return ""


def _variants(rec: Recorder, spec: DatasetSpec, registry: SpecLookup,
              given: Sequence[Mapping[str, Any]] | None) -> list[Variant]:
    if given is None:
        ok, variants = rec.attempt(PARAMS, lambda: select(spec.name, {spec.name: spec}, registry, "dataset"),
                                   lambda: f"the default variants of {spec.name}", "parameters that resolve")
        variants = variants or []
    else:
        variants = []
        for values in given:
            ok, resolved = rec.attempt(PARAMS, lambda v=values: spec.resolve(v, registry),
                                       lambda v=values: f"parameters {dict(v)}", "parameters that resolve")
            if ok:
                variants.append(Variant(spec.name, resolved, format_label(spec.name, values)))
    for _ in variants:
        rec.check(PARAMS, True, lambda: None)
    return variants


def _tensors(problem: Problem) -> list[tuple[str, torch.Tensor]]:
    """The problem's tensors; a sparse ``Y`` as its stored values, and its pattern (row
    pointers and column indices) after them, compared but never modified."""
    Y = problem.Y
    sparse = isinstance(Y, torch.Tensor) and Y.layout == torch.sparse_csr
    out = [(name, X) for name, X in (("Y", Y.values() if sparse else Y), ("W_true", problem.W_true),
                                     ("H_true", problem.H_true)) if isinstance(X, torch.Tensor)]
    return out + ([("Y's row pointers", Y.crow_indices()), ("Y's column indices", Y.col_indices())] if sparse else [])


def _is_data(X: torch.Tensor) -> bool:
    return X.is_floating_point()


def _check_loads(rec: Recorder, spec: DatasetSpec, variant: Variant, device: torch.device, dtype: torch.dtype,
                 seed: int) -> None:
    kind = str(dtype).removeprefix("torch.")
    where = f"load({dict(variant.params)}, seed={seed}, device={device}, dtype={kind})"

    def load() -> Problem:
        problem = spec.load(variant.params, seed, device, dtype)
        if not isinstance(problem, Problem):
            raise TypeError(f"load() returned {type(problem).__name__}, not a Problem")
        problem.validate()
        return problem

    ok, first = rec.attempt(LOADS, load, lambda: where, "a valid Problem")
    if not ok:
        return
    rec.check(LOADS, True, lambda: None)
    for name, X in filter(lambda item: _is_data(item[1]), _tensors(first)):
        if not rec.check(PLACE, X.dtype == dtype and X.device == device, lambda name=name, X=X: Counterexample(
                where, f"{name} in {dtype} on {device}", f"{name} in {X.dtype} on {X.device}")):
            break
    Y = _tensors(first)[0][1]
    good = bool(torch.isfinite(Y).all()) and (not first.nonneg or bool((Y >= 0).all()))
    rec.check(DATA, good, lambda: Counterexample(where, "finite Y" + (", Y >= 0" if first.nonneg else ""),
                                                 f"Y = {fmt_value(Y)}"))
    _check_truth(rec, spec, first, where)

    copies = [(name, X.clone()) for name, X in _tensors(first)]
    ok, second = rec.attempt(DETERMINISTIC, load, lambda: f"{where}, a second time")
    if not ok:
        return
    for (name, before), (_, again) in zip(copies, _tensors(second)):
        if not rec.check(DETERMINISTIC, before.shape == again.shape and torch.equal(before, again),
                         lambda name=name, before=before, again=again: Counterexample(
                             f"{where}, twice", f"the same {name} = {fmt_value(before)}", f"{name} = {fmt_value(again)}")):
            return
    for _, X in filter(lambda item: _is_data(item[1]), _tensors(first)):
        X.add_(1.0)  # what a careless solver might do to the problem it was given
    ok, third = rec.attempt(FRESH, load, lambda: f"{where}, after adding 1 to what the first load returned")
    if not ok:
        return
    for (name, before), (_, again) in zip(copies, _tensors(third)):
        if not rec.check(FRESH, before.shape == again.shape and torch.equal(before, again),
                         lambda name=name, before=before, again=again: Counterexample(
                             f"{where}, after adding 1 to the {name} a first load returned",
                             f"{name} = {fmt_value(before)} again", f"{name} = {fmt_value(again)}")):
            return


def _check_truth(rec: Recorder, spec: DatasetSpec, problem: Problem, where: str) -> None:
    if not spec.ground_truth and problem.W_true is None and problem.H_true is None:
        return
    m, n = problem.shape
    r = problem.rank
    W, H = problem.W_true, problem.H_true
    good = (isinstance(W, torch.Tensor) and isinstance(H, torch.Tensor)
            and tuple(W.shape) == (m, r) and tuple(H.shape) == (r, n)
            and bool(torch.isfinite(W).all() and torch.isfinite(H).all())
            and (not problem.nonneg or bool((W >= 0).all() and (H >= 0).all())))
    shown = ", ".join(f"{name} = {fmt_value(X) if isinstance(X, torch.Tensor) else repr(X)}"
                      for name, X in (("W_true", W), ("H_true", H)))
    rec.check(TRUTH, good, lambda: Counterexample(
        where, f"W_true ({m} x {r}) and H_true ({r} x {n}), finite" + (", nonnegative" if problem.nonneg else ""),
        shown))
