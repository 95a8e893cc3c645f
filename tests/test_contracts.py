"""The contract checks of :mod:`proxmf_bench.testing` over every registered plugin.

Every built-in and every spec of the test plugins is checked, with no list to edit: a new
built-in is covered by registering it. The test plugins that break the contract on purpose
must fail the property they break, which is how the checks show that they can fail.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from proxmf_bench.plugin.registry import load_registry
from proxmf_bench.testing import check_dataset, check_prox, check_solver
from proxmf_bench.testing import dataset as dataset_checks
from proxmf_bench.testing import prox as prox_checks
from proxmf_bench.testing import solver as solver_checks
from proxmf_bench.testing.report import FAILED, OK, SKIPPED

TESTS = Path(__file__).parent
# Every test plugin that registers specs and can run in this process: the solvers of
# faulty.py and lost_workers.py take their process down or block it (segfault, os._exit, a
# hang, memory, a call that holds the GIL) and run only in worker processes.
WORKER_ONLY = {"faulty.py", "lost_workers.py"}
PLUGIN_FILES = [TESTS / "report_plugin.py", TESTS / "plugins" / "tiny_dist" / "src" / "proxmf_tiny" / "__init__.py",
                *(p for p in sorted((TESTS / "plugins").glob("*.py")) if p.name not in WORKER_ONLY)]

# (registry table, name) -> the property its test plugin breaks on purpose
BROKEN = {
    ("solvers", "exploding"): solver_checks.FINITE,
    ("solvers", "crashing"): solver_checks.RUNS,
    ("solvers", "broken"): solver_checks.RUNS,
    ("solvers", "half_loss"): solver_checks.LOSS,
    ("solvers", "as_float64"): solver_checks.FACTORS,
    ("solvers", "floors_data"): solver_checks.DATA,
    ("solvers", "unseeded"): solver_checks.DETERMINISTIC,
    ("solvers", "timed"): solver_checks.QUIET,
    ("solvers", "chatty"): solver_checks.QUIET,
    ("solvers", "ignores_fixed_W"): solver_checks.FIXED_W,
    ("solvers", "fixed_budget"): solver_checks.BUDGET,
    ("solvers", "quitter"): solver_checks.RUNS,
    ("solvers", "mutating"): solver_checks.DATA,
    ("prox", "soft2"): prox_checks.PERTURB,
    ("prox", "overwrites"): prox_checks.UNMODIFIED,
    ("prox", "to_float32"): prox_checks.SHAPE,
    ("prox", "shrink"): prox_checks.IDEMPOTENT,
    ("prox", "normalise"): prox_checks.NEAREST,
    ("prox", "column_norm"): prox_checks.BATCHED,
    ("prox", "no_zero_lam"): prox_checks.RANGES,
    ("datasets", "cached"): dataset_checks.FRESH,
    ("datasets", "unseeded"): dataset_checks.DETERMINISTIC,
    ("datasets", "float64_only"): dataset_checks.PLACE,
    ("datasets", "no_truth"): dataset_checks.TRUTH,
    ("datasets", "bad_truth"): dataset_checks.TRUTH,
    ("datasets", "sharing"): dataset_checks.FRESH,
}
KINDS = ("prox", "solvers", "datasets")

BUILTINS = load_registry(use_entry_points=False, use_env=False)
# one registry per file: test plugins reuse names (two define "exploding")
PLUGIN_REGISTRIES = {path.relative_to(TESTS).as_posix(): load_registry([path], use_entry_points=False, use_env=False)
                     for path in PLUGIN_FILES}


@functools.lru_cache(maxsize=None)
def _report(source: str, kind: str, name: str):
    """The default check of one spec, once per session (``source``: ``builtin`` or a plugin file)."""
    registry = BUILTINS if source == "builtin" else PLUGIN_REGISTRIES[source]
    spec = getattr(registry, kind)[name]
    if kind == "prox":
        return check_prox(spec)
    return (check_solver if kind == "solvers" else check_dataset)(spec, registry)


BUILTIN_SPECS = [(kind, name) for kind in KINDS for name in sorted(getattr(BUILTINS, kind))]
PLUGIN_SPECS = [(file, kind, name) for file, registry in PLUGIN_REGISTRIES.items() for kind in KINDS
                for name in sorted(getattr(registry, kind)) if name not in getattr(BUILTINS, kind)]


@pytest.mark.parametrize(("kind", "name"), BUILTIN_SPECS, ids=[f"{k}-{n}" for k, n in BUILTIN_SPECS])
def test_every_builtin_keeps_its_contract(kind, name):
    report = _report("builtin", kind, name)
    report.raise_for_failures()
    assert any(r.status == OK for r in report.results) or report.note  # something was checked, or it says why


@pytest.mark.parametrize(("file", "kind", "name"), PLUGIN_SPECS, ids=[f"{f}-{k}-{n}" for f, k, n in PLUGIN_SPECS])
def test_test_plugins_keep_or_break_their_contract_as_designed(file, kind, name):
    report = _report(file, kind, name)
    broken = BROKEN.get((kind, name))
    if broken is None:
        report.raise_for_failures()
    else:
        row = report.result(broken)
        assert row.status == FAILED, report.format()
        example = row.counterexample
        assert example.input and example.expected and example.got


def test_every_deliberately_broken_spec_is_registered():
    registered = {(kind, name) for _, kind, name in PLUGIN_SPECS}
    assert set(BROKEN) <= registered
    assert {p.name for p in PLUGIN_FILES} >= {"wrong_prox.py", "wrong_solvers.py", "wrong_datasets.py"}


@pytest.mark.parametrize(("file", "kinds"), [
    ("plugins/hostile_data.py", ("inf", "int", "empty", "vector", "cube", "rank0", "rank_big", "not_tensor", "crash")),
    ("plugins/bad_things.py", ("negative", "nan")),
])
def test_invalid_data_fails_the_load_check(file, kinds):
    registry = PLUGIN_REGISTRIES[file]
    (name,) = registry.datasets.keys() - BUILTINS.datasets.keys()
    for kind in kinds:
        row = check_dataset(registry.datasets[name], registry, params=[{"kind": kind}]).result(dataset_checks.LOADS)
        assert row.status == FAILED, kind
        assert row.counterexample.got.startswith("raised ")


def test_the_soft_threshold_at_twice_the_step_fails_with_a_counterexample():
    report = _report("plugins/wrong_prox.py", "prox", "soft2")
    assert not report.ok
    example = report.result(prox_checks.PERTURB).counterexample
    assert "X = [" in example.input and "F(Z) <= F(C)" in example.expected and "F(Z) =" in example.got
    # the numerical minimiser catches it on its own, on the inputs it is given
    assert report.result(prox_checks.MINIMISER).status == FAILED
    with pytest.raises(AssertionError, match="argmin: no nearby point has a lower objective"):
        report.raise_for_failures()


def test_the_half_loss_counterexample_shows_both_values():
    example = _report("plugins/wrong_solvers.py", "solvers", "half_loss").result(solver_checks.LOSS).counterexample
    expected = float(example.expected.split("= ")[-1].split(" ")[0])
    got = float(example.got.split("= ")[-1])
    assert got == pytest.approx(expected / 2, rel=1e-6)


def test_what_does_not_apply_is_skipped_with_the_reason():
    unity = _report("builtin", "prox", "unity")
    assert "only the generic checks apply" in unity.note
    assert unity.result(prox_checks.PERTURB).status == SKIPPED
    assert unity.result(prox_checks.IDEMPOTENT).detail == "not declared a projection"
    l0 = _report("builtin", "prox", "l0")
    assert l0.result(prox_checks.MINIMISER).status == OK
    assert l0.result(prox_checks.FIRM).status == SKIPPED and "not unique" in l0.result(prox_checks.FIRM).detail
    if "sklearn_mu" in BUILTINS.solvers:  # a peer, installed with the dev extra
        row = _report("builtin", "solvers", "sklearn_mu").result(solver_checks.FIXED_W)
        assert row.status == OK and row.detail.startswith("refused: ")


def test_reports_are_deterministic():
    spec = PLUGIN_REGISTRIES["plugins/wrong_prox.py"].prox["normalise"]
    assert check_prox(spec).format() == check_prox(spec).format()
    assert check_prox(spec, seed=1).format() != check_prox(spec).format()
