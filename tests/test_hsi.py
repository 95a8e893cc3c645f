"""Samson and Jasper Ridge: layout, scaling, caching, and the errors for bad files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from conftest import HSI_DATA, HSI_MISSING, needs_hsi
from proxmf_bench.cli import main
from proxmf_bench.datasets import hsi
from proxmf_bench.errors import DataError
from proxmf_bench.plugin.data_files import ENV_DATA
from proxmf_bench.plugin.specs import DataFile

CPU, F64 = torch.device("cpu"), torch.float64


@pytest.fixture
def shared_data(monkeypatch):
    monkeypatch.setenv(ENV_DATA, str(HSI_DATA))


@needs_hsi
@pytest.mark.parametrize("scene", hsi.SCENES, ids=lambda s: s.name)
def test_scene_shapes_and_ground_truth(registry, shared_data, scene):
    p = registry.get_dataset(scene.name).load({}, 0, CPU, F64)
    r = len(scene.endmembers)
    assert p.shape == (scene.bands, scene.pixels) and p.rank == r
    assert p.W_true.shape == (scene.bands, r) and p.H_true.shape == (r, scene.pixels)
    assert float(p.H_true.min()) >= 0
    torch.testing.assert_close(p.H_true.sum(dim=0), torch.ones(scene.pixels, dtype=F64))


@needs_hsi
@pytest.mark.parametrize("scene", hsi.SCENES, ids=lambda s: s.name)
def test_pixel_order_is_column_major(registry, shared_data, scene):
    """Unmixing Y with the true endmembers reproduces the abundances; the C order would not."""
    p = registry.get_dataset(scene.name).load({}, 0, CPU, F64)
    A_ls = torch.linalg.lstsq(p.W_true, p.Y).solution
    side = int(round(scene.pixels ** 0.5))
    row_major = p.H_true.reshape(p.rank, side, side).transpose(1, 2).reshape(p.rank, -1)
    for k in range(p.rank):
        assert np.corrcoef(A_ls[k].numpy(), p.H_true[k].numpy())[0, 1] > 0.85
    assert min(np.corrcoef(A_ls[k].numpy(), row_major[k].numpy())[0, 1] for k in range(p.rank)) < 0.7


@needs_hsi
def test_scaling_as_documented(registry, shared_data):
    samson = registry.get_dataset("samson").load({}, 0, CPU, F64)
    torch.testing.assert_close(samson.W_true.amax(dim=0), torch.ones(3, dtype=F64), atol=2e-3, rtol=0)
    assert 0.99 < float(samson.Y.max()) <= 1.0
    jasper = registry.get_dataset("jasper").load({}, 0, CPU, F64)
    assert float(jasper.Y.max()) == pytest.approx(5437 / 5000)


@needs_hsi
def test_loads_are_cached_and_independent(registry, shared_data, monkeypatch):
    calls = []
    real = scipy.io.loadmat
    monkeypatch.setattr(scipy.io, "loadmat", lambda *a, **k: calls.append(a) or real(*a, **k))
    hsi._read_cached.cache_clear()
    spec = registry.get_dataset("samson")
    first = spec.load({}, 0, CPU, F64)
    first.Y.zero_()  # a run that scribbles on its data must not alter the next load
    second = spec.load({}, 1, CPU, torch.float32)
    assert len(calls) == 1
    assert second.dtype == torch.float32 and float(second.Y.max()) > 0.99


def _data_dir_with(tmp_path: Path, content: bytes) -> Path:
    (tmp_path / "samson").mkdir()
    (tmp_path / "samson" / "Samson.mat").write_bytes(content)
    return tmp_path


@pytest.mark.parametrize(
    "content, status",
    [(None, "missing"), (b"short", "wrong size"), ("flip", "checksum mismatch")],
)
def test_missing_or_corrupt_file_says_where_to_put_it(registry, tmp_path, monkeypatch, content, status):
    if content == "flip":
        if HSI_DATA is None:
            pytest.skip(HSI_MISSING)
        data = bytearray((HSI_DATA / "samson" / "Samson.mat").read_bytes())
        data[1000] ^= 0xFF
        content = bytes(data)
    if content is not None:
        _data_dir_with(tmp_path, content)
    monkeypatch.setenv(ENV_DATA, str(tmp_path))
    with pytest.raises(DataError) as err:
        registry.get_dataset("samson").load({}, 0, CPU, F64)
    msg = str(err.value)
    assert status in msg and str(tmp_path / "samson" / "Samson.mat") in msg
    assert "proxmf-bench data fetch samson" in msg and "\n" not in msg


def test_bad_data_directory(registry, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_DATA, str(tmp_path / "nope"))
    with pytest.raises(DataError, match="does not exist"):
        registry.get_dataset("jasper").load({}, 0, CPU, F64)
    monkeypatch.setenv(ENV_DATA, __file__)
    with pytest.raises(DataError, match="is not a directory"):
        registry.get_dataset("jasper").load({}, 0, CPU, F64)


def test_cli_run_with_bad_data_dir_is_one_line(tmp_path, capsys):
    code = main(["run", "--solvers", "mu", "--datasets", "samson", "--data-dir", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err
    assert not (tmp_path / "out").exists()


# --- crafted scene files: the reader's checks, through the real verified load path ------

TINY_BANDS, TINY_ROWS, TINY_COLS, TINY_R = 5, 2, 3, 2


def _tiny_arrays(rng):
    A = rng.dirichlet(np.ones(TINY_R), size=TINY_ROWS * TINY_COLS).T
    GT = rng.random((TINY_R, TINY_BANDS))
    maps = np.stack([A[k].reshape(TINY_ROWS, TINY_COLS, order="F") for k in range(TINY_R)], axis=2)
    return {"Y": GT.T @ A, "GT": GT, "S_GT": maps}


def _load_crafted(tmp_path, monkeypatch, arrays=None, raw: bytes | None = None):
    """Write a scene file, register its checksum as the valid one, load it as the real loader does."""
    path = tmp_path / "tiny" / "tiny.mat"
    path.parent.mkdir(exist_ok=True)
    if raw is not None:
        path.write_bytes(raw)
    else:
        scipy.io.savemat(path, arrays)
    file = DataFile("tiny/tiny.mat", hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size)
    scene = hsi.Scene("tiny", file, TINY_BANDS, TINY_ROWS * TINY_COLS, ("a", "b"))
    monkeypatch.setenv(ENV_DATA, str(tmp_path))
    return hsi.load_scene(scene, {}, 0, CPU, F64), arrays


def test_crafted_scene_round_trips_in_column_major_order(tmp_path, monkeypatch):
    arrays = _tiny_arrays(np.random.default_rng(0))
    p, _ = _load_crafted(tmp_path, monkeypatch, arrays)
    np.testing.assert_allclose(p.Y.numpy(), arrays["Y"])
    np.testing.assert_allclose(p.W_true.numpy(), arrays["GT"].T)
    np.testing.assert_allclose(p.W_true.numpy() @ p.H_true.numpy(), arrays["Y"])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.update(Y=a["Y"][:, :-1]), "variable 'Y' has shape (5, 5), expected (5, 6)"),
        (lambda a: a.update(GT=a["GT"][:1]), "variable 'GT' has shape (1, 5), expected (2, 5)"),
        (lambda a: a.update(S_GT=a["S_GT"][:, :, :1]), "variable 'S_GT' has shape (2, 3, 1)"),
        (lambda a: a.pop("GT"), "variable 'GT' is missing (found: Y, S_GT)"),
        (lambda a: a.update(GT=np.array(["abc", "def"])), "variable 'GT' is not numeric"),
        (lambda a: a["Y"].__setitem__((1, 2), np.nan), "data contains 1 NaN or infinite entries"),
        (lambda a: a["GT"].__setitem__((0, 0), np.inf), "W_true contains 1 NaN or infinite entries"),
        (lambda a: a["Y"].__setitem__((0, 0), -1.0), "negative entries"),
    ],
)
def test_crafted_bad_files_give_clear_errors(tmp_path, monkeypatch, change, message):
    arrays = _tiny_arrays(np.random.default_rng(1))
    change(arrays)
    with pytest.raises(DataError) as err:
        _load_crafted(tmp_path, monkeypatch, arrays)
    assert message in str(err.value) and "tiny.mat" in str(err.value)


def test_not_a_mat_file(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="cannot read .*tiny.mat as a MATLAB file"):
        _load_crafted(tmp_path, monkeypatch, raw=b"this is not a MATLAB file at all" * 10)


@needs_hsi
def test_run_records_ground_truth_metrics(tmp_path):
    from proxmf_bench.run.runner import run_benchmark

    out = run_benchmark(solvers="mu", datasets="samson,jasper", max_iter=3, out=tmp_path / "run",
                        data_dir=HSI_DATA)
    last = out.frame.groupby("dataset").tail(1).set_index("dataset")
    for col in ("sad_deg", "rmse_H", "fms", "rel_error", "sad_deg_0", "sad_deg_2"):
        assert last[col].notna().all(), col
    assert np.isnan(last.loc["samson", "sad_deg_3"]) and np.isfinite(last.loc["jasper", "sad_deg_3"])
    assert out.meta["data_dir"] == str(HSI_DATA)

