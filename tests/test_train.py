"""Training NALMU: data, loss, optimisation, interruption, the train command, the toy dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from proxmf_bench.cli import main
from proxmf_bench.errors import UserError
from proxmf_bench.nalmu.model import NALMU, NALMUConfig, load_weights
from proxmf_bench.nalmu.train import (
    Batch,
    TrainSettings,
    fit,
    match_batch,
    nu_schedule,
    supervised_loss,
    training_data,
)
from proxmf_bench.problem.metrics import match_components
from proxmf_bench.results.table import load_results

TINY_NNLS = "nnls_toy[m=10,n=40,rank=3]"


@pytest.fixture(autouse=True)
def _one_thread():
    """Training is many small products: one thread avoids oversubscription on shared CPUs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_nnls_toy_has_a_fixed_scene_and_new_pixels_per_seed(registry):
    spec = registry.get_dataset("nnls_toy")
    params = {p.name: p.default for p in spec.params}
    assert (params["rank"], params["m"], params["n"], params["sigma"]) == (5, 20, 500, 0.1)
    a = spec.load(params, 0, torch.device("cpu"), torch.float64)
    b = spec.load(params, 1, torch.device("cpu"), torch.float64)
    assert a.fixed_W and a.shape == (20, 500) and a.rank == 5
    assert torch.equal(a.W_true, b.W_true) and not torch.equal(a.H_true, b.H_true)
    means = torch.tensor(a.metadata["component_means"], dtype=torch.float64)
    assert bool((means >= 0).all() and (means < 50).all())
    assert float((a.H_true.mean(dim=1) - means).abs().max()) < 0.3  # H = mean + N(0, 1), 500 pixels
    residual = a.Y - a.W_true @ a.H_true
    assert abs(float(residual.std()) - 0.1) < 0.01


def test_nu_schedules():
    torch.testing.assert_close(nu_schedule("logspace", 8), torch.logspace(-7, 0, 8, dtype=torch.float64))
    assert nu_schedule("last", 4).tolist() == [0.0, 0.0, 0.0, 1.0]
    assert nu_schedule("uniform", 3).tolist() == [1.0, 1.0, 1.0]


def test_batch_matching_agrees_with_the_metric():
    gen = torch.Generator().manual_seed(3)
    W_true = torch.rand(4, 20, 5, generator=gen, dtype=torch.float64)
    perms = [torch.randperm(5, generator=gen) for _ in range(4)]
    W = torch.stack([W_true[b][:, p] * 3.0 + 0.05 * torch.rand(20, 5, generator=gen, dtype=torch.float64)
                     for b, p in enumerate(perms)])
    got = match_batch(W, W_true)
    for b in range(4):
        expected, _ = match_components(W[b], W_true[b])
        assert got[b].tolist() == expected.tolist()
        assert torch.equal(perms[b][got[b]], torch.arange(5))


def test_training_lowers_the_held_out_loss_and_keeps_weights_nonnegative(registry):
    data = training_data(TINY_NNLS, registry, problems=5, val_fraction=0.2)
    assert len(data.train) == 4 and len(data.val) == 1 and data.fixed_W
    assert data.description["val_seeds"] == [1004]
    model = NALMU(NALMUConfig(layers=5, rank=3, m=10, shape="component", fixed_W=True))
    result = fit(model, data.train, data.val, TrainSettings(epochs=25, lr=0.05, batch_size=2))
    assert result.epochs_run == 25 and result.best_epoch > 0
    nu = nu_schedule("logspace", 5)
    with torch.no_grad():
        trained = float(supervised_loss(model, Batch.of(data.val), nu, "sq"))
        untrained = float(supervised_loss(NALMU(model.config), Batch.of(data.val), nu, "sq"))
    assert trained == pytest.approx(result.best_val_loss)
    assert trained < 0.9 * untrained
    assert float(model.A_H.detach().min()) >= 0.0


@pytest.mark.parametrize("loss_W,loss_H", [("sq", "sq"), ("sad", "sum-to-one")])
def test_nmf_loss_ignores_component_order_and_scale(registry, loss_W, loss_H):
    data = training_data("synthetic[m=15,n=30,rank=3]", registry, problems=3, val_fraction=0.34)
    assert not data.fixed_W
    batch = Batch.of(data.train)
    perm, scale = torch.tensor([2, 0, 1]), torch.tensor([0.5, 3.0, 2.0], dtype=torch.float64)
    shuffled = Batch(batch.Y, batch.W_true, batch.H_true, batch.W0[..., perm] / scale, batch.H0[:, perm, :] * scale[:, None])
    model = NALMU(NALMUConfig(layers=4, rank=3, m=15, shape="scalar"))
    nu = nu_schedule("uniform", 4)
    with torch.no_grad():
        a, b = supervised_loss(model, batch, nu, loss_W, loss_H), supervised_loss(model, shuffled, nu, loss_W, loss_H)
    torch.testing.assert_close(a, b, rtol=1e-9, atol=0)
    result = fit(model, data.train, data.val, TrainSettings(epochs=3, lr=0.05, loss_W=loss_W, loss_H=loss_H))
    assert np.isfinite(result.val_loss).all() and result.best_val_loss <= min(result.val_loss)


def test_ctrl_c_keeps_the_best_weights_so_far(registry):
    data = training_data(TINY_NNLS, registry, problems=4, val_fraction=0.25)
    model = NALMU(NALMUConfig(layers=4, rank=3, m=10, fixed_W=True))

    def interrupt(epoch, train_loss, val_loss):
        if epoch == 6:
            with torch.no_grad():
                model.A_H.fill_(7.0)  # what a half-finished step could leave behind
            raise KeyboardInterrupt

    result = fit(model, data.train, data.val, TrainSettings(epochs=50, lr=0.05), on_epoch=interrupt)
    assert result.interrupted and result.epochs_run == 6
    with torch.no_grad():
        now = float(supervised_loss(model, Batch.of(data.val), nu_schedule("logspace", 4), "sq"))
    assert now == pytest.approx(result.best_val_loss)
    assert result.best_val_loss == min([result.best_val_loss, *result.val_loss])


def test_pixel_split_holds_out_disjoint_patches(registry):
    data = training_data("synthetic[m=8,n=103,rank=2]", registry, split="pixels", patch_size=20, val_fraction=0.4)
    sources = [e.source for e in data.train + data.val]
    assert len(sources) == 5 and len(set(sources)) == 5  # 103 pixels: 5 patches, 3 pixels dropped
    assert len(data.val) == 2
    assert all(e.Y.shape == (8, 20) for e in data.train + data.val)
    with pytest.raises(UserError, match="smaller than the rank"):
        training_data("synthetic[m=8,n=103,rank=2]", registry, split="pixels", patch_size=1)


def test_training_data_refusals(registry, tmp_path):
    plugin = tmp_path / "scene.py"
    plugin.write_text(
        "import torch\n"
        "from proxmf_bench import hookimpl, DatasetSpec, Problem\n"
        "def load(params, seed, device, dtype):\n"
        "    W = torch.ones(4, 2, dtype=dtype); H = torch.ones(2, 30, dtype=dtype)\n"
        "    return Problem(Y=W @ H, rank=2, W_true=W, H_true=H, name='scene')\n"
        "@hookimpl\n"
        "def proxmf_register_datasets(register):\n"
        "    register(DatasetSpec(name='scene', load=load, ground_truth=True))\n"
    )
    from proxmf_bench.plugin.registry import load_registry

    with_scene = load_registry([plugin], strict=True, use_entry_points=False)
    with pytest.raises(UserError, match="same data for every seed: use --split pixels"):
        training_data("scene", with_scene, problems=3)
    with pytest.raises(UserError, match="val-fraction"):
        training_data(TINY_NNLS, registry, problems=3, val_fraction=1.0)


def test_train_command_then_run_with_the_weights(tmp_path, capsys):
    weights = tmp_path / "toy.pt"
    argv = ["train", "nalmu", "--dataset", TINY_NNLS, "--layers", "4", "--shape", "component", "--epochs", "8",
            "--problems", "4", "--lr", "0.05", "--out", str(weights)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "NALMU (nnls, K=4, component, per layer)" in out and "held-out sq_err_H" in out
    model, info = load_weights(weights)
    assert model.config.layers == 4 and model.config.fixed_W
    assert info["training"]["epochs"] == 8 and info["data"]["train_seeds"] == [1000, 1001, 1002]
    assert info["result"]["val_trained"]["loss"] <= info["result"]["val_untrained"]["loss"]
    assert main(argv) == 2
    assert "exists; pass --force" in capsys.readouterr().err

    run_dir = tmp_path / "run"
    assert main(["run", "--solvers", f"mu,nalmu[weights={weights}]", "--datasets", TINY_NNLS,
                 "--max-iter", "12", "--out", str(run_dir)]) == 0
    frame = load_results(run_dir)
    nalmu = frame[frame.solver_name == "nalmu"]
    params = json.loads(nalmu.solver_params.iloc[0])
    assert params["layers"] == 4 and params["weights"] == str(weights)
    assert set(nalmu.stop_reason) == {"max_iter"} and nalmu.iteration.max() == 12
    assert nalmu.rmse_H.notna().all()

    # the same weights on a problem of another rank: that cell fails with a clear message
    bad_dir = tmp_path / "bad"
    assert main(["run", "--solvers", f"nalmu[weights={weights}]", "--datasets", "nnls_toy[m=10,n=40,rank=4]",
                 "--max-iter", "3", "--out", str(bad_dir)]) == 3
    errors = load_results(bad_dir).error.unique()
    assert any("trained for rank 3, but this problem has rank 4" in e for e in errors)


def test_run_refuses_a_missing_weights_file_before_running(tmp_path, capsys):
    assert main(["run", "--solvers", f"nalmu[weights={tmp_path / 'nope.pt'}]", "--datasets", TINY_NNLS,
                 "--out", str(tmp_path / "r")]) == 2
    assert "NALMU weights file not found" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
