"""The synthetic family: presets, determinism, noise, sparsity, Dirichlet abundances, cond(W)."""

from __future__ import annotations

import math

import pytest
import torch

from proxmf_bench.datasets import synthetic
from proxmf_bench.errors import UserError
from proxmf_bench.plugin.selection import select

CPU, F64 = torch.device("cpu"), torch.float64


def _load(registry, seed=0, **given):
    spec = registry.get_dataset("synthetic")
    return spec.load(spec.resolve(given, registry), seed, CPU, F64)


def test_default_is_small_and_presets_reach_gpu_scale(registry):
    p = _load(registry)
    assert p.shape == (200, 300) and p.rank == 10
    spec = registry.get_dataset("synthetic")
    xl = spec.resolve({"size": "xlarge"}, registry)
    assert (xl["m"], xl["n"], xl["rank"]) == (20000, 10000, 50)
    mixed = spec.resolve({"size": "xlarge", "rank": "5"}, registry)
    assert (mixed["m"], mixed["n"], mixed["rank"]) == (20000, 10000, 5)


def test_size_grid_selection_labels(registry):
    variants = select("synthetic[size=[small,medium]]", registry.datasets, registry, "dataset")
    assert [v.label for v in variants] == ["synthetic[size=small]", "synthetic[size=medium]"]
    assert (variants[1].params["m"], variants[1].params["n"], variants[1].params["rank"]) == (2000, 1000, 20)


def test_same_shape_from_preset_or_explicit_is_the_same_problem(registry):
    a = _load(registry, size="small")
    b = _load(registry, m="200", n="300", rank="10", size="medium")
    assert torch.equal(a.Y, b.Y)


def test_deterministic_per_seed_and_loads_are_independent(registry):
    a = _load(registry, seed=3)
    a.Y.zero_()
    b = _load(registry, seed=3)
    c = _load(registry, seed=4)
    assert float(b.Y.sum()) > 0
    assert torch.equal(b.Y, _load(registry, seed=3).Y)
    assert not torch.equal(b.Y, c.Y)


@pytest.mark.parametrize("block", [synthetic._NOISE_BLOCK, 400 * 7])
def test_noise_level_and_snr(registry, monkeypatch, block):
    """Also with noise drawn in many row blocks (7 rows each)."""
    monkeypatch.setattr(synthetic, "_NOISE_BLOCK", block)
    clean = _load(registry, noise="0")
    assert torch.equal(clean.Y, clean.W_true @ clean.H_true)
    assert clean.metadata["snr_db"] == math.inf
    noisy = _load(registry, noise="0.1", m="300", n="400")
    WH = noisy.W_true @ noisy.H_true
    E = noisy.Y - WH
    assert float(E.std()) == pytest.approx(0.1 * float(WH.std()), rel=0.05)
    assert float(E[-7:].std()) == pytest.approx(0.1 * float(WH.std()), rel=0.2)
    assert noisy.metadata["snr_db"] == pytest.approx(10 * math.log10(float(WH.pow(2).sum() / E.pow(2).sum())))
    assert float(noisy.Y.min()) >= 0


@pytest.mark.parametrize("abundances", ["gaussian", "dirichlet"])
def test_sparsity_of_H(registry, abundances):
    p = _load(registry, sparsity="0.6", abundances=abundances, n="2000", rank="8")
    zero_fraction = float((p.H_true == 0).double().mean())
    assert 0.5 < zero_fraction <= 0.6
    assert bool((p.H_true.amax(dim=0) > 0).all())
    if abundances == "dirichlet":
        torch.testing.assert_close(p.H_true.sum(dim=0), torch.ones(2000, dtype=F64))


def test_dirichlet_columns_sum_to_one(registry):
    p = _load(registry, abundances="dirichlet")
    assert float(p.H_true.min()) >= 0
    torch.testing.assert_close(p.H_true.sum(dim=0), torch.ones(300, dtype=F64))


@pytest.mark.parametrize("cond", [1.0, 1.5, 50.0, 1e4])
def test_cond_of_W(registry, cond):
    p = _load(registry, cond=str(cond), m="100", n="50", rank="6")
    s = torch.linalg.svdvals(p.W_true)
    assert float(s[0] / s[-1]) == pytest.approx(cond, rel=1e-6)
    assert float(p.W_true.min()) >= 0
    assert p.metadata["cond_W"] == pytest.approx(cond, rel=1e-6)


def test_cond_zero_keeps_the_draw(registry):
    p = _load(registry, m="100", n="50", rank="6")
    q = _load(registry, m="100", n="50", rank="6", noise="0.01")
    assert p.metadata["cond_W"] > 1 and torch.equal(p.W_true, q.W_true)


@pytest.mark.parametrize("given, message", [
    ({"cond": "0.5"}, "not a condition number"),
    ({"cond": "10", "rank": "1"}, "rank-1 W"),
    ({"size": "huge"}, "not one of small, medium, large, xlarge"),
    ({"m": "0"}, "below its minimum"),
])
def test_bad_parameters(registry, given, message):
    with pytest.raises(UserError, match=message):
        registry.get_dataset("synthetic").resolve(given, registry)
