"""The objective each solver minimises, recorded with the loss, and the problem key that groups runs."""

import json
import math

import numpy as np
import pytest
import torch

from proxmf_bench import SolverSpec, run_benchmark
from proxmf_bench.plugin.registry import load_registry
from proxmf_bench.plugin.selection import select
from proxmf_bench.plugin.specs import FactorTerm, Objective
from proxmf_bench.problem.start import initial_factors
from proxmf_bench.solve.prox import BUILTIN_PROX
from proxmf_bench.solvers.mu import MU

SMALL = "synthetic[m=30,n=20,rank=3]"
PROX = {spec.name: spec for spec in BUILTIN_PROX}


def _final_factors(registry, selection, dataset, iterations):
    """The factors of ``selection`` after ``iterations`` steps from the harness's start, computed
    here without the harness."""
    (variant,) = select(selection, registry.solvers, registry, "solver")
    (data,) = select(dataset, registry.datasets, registry, "dataset")
    problem = registry.get_dataset(data.name).load(data.params, 0, torch.device("cpu"), torch.float64)
    solver = registry.get_solver(variant.name).factory(**variant.params)
    solver.init(problem, *initial_factors(problem, 0))
    for _ in range(iterations):
        solver.step()
    return problem, solver.factors()


def _last(frame):
    return frame.sort_values("iteration").groupby("solver").tail(1).set_index("solver")


def test_objective_is_the_loss_plus_the_declared_penalties(registry, tmp_path):
    selection = "pgm[prox_W=l1_nonneg,lam_W=0.2,prox_H=l21,lam_H=0.3]"
    out = run_benchmark(solvers=selection, datasets=SMALL, max_iter=25, out=tmp_path, registry=registry)
    last = _last(out.frame).loc[selection]
    problem, (W, H) = _final_factors(registry, selection, SMALL, 25)
    W, H = W.numpy(), H.numpy()
    # the penalties, written out here: 0.2 * sum(W) on W >= 0, 0.3 * sum of column norms of H
    penalty = 0.2 * W.sum() + 0.3 * np.linalg.norm(H, axis=0).sum()
    loss = 0.5 * np.linalg.norm(problem.Y.numpy() - W @ H) ** 2
    assert last.loss == pytest.approx(loss, rel=1e-10)
    assert last.objective == pytest.approx(loss + penalty, rel=1e-10)
    assert last.objective_name == "W:l1_nonneg[lam=0.2] H:l21[lam=0.3,axis=columns]"
    assert last.objective_note == ""


def test_projections_and_the_nonnegative_problem_add_nothing(registry, tmp_path):
    out = run_benchmark(solvers="mu,pgm,pgm[prox_W=simplex],pgm[prox_H=box,high_H=2]", datasets=SMALL,
                        max_iter=10, out=tmp_path, registry=registry)
    assert (out.frame.objective == out.frame.loss).all()
    last = _last(out.frame)
    assert last.loc["mu", "objective_name"] == last.loc["pgm", "objective_name"] == "nonneg"
    assert last.loc["pgm[prox_W=simplex]", "objective_name"] == "W:simplex[s=1.0,axis=columns] H:nonneg"
    assert last.loc["pgm[prox_H=box,high_H=2]", "objective_name"] == "W:nonneg H:box[low=0.0,high=2.0]"


def test_an_operator_that_is_neither_projection_nor_penalty_has_no_objective(registry, tmp_path):
    out = run_benchmark(solvers="pgm[prox_H=unity],mu", datasets=SMALL, max_iter=5, out=tmp_path, registry=registry)
    last = _last(out.frame)
    unity = out.frame[out.frame.solver == "pgm[prox_H=unity]"]
    assert unity.objective.isna().all() and unity.loss.notna().all()
    assert "prox unity on H is neither a projection nor declares a penalty" in last.loc["pgm[prox_H=unity]",
                                                                                       "objective_note"]
    assert last.loc["mu", "objective_note"] == ""


def test_the_problem_key_names_dataset_dtype_seed_and_objective(registry, tmp_path):
    out = run_benchmark(solvers="mu,pgm,pgm[prox_H=l1_nonneg,lam_H=0.1],sklearn_mu", datasets=SMALL,
                        dtypes="float32,float64", seeds=2, max_iter=3, out=tmp_path, registry=registry)
    keys = out.frame.groupby(["solver", "dtype", "seed"]).problem.first()
    # MU, the peers and pgm with the default proxes solve one problem; the penalised pgm another
    assert keys["mu", "float64", 0] == keys["pgm", "float64", 0] == keys["sklearn_mu", "float64", 0]
    assert keys["pgm[prox_H=l1_nonneg,lam_H=0.1]", "float64", 0] != keys["mu", "float64", 0]
    assert keys["mu", "float32", 0] != keys["mu", "float64", 0] and keys["mu", "float64", 1] != keys["mu", "float64", 0]
    key = json.loads(keys["pgm[prox_H=l1_nonneg,lam_H=0.1]", "float64", 1])
    (data,) = select(SMALL, registry.datasets, registry, "dataset")
    assert key == {"dataset": "synthetic", "params": json.loads(data.params_json()), "dtype": "float64", "seed": 1,
                   "objective": "W:nonneg H:l1_nonneg[lam=0.1]"}
    assert out.frame.groupby(["solver", "dtype", "seed"]).problem.nunique().eq(1).all()


def test_in_an_nnls_problem_the_fixed_w_term_is_left_out(registry, tmp_path):
    out = run_benchmark(solvers="mu,pgm[prox_W=simplex],pgm[prox_W=l1,prox_H=l1_nonneg]", datasets="nnls_toy[n=40]",
                        max_iter=3, out=tmp_path, registry=registry)
    last = _last(out.frame)
    assert last.loc["pgm[prox_W=simplex]", "problem"] == last.loc["mu", "problem"]
    assert last.loc["pgm[prox_W=l1,prox_H=l1_nonneg]", "objective_name"] == "H:l1_nonneg[lam=0.1]"
    rows = out.frame[out.frame.solver == "pgm[prox_W=l1,prox_H=l1_nonneg]"]
    # no l1 penalty of the fixed W: only 0.1 * sum(H)
    assert ((rows.objective - rows.loss) > 0).all()
    problem, (W, H) = _final_factors(registry, "pgm[prox_W=l1,prox_H=l1_nonneg]", "nnls_toy[n=40]", 3)
    assert rows.objective.iloc[-1] - rows.loss.iloc[-1] == pytest.approx(0.1 * float(H.sum()), rel=1e-12)


def test_a_solver_declares_its_objective_or_that_it_is_unknown(tmp_path):
    registry = load_registry(use_entry_points=False)
    l1 = FactorTerm(PROX["l1_nonneg"], {"lam": 0.5})
    registry.solvers["sparse_mu"] = SolverSpec(name="sparse_mu", factory=MU, objective=lambda p: Objective(H=l1))
    registry.solvers["mystery"] = SolverSpec(name="mystery", factory=MU,
                                             objective=lambda p: Objective(unknown="it minimises a secret"))
    out = run_benchmark(solvers="sparse_mu,mystery,mu", datasets=SMALL, max_iter=4, out=tmp_path, registry=registry)
    last = _last(out.frame)
    assert last.loc["sparse_mu", "objective_name"] == "W:nonneg H:l1_nonneg[lam=0.5]"
    rows = out.frame[out.frame.solver == "sparse_mu"]
    assert (rows.objective > rows.loss).all()
    assert last.loc["mystery", "objective_name"] == "unknown" and math.isnan(last.loc["mystery", "objective"])
    assert last.loc["mystery", "objective_note"] == "it minimises a secret"
    assert last.loc["mu", "objective_name"] == "nonneg"  # the default: the nonnegative problem


def test_objective_names_are_canonical():
    assert Objective().name() == "nonneg"
    assert Objective(W=FactorTerm(PROX["nonneg"]), H=FactorTerm(PROX["nonneg"])).name() == "nonneg"
    term = FactorTerm(PROX["l1"], {"lam": 1e-08})
    assert Objective(H=term).name() == "W:nonneg H:l1[lam=1e-08]"
    assert Objective(W=term).name(fixed_W=True) == "nonneg"
    assert Objective(H=FactorTerm(PROX["unity"], {"s": 1.0, "axis": "rows"})).note(fixed_W=True).startswith(
        "prox unity on H")


def test_the_report_says_why_an_objective_is_unknown(registry, tmp_path):
    from proxmf_bench.results.report import build_report

    out = run_benchmark(solvers="mu,pgm[prox_H=unity]", datasets=SMALL, max_iter=5, out=tmp_path / "run",
                        registry=registry)
    report = build_report([out.run_dir], formats=("png",))
    html = report.html_path.read_text()
    assert "unknown objective" in html and "neither a projection nor declares a penalty" in html
    assert "f* undefined: prox unity on H" in html
