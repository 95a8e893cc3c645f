"""NALMU: the unrolled layers against MU and against their definition, the solver, weights files."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from proxmf_bench.errors import UserError
from proxmf_bench.nalmu.model import (
    NALMU,
    NALMUConfig,
    load_weights,
    nalmu_update_H,
    nalmu_update_W,
    normalize_columns,
    save_weights,
)
from proxmf_bench.problem.start import initial_factors
from proxmf_bench.solvers.mu import MU
from proxmf_bench.solvers.nalmu import NALMUSolver

SMALL_NMF = "synthetic[m=30,n=40,rank=4]"
SMALL_NNLS = "nnls_toy[m=12,n=60,rank=3]"


def load(registry, text: str, seed: int = 0):
    from proxmf_bench.plugin.selection import select

    variant = select(text, registry.datasets, registry, "dataset")[0]
    problem = registry.get_dataset(variant.name).load(variant.params, seed, torch.device("cpu"), torch.float64)
    W0, H0 = initial_factors(problem, seed)
    return problem, W0, H0


@pytest.mark.parametrize("dataset", [SMALL_NMF, SMALL_NNLS])
def test_untrained_nalmu_solver_is_mu_iterate_for_iterate(registry, dataset):
    problem, W0, H0 = load(registry, dataset)
    mu, nalmu = MU(), NALMUSolver(weights="ones", layers=7)
    mu.init(problem, W0.clone(), H0.clone())
    nalmu.init(problem, W0.clone(), H0.clone())
    for _ in range(15):  # 7 unrolled layers, then the plain-MU continuation
        mu.step()
        nalmu.step()
        for a, b in zip(mu.factors(), nalmu.factors()):
            torch.testing.assert_close(b, a, rtol=1e-13, atol=0.0)


@pytest.mark.parametrize("normalize", [False, True], ids=["plain", "normalize"])
@pytest.mark.parametrize("dataset", [SMALL_NMF, SMALL_NNLS])
def test_trained_nalmu_solver_runs_the_models_layers(registry, tmp_path, dataset, normalize):
    problem, W0, H0 = load(registry, dataset)
    model = NALMU(NALMUConfig(layers=5, rank=problem.rank, m=problem.shape[0], fixed_W=problem.fixed_W,
                              normalize=normalize))
    with torch.no_grad():
        for weights in model.parameters():
            weights.uniform_(0.5, 1.5)
    Ws, Hs = model(problem.Y, W0, H0)
    solver = NALMUSolver(weights=str(save_weights(tmp_path / "w.pt", model, {})), layers=5, normalize=normalize)
    solver.init(problem, W0.clone(), H0.clone())
    for W, H in zip(Ws, Hs):
        solver.step()
        torch.testing.assert_close(solver.factors()[0], W.detach(), rtol=1e-13, atol=0.0)
        torch.testing.assert_close(solver.factors()[1], H.detach(), rtol=1e-13, atol=0.0)


def test_all_ones_model_gives_mu_iterates_on_a_batch(registry):
    problems = [load(registry, SMALL_NMF, seed) for seed in (0, 1)]
    model = NALMU(NALMUConfig(layers=6, rank=4, m=30, shape="full"))
    Ws, Hs = model(*(torch.stack(parts) for parts in zip(*((p.Y, W0, H0) for p, W0, H0 in problems))))
    for b, (problem, W0, H0) in enumerate(problems):
        mu = MU()
        mu.init(problem, W0.clone(), H0.clone())
        for k in range(6):
            mu.step()
            torch.testing.assert_close(Ws[k][b], mu.W, rtol=1e-13, atol=0.0)
            torch.testing.assert_close(Hs[k][b], mu.H, rtol=1e-13, atol=0.0)


def test_weighted_layer_matches_its_formula():
    rng = np.random.default_rng(0)
    Y, W, H = rng.random((7, 9)), rng.random((7, 3)), rng.random((3, 9))
    A_W, A_H = rng.random((7, 3)) + 0.5, rng.random((3, 1)) + 0.5
    H1 = H * A_H * (W.T @ Y) / (W.T @ W @ H)
    W1 = W * A_W * (Y @ H1.T) / (W @ H1 @ H1.T)
    t = lambda a: torch.from_numpy(a)  # noqa: E731
    H1_t = nalmu_update_H(t(Y), t(W), t(H), t(A_H), 1e-12)
    W1_t = nalmu_update_W(t(Y), t(W), H1_t, t(A_W), 1e-12)
    np.testing.assert_allclose(H1_t.numpy(), H1, rtol=1e-12)
    np.testing.assert_allclose(W1_t.numpy(), W1, rtol=1e-12)


def test_gradients_through_the_layers_are_exact():
    torch.manual_seed(0)
    Y, W0, H0 = torch.rand(6, 8, dtype=torch.float64), torch.rand(6, 2, dtype=torch.float64), torch.rand(2, 8, dtype=torch.float64)
    model = NALMU(NALMUConfig(layers=3, rank=2, m=6, shape="full"))

    def last_iterates(A_W, A_H):
        Ws, Hs = torch.func.functional_call(model, {"A_W": A_W, "A_H": A_H}, (Y, W0, H0))
        return Ws[-1], Hs[-1]

    A_W = (torch.rand(3, 6, 2, dtype=torch.float64) + 0.5).requires_grad_()
    A_H = (torch.rand(3, 2, 1, dtype=torch.float64) + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(last_iterates, (A_W, A_H))


@pytest.mark.parametrize("shape,tied,expected", [
    ("full", False, {"A_H": (5, 3, 1), "A_W": (5, 7, 3)}),
    ("component", False, {"A_H": (5, 3, 1), "A_W": (5, 1, 3)}),
    ("scalar", True, {"A_H": (1, 1, 1), "A_W": (1, 1, 1)}),
])
def test_weight_shapes(shape, tied, expected):
    model = NALMU(NALMUConfig(layers=5, rank=3, m=7, shape=shape, tied=tied))
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    nnls = NALMU(NALMUConfig(layers=5, rank=3, m=7, shape=shape, tied=tied, fixed_W=True))
    assert set(nnls.state_dict()) == {"A_H"}


def test_tied_weights_are_shared_by_every_layer():
    model = NALMU(NALMUConfig(layers=4, rank=2, m=3, tied=True))
    with torch.no_grad():
        model.A_H.mul_(2.0)
    assert all(float(model.layer_weights(k)[1].detach().min()) == 2.0 for k in range(4))


def test_normalisation_keeps_the_product_and_the_nnls_solution(registry):
    problem, W0, H0 = load(registry, SMALL_NMF)
    Yn, Wn, Hn, scaling = normalize_columns(problem.Y, W0, H0)
    torch.testing.assert_close(torch.linalg.vector_norm(Yn, dim=0), torch.ones(40, dtype=torch.float64))
    torch.testing.assert_close(torch.linalg.vector_norm(Wn, dim=0), torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(scaling.restore_H(Wn @ Hn), W0 @ H0)
    # MU on H is invariant to the scale of each column: normalising changes nothing in NNLS
    problem, W0, H0 = load(registry, SMALL_NNLS)
    plain = NALMU(NALMUConfig(layers=5, rank=3, m=12, fixed_W=True))
    normed = NALMU(NALMUConfig(layers=5, rank=3, m=12, fixed_W=True, normalize=True))
    torch.testing.assert_close(normed(problem.Y, W0, H0)[1][-1], plain(problem.Y, W0, H0)[1][-1], rtol=1e-10, atol=0)


def test_weights_file_round_trip_and_refusals(tmp_path):
    model = NALMU(NALMUConfig(layers=3, rank=2, m=5, shape="component"))
    with torch.no_grad():
        model.A_W.uniform_(0.5, 1.5)
    path = save_weights(tmp_path / "w.pt", model, {"note": "test"})
    loaded, info = load_weights(path)
    assert loaded.config == model.config and info == {"note": "test"}
    torch.testing.assert_close(loaded.A_W, model.A_W.detach())
    # a file whose tensors disagree with its configuration is refused with a clear message
    payload = torch.load(path, weights_only=True)
    payload["state"]["A_W"] = torch.ones(3, 5, 2)
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(UserError, match="do not match its configuration"):
        load_weights(tmp_path / "bad.pt")
    torch.save([1, 2, 3], tmp_path / "foreign.pt")
    with pytest.raises(UserError, match="not a NALMU weights file"):
        load_weights(tmp_path / "foreign.pt")
    with pytest.raises(UserError, match="not found"):
        load_weights(tmp_path / "missing.pt")
    with pytest.raises(UserError, match="rank 2, but this problem has rank 4"):
        loaded.check_compatible(5, 4, fixed_W=False)
    with pytest.raises(UserError, match="trained for m=5 rows"):
        NALMU(NALMUConfig(layers=3, rank=2, m=5, shape="full")).check_compatible(6, 2, fixed_W=False)
    with pytest.raises(UserError, match="NMF problem"):
        loaded.check_compatible(5, 2, fixed_W=True)


def _damaged(payload, part, key, value):
    copy = {**payload, "config": dict(payload["config"]), "state": dict(payload["state"])}
    if key is None:
        copy[part] = value
    else:
        copy[part][key] = value(copy[part][key]) if callable(value) else value
    return copy


MALFORMED_WEIGHTS = [
    ("config", "layers", "3", "layers must be an integer from 1 to 100000, got '3'"),
    ("config", "layers", 10**12, "layers must be an integer from 1 to 100000"),  # absurd: nothing allocated
    ("config", "m", 2**40, "m must be a positive integer"),
    ("config", "rank", True, "rank must be a positive integer, got True"),
    ("config", "shape", 5, "shape must be one of full, component, scalar"),
    ("config", "tied", "no", "tied must be true or false"),
    ("config", "eps", float("nan"), "eps must be a finite number >= 0"),
    ("config", None, [1, 2], "NALMU configuration is a list, not a mapping"),
    ("state", "A_W", lambda t: t.to(torch.complex128), "A_W must be a dense real floating-point tensor"),
    ("state", "A_W", lambda t: t.to_sparse(), "A_W must be a dense real floating-point tensor"),
    ("state", "A_W", lambda t: t.to(torch.int64), "A_W must be a dense real floating-point tensor"),
    ("state", "A_W", torch.ones(3, 10**3, 2), "do not match its configuration"),
    ("state", "A_W", 1.0, "do not match its configuration"),
    ("state", None, [torch.ones(1)], "its state and info must be dictionaries"),
    ("info", None, "notes", "its state and info must be dictionaries"),
]


@pytest.mark.parametrize(("part", "key", "value", "message"), MALFORMED_WEIGHTS)
def test_malformed_weights_files_are_one_line_errors(part, key, value, message, tmp_path, capsys):
    from proxmf_bench.cli import main

    model = NALMU(NALMUConfig(layers=3, rank=2, m=5, shape="component"))
    path = save_weights(tmp_path / "w.pt", model, {"note": "test"})
    torch.save(_damaged(torch.load(path, weights_only=True), part, key, value), tmp_path / "bad.pt")
    with pytest.raises(UserError, match=re.escape(message)):
        load_weights(tmp_path / "bad.pt")
    code = main(["run", "--solvers", f"nalmu[weights={tmp_path / 'bad.pt'}]", "--datasets",
                 "synthetic[m=5,n=8,rank=2]", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err and "internal error" not in err, err
    assert not (tmp_path / "run").exists()


def test_solver_params_record_where_the_unrolled_part_ends(registry, tmp_path):
    from proxmf_bench.solvers.nalmu import resolve_params

    assert resolve_params({}, registry)["layers"] == 25
    model = NALMU(NALMUConfig(layers=4, rank=3, m=12, fixed_W=True, normalize=True))
    path = save_weights(tmp_path / "w.pt", model, {})
    params = resolve_params({"weights": str(path)}, registry)
    assert params["layers"] == 4 and params["normalize"] is True and len(params["sha256"]) == 64
    with pytest.raises(UserError, match="layers=9 was given but the weights file"):
        resolve_params({"weights": str(path), "layers": "9"}, registry)
    json.dumps(params)
