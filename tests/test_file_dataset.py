"""The built-in ``file`` dataset: every format read back exactly, identity (absolute path,
size, sha256), memory estimated before reading, and one-line errors with exit status 2."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp
import torch

from proxmf_bench.cli import main
from proxmf_bench.datasets import file as file_dataset
from proxmf_bench.errors import DataError, UserError
from proxmf_bench.plugin import data_files
from proxmf_bench.plugin.selection import select
from proxmf_bench.run import resources
from proxmf_bench.run.cells import Cell
from proxmf_bench.run.serial import ProblemCache

CPU, F64 = torch.device("cpu"), torch.float64


def _matrix(m: int = 40, n: int = 30, seed: int = 0) -> np.ndarray:
    """A nonnegative test matrix with some exact zeros, like real data."""
    rng = np.random.default_rng(seed)
    Y = np.abs(rng.standard_normal((m, n)))
    Y[rng.random((m, n)) < 0.2] = 0.0
    return Y


def _counts(seed: int = 1) -> sp.csr_matrix:
    """A sparse term-count-like matrix (documents x terms)."""
    rng = np.random.default_rng(seed)
    return sp.random(60, 50, density=0.1, format="csr", random_state=seed, data_rvs=lambda k: rng.poisson(3, k) + 1.0)


def _select(text: str, registry):
    (variant,) = select(text, registry.datasets, registry, "dataset")
    return variant


def _load(text: str, registry, dtype=F64):
    variant = _select(text, registry)
    return registry.get_dataset("file").load(variant.params, 0, CPU, dtype)


def _write_text(path, rows, delimiter=",", header=None):
    lines = [] if header is None else [header]
    lines += [delimiter.join(repr(float(v)) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


# --- each format reads back the matrix that was written ------------------------------------------


def _dense_files(tmp_path):
    """(file name, selection options, the matrix the file holds) for every dense layout."""
    Y = _matrix()
    np.save(tmp_path / "c_order.npy", Y)
    np.save(tmp_path / "fortran.npy", np.asfortranarray(Y))
    np.save(tmp_path / "float32.npy", Y.astype(np.float32))
    np.save(tmp_path / "big_endian.npy", Y.astype(">f8"))
    np.save(tmp_path / "counts_int.npy", (Y * 10).astype(np.int32))
    np.savez(tmp_path / "one.npz", Y)
    np.savez_compressed(tmp_path / "named.npz", Y=Y, labels=np.arange(30))
    pd.DataFrame(Y).to_csv(tmp_path / "pandas_index.csv")  # header ",0,1,..." and an index column
    pd.DataFrame(Y).to_csv(tmp_path / "pandas_no_index.csv", index=False)  # header "0,1,..."
    pd.DataFrame(Y, columns=[f"band{j}" for j in range(30)]).to_csv(tmp_path / "named_columns.csv", index=False)
    _write_text(tmp_path / "plain.csv", Y)
    _write_text(tmp_path / "plain.tsv", Y, "\t")
    with open(tmp_path / "r_style.csv", "w") as fh:  # R's write.csv: quoted names, row names
        fh.write(",".join(['""'] + [f'"V{j + 1}"' for j in range(30)]) + "\n")
        for i, row in enumerate(Y):
            fh.write(",".join([f'"{i + 1}"'] + [repr(float(v)) for v in row]) + "\n")
    scipy.io.savemat(tmp_path / "scene.mat", {"Y": Y, "GT": Y[:3]})
    scipy.io.savemat(tmp_path / "v4.mat", {"Y": Y}, format="4")
    scipy.io.mmwrite(tmp_path / "array.mtx", Y)
    frame = pd.DataFrame(Y, columns=[f"band{j}" for j in range(30)], index=[f"pixel{i}" for i in range(40)])
    frame["band0"] = (Y[:, 0] * 100).astype(np.int64)  # an integer column
    frame.to_parquet(tmp_path / "table.parquet")
    with_int = Y.copy()
    with_int[:, 0] = (Y[:, 0] * 100).astype(np.int64)
    return [
        ("c_order.npy", "", Y), ("fortran.npy", "", Y), ("big_endian.npy", "", Y), ("float32.npy", "", Y.astype(np.float32).astype(np.float64)),
        ("counts_int.npy", "", (Y * 10).astype(np.int32).astype(np.float64)),
        ("one.npz", "", Y), ("named.npz", ",var=Y", Y),
        ("pandas_index.csv", "", Y), ("pandas_no_index.csv", "", Y), ("named_columns.csv", "", Y),
        ("plain.csv", "", Y), ("plain.tsv", "", Y), ("r_style.csv", "", Y),
        ("scene.mat", ",var=Y", Y), ("v4.mat", "", Y), ("array.mtx", "", Y), ("table.parquet", "", with_int),
    ]


def test_every_dense_format_reads_back_the_matrix_written(tmp_path, registry):
    for name, options, expected in _dense_files(tmp_path):
        problem = _load(f"file[path={tmp_path / name},rank=3{options}]", registry)
        assert problem.Y.dtype == F64 and problem.Y.is_contiguous(), name
        assert torch.equal(problem.Y, torch.from_numpy(expected)), name  # written and read back exactly


def test_csv_quoted_numbers_blank_and_comment_lines(tmp_path, registry):
    (tmp_path / "y.csv").write_text('# exported by hand\n\n"1.5",2\n\n3,"4e-3"\n# the end\n')
    Y = _load(f"file[path={tmp_path / 'y.csv'},rank=1]", registry).Y
    assert torch.equal(Y, torch.tensor([[1.5, 2.0], [3.0, 4e-3]], dtype=F64))


def test_lists_of_paths_and_ranks_expand_into_problems(tmp_path, monkeypatch, registry):
    np.save(tmp_path / "a.npy", _matrix())
    _write_text(tmp_path / "b.csv", _matrix(seed=1))
    monkeypatch.chdir(tmp_path)
    variants = select("file[path=[a.npy,b.csv],rank=[5,10]]", registry.datasets, registry, "dataset")
    assert sorted((v.params["path"], v.params["rank"]) for v in variants) == [
        (str(tmp_path / name), rank) for name in ("a.npy", "b.csv") for rank in (5, 10)]


def test_sparse_files_are_read_as_sparse_and_densified_with_sparse_false(tmp_path, registry):
    counts = _counts()
    sp.save_npz(tmp_path / "csr.npz", counts)
    sp.save_npz(tmp_path / "csc.npz", counts.tocsc())
    sp.save_npz(tmp_path / "coo.npz", counts.tocoo())
    scipy.io.mmwrite(tmp_path / "counts.mtx", counts)
    scipy.io.savemat(tmp_path / "sparse.mat", {"X": counts.tocsc()})
    for name in ("csr.npz", "csc.npz", "coo.npz", "counts.mtx", "sparse.mat"):
        problem = _load(f"file[path={tmp_path / name},rank=5,sparse=false]", registry)
        assert torch.equal(problem.Y, torch.from_numpy(counts.toarray())), name


def test_sparse_files_stay_sparse_below_the_auto_density(tmp_path, registry):
    counts = sp.random(80, 60, density=0.03, format="csr", random_state=4, data_rvs=lambda k: np.arange(1.0, k + 1))
    sp.save_npz(tmp_path / "csr.npz", counts)
    sp.save_npz(tmp_path / "coo.npz", counts.tocoo())
    scipy.io.mmwrite(tmp_path / "counts.mtx", counts)
    scipy.io.savemat(tmp_path / "sparse.mat", {"X": counts.tocsc()})
    dense = torch.from_numpy(counts.toarray())
    for name in ("csr.npz", "coo.npz", "counts.mtx", "sparse.mat"):
        for options, expected in (("", dense), (",transpose=true", dense.T)):
            problem = _load(f"file[path={tmp_path / name},rank=5{options}]", registry, dtype=torch.float32)
            assert problem.is_sparse and problem.Y.layout == torch.sparse_csr, name
            assert torch.equal(problem.Y.to_dense(), expected.float()), name
            assert torch.equal(problem.Yt.to_dense(), expected.T.float()), name
    # above the threshold auto densifies; sparse=true keeps it sparse anyway
    sp.save_npz(tmp_path / "denser.npz", _counts())  # density 0.1
    assert not _load(f"file[path={tmp_path / 'denser.npz'},rank=5]", registry).is_sparse
    kept = _load(f"file[path={tmp_path / 'denser.npz'},rank=5,sparse=true]", registry)
    assert kept.is_sparse and torch.equal(kept.Y.to_dense(), torch.from_numpy(_counts().toarray()))


def test_matrix_market_symmetric_pattern_and_duplicates_follow_the_format(tmp_path, registry):
    # symmetric: the lower triangle is stored and mirrored; pattern: entries are 1
    (tmp_path / "pattern.mtx").write_text("%%MatrixMarket matrix coordinate pattern symmetric\n3 3 3\n1 1\n3 1\n3 2\n")
    expected = np.array([[1.0, 0, 1], [0, 0, 1], [1, 1, 0]])
    assert torch.equal(_load(f"file[path={tmp_path / 'pattern.mtx'},rank=2]", registry).Y, torch.from_numpy(expected))
    # repeated coordinates add up
    (tmp_path / "dup.mtx").write_text("%%MatrixMarket matrix coordinate real general\n2 2 3\n1 1 1.5\n1 1 2.0\n2 2 1\n")
    assert torch.equal(_load(f"file[path={tmp_path / 'dup.mtx'},rank=1]", registry).Y,
                       torch.tensor([[3.5, 0.0], [0.0, 1.0]], dtype=F64))


def test_dtype_transpose_and_layout(tmp_path, registry):
    Y = _matrix()
    np.save(tmp_path / "y.npy", Y)
    np.save(tmp_path / "f.npy", np.asfortranarray(Y))
    sp.save_npz(tmp_path / "s.npz", _counts())
    _write_text(tmp_path / "y.csv", Y)
    for name, expected in (("y.npy", Y), ("f.npy", Y), ("s.npz", _counts().toarray()), ("y.csv", Y)):
        single = _load(f"file[path={tmp_path / name},rank=3]", registry, torch.float32).Y
        assert single.dtype == torch.float32 and single.is_contiguous()
        assert torch.equal(single, torch.from_numpy(expected).float())
        flipped = _load(f"file[path={tmp_path / name},rank=3,transpose=true]", registry).Y
        assert flipped.is_contiguous() and flipped.stride() == (flipped.shape[1], 1)
        assert torch.equal(flipped, torch.from_numpy(expected.T.copy()))


def test_each_load_is_a_fresh_copy_never_the_files_memory_map(tmp_path, registry):
    Y = _matrix()
    np.save(tmp_path / "y.npy", Y)
    first = _load(f"file[path={tmp_path / 'y.npy'},rank=3]", registry)
    first.Y.mul_(0.0)  # a run that writes to its data changes neither the file nor the next load
    again = _load(f"file[path={tmp_path / 'y.npy'},rank=3]", registry)
    assert torch.equal(again.Y, torch.from_numpy(Y))
    assert np.array_equal(np.load(tmp_path / "y.npy"), Y)


def test_ground_truth_enables_the_metrics(tmp_path, capsys):
    rng = np.random.default_rng(3)
    W, H = np.abs(rng.standard_normal((40, 3))), np.abs(rng.standard_normal((3, 30)))
    np.save(tmp_path / "y.npy", W @ H)
    np.save(tmp_path / "w.npy", W)
    scipy.io.savemat(tmp_path / "h.mat", {"H": H, "note": np.ones((1, 1))})
    out = tmp_path / "run"
    dataset = f"file[path={tmp_path / 'y.npy'},rank=3,W_true={tmp_path / 'w.npy'},H_true={tmp_path / 'h.mat'},H_var=H]"
    assert main(["run", "--solvers", "mu", "--datasets", dataset, "--max-iter", "30", "--out", str(out)]) == 0, \
        capsys.readouterr().err
    frame = pd.read_parquet(out / "results.parquet")
    assert {"sad_deg", "rmse_H", "fms"} <= set(frame.columns) and frame.sad_deg.notna().all()
    params = json.loads(frame.dataset_params.iloc[0])
    for key, name in (("W_true", "w.npy"), ("H_true", "h.mat")):
        assert params[key] == str(tmp_path / name)
        assert params[f"{key}_sha256"] == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
        assert params[f"{key}_size"] == (tmp_path / name).stat().st_size


# --- identity: the path as resolved, the bytes as hashed -----------------------------------------


def test_results_record_the_absolute_path_size_and_sha256(tmp_path, monkeypatch, capsys):
    (tmp_path / "data").mkdir()
    np.save(tmp_path / "data" / "y.npy", _matrix())
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--solvers", "mu", "--datasets", "file[path=data/y.npy,rank=3]", "--max-iter", "5",
                 "--out", "run"]) == 0, capsys.readouterr().err
    frame = pd.read_parquet(tmp_path / "run" / "results.parquet")
    params = json.loads(frame.dataset_params.iloc[0])
    content = (tmp_path / "data" / "y.npy").read_bytes()
    assert params["path"] == str(tmp_path / "data" / "y.npy")
    assert params["size"] == len(content) and params["sha256"] == hashlib.sha256(content).hexdigest()
    assert frame.dataset.iloc[0] == "file[path=data/y.npy,rank=3]"  # the label: as the user typed it


def test_paths_written_differently_are_one_variant_one_cell_one_start(tmp_path, monkeypatch, registry):
    (tmp_path / "sub").mkdir()
    np.save(tmp_path / "y.npy", _matrix())
    monkeypatch.chdir(tmp_path)
    spellings = ["y.npy", "./y.npy", "sub/../y.npy", str(tmp_path / "y.npy"), f"{tmp_path}//y.npy"]
    variants = [_select(f"file[path={p},rank=3]", registry) for p in spellings]
    assert len({v.params_json() for v in variants}) == 1
    (solver,) = select("mu", registry.solvers, registry, "solver")
    assert len({Cell(solver, v, "cpu", "float64", 0).id for v in variants}) == 1
    # one selection listing two spellings runs the matrix once
    assert len(select("file[path=y.npy,rank=3],file[path=./y.npy,rank=3]", registry.datasets, registry, "dataset")) == 1
    starts = []
    for v in variants[:2]:
        cache = ProblemCache(registry)
        cache.load(Cell(solver, v, "cpu", "float64", 0))
        starts.append(cache.start.copies())
    assert torch.equal(starts[0][0], starts[1][0]) and torch.equal(starts[0][1], starts[1][1])


def test_a_file_is_hashed_once_per_version(tmp_path, monkeypatch, registry):
    calls = []
    real = data_files.sha256_of
    monkeypatch.setattr(data_files, "sha256_of", lambda path: calls.append(path) or real(path))
    path = tmp_path / "y.npy"
    np.save(path, _matrix())
    text = f"file[path={path},rank=3]"
    variant = _select(text, registry)
    for _ in range(3):  # selected again (a worker, a resume) and loaded per problem: no new hash
        _select(text, registry)
        registry.get_dataset("file").load(variant.params, 0, CPU, F64)
    assert len(calls) == 1
    np.save(path, _matrix(41, 30))  # a new version is hashed again, and refused by the old selection
    with pytest.raises(DataError, match=r"y\.npy changed since the run started"):
        registry.get_dataset("file").load(variant.params, 0, CPU, F64)
    assert len(calls) == 2


def test_resume_refuses_a_data_file_that_changed(tmp_path, monkeypatch, capsys):
    np.save(tmp_path / "y.npy", _matrix())
    original = (tmp_path / "y.npy").read_bytes()
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--solvers", "mu", "--datasets", "file[path=y.npy,rank=3]", "--seeds", "2", "--max-iter", "5",
                 "--out", "run"]) == 0, capsys.readouterr().err
    first = sorted((tmp_path / "run" / "cells").iterdir())[0]
    first.unlink()
    np.save(tmp_path / "y.npy", _matrix(seed=5))
    assert main(["run", "--resume", "run"]) == 2
    assert "the data files named in it changed" in capsys.readouterr().err
    (tmp_path / "y.npy").write_bytes(original)  # the same bytes again: the same cells
    assert main(["run", "--resume", "run"]) == 0, capsys.readouterr().err
    assert first.is_file()


# --- the memory estimate comes first -------------------------------------------------------------


def test_memory_is_estimated_from_the_header_before_reading(tmp_path, monkeypatch, registry):
    files = [(name, options) for name, options, _ in _dense_files(tmp_path)]
    sp.save_npz(tmp_path / "csr.npz", _counts())
    scipy.io.mmwrite(tmp_path / "counts.mtx", _counts())
    files += [("csr.npz", ""), ("counts.mtx", "")]
    variants = {name: _select(f"file[path={tmp_path / name},rank=3{options}]", registry) for name, options in files}

    def never(source, *args):
        raise AssertionError(f"{source.path} was read before its memory estimate was checked")

    for ext, fmt in file_dataset.FORMATS.items():
        monkeypatch.setitem(file_dataset.FORMATS, ext, dataclasses.replace(
            fmt, read=fmt.read and never, read_into=fmt.read_into and never))
    for name, variant in variants.items():
        shape = (60, 50) if name in ("csr.npz", "counts.mtx") else (40, 30)
        dense = 8 * shape[0] * shape[1]
        monkeypatch.setattr(resources, "available_memory", lambda device="cpu", dense=dense: dense - 1)
        with pytest.raises(DataError, match=rf"{shape[0]} x {shape[1]}, in float64\) needs about .* more than"):
            registry.get_dataset("file").load(variant.params, 0, CPU, F64)


def test_a_huge_sparse_file_is_refused_before_densifying(tmp_path, capsys, registry):
    big = sp.coo_matrix(([1.0, 2.0, 3.0], ([0, 5, 1_999_999], [0, 7, 999_999])), shape=(2_000_000, 1_000_000))
    scipy.io.mmwrite(tmp_path / "huge.mtx", big)
    sp.save_npz(tmp_path / "huge.npz", big.tocsr())
    for name in ("huge.mtx", "huge.npz"):
        # kept sparse (the default), it fits: the estimate counts the CSR arrays
        assert _select(f"file[path={tmp_path / name},rank=3]", registry).params["sparse"] == "auto"
        assert main(["run", "--solvers", "mu", "--datasets", f"file[path={tmp_path / name},rank=3,sparse=false]",
                     "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err
        assert re.search(r"\(2000000 x 1000000, in float32\) needs about 7\.3 TiB of memory on cpu, more than", err)
        assert not (tmp_path / "run").exists()


# --- bad input: one line, exit status 2, nothing run ---------------------------------------------


def _bad_files(tmp_path):
    Y = _matrix()
    np.save(tmp_path / "y.npy", Y)
    np.save(tmp_path / "vector.npy", Y[:, 0])
    np.save(tmp_path / "cube.npy", np.ones((4, 5, 6)))
    np.save(tmp_path / "flags.npy", Y > 0.5)
    np.save(tmp_path / "objects.npy", np.array([[{"a": 1}]], dtype=object), allow_pickle=True)
    negative, nonfinite = Y.copy(), Y.copy()
    negative[3, 4] = -0.5
    nonfinite[1, 1], nonfinite[2, 2] = np.nan, np.inf
    np.save(tmp_path / "negative.npy", negative)
    np.save(tmp_path / "nonfinite.npy", nonfinite)
    np.save(tmp_path / "w_transposed.npy", np.ones((3, 40)))
    np.save(tmp_path / "h.npy", np.ones((3, 30)))
    _write_text(tmp_path / "bad_cell.csv", Y[:5])
    with open(tmp_path / "bad_cell.csv", "a") as fh:
        fh.write("0.1,0.2,n/a" + ",0.3" * 27 + "\n")
    (tmp_path / "ragged.csv").write_text("1,2,3\n4,5,6\n7,8\n")
    (tmp_path / "empty_cell.tsv").write_text("1\t2\t3\n4\t\t6\n")
    (tmp_path / "blank.csv").write_text("\n\n")
    (tmp_path / "notes.txt").write_text("1,2\n3,4\n")
    (tmp_path / "noext").write_bytes(b"")
    (tmp_path / "folder.npy").mkdir()
    (tmp_path / "corrupt.npy").write_bytes(b"this is not numpy")
    (tmp_path / "complex.mtx").write_text("%%MatrixMarket matrix coordinate complex general\n2 2 1\n1 1 1.0 2.0\n")
    scipy.io.savemat(tmp_path / "two.mat", {"Y": Y, "GT": Y[:3]})
    scipy.io.savemat(tmp_path / "text.mat", {"name": "samson"})
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Dec  1 10:00:00 2025 HDF5 schema 1.00 ."
    (tmp_path / "v73.mat").write_bytes(header.ljust(116) + bytes(8) + b"\x00\x02IM" + bytes(384) + b"\x89HDF\r\n\x1a\n")
    pd.DataFrame({"a": [1.0, 2.0], "label": ["x", "y"]}).to_parquet(tmp_path / "labels.parquet", index=False)
    (tmp_path / "cut.npy").write_bytes((tmp_path / "y.npy").read_bytes()[:-100])
    with open(tmp_path / "truncated.npy", "wb") as fh:  # a header of 300000 x 300000 and no data
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False, "shape": (300000, 300000)})


BAD = [
    ("file[path=missing.npy,rank=3]", r"dataset 'file': path=missing.npy: no such file /.*/missing\.npy$"),
    ("file[path=folder.npy,rank=3]", r"folder\.npy is not a file"),
    ("file[path=notes.txt,rank=3]", r"notes\.txt is file type '\.txt', which it does not read \(it reads \.npy, "),
    ("file[path=noext,rank=3]", r"noext is a file without extension"),
    ("file[path=vector.npy,rank=1]", r"vector\.npy holds a 1-D array \(40\); it needs a 2-D matrix"),
    ("file[path=cube.npy,rank=2]", r"cube\.npy holds a 3-D array \(4 x 5 x 6\)"),
    ("file[path=flags.npy,rank=2]", r"flags\.npy holds values of type bool, not real numbers"),
    ("file[path=objects.npy,rank=1]", r"objects\.npy holds values of type object, not real numbers"),
    ("file[path=bad_cell.csv,rank=3]", r"bad_cell\.csv, line 6, column 3: 'n/a' is not a number"),
    ("file[path=ragged.csv,rank=1]", r"ragged\.csv, line 3: 2 cells where the first line has 3"),
    ("file[path=empty_cell.tsv,rank=1]", r"empty_cell\.tsv, line 2, column 2: empty cell"),
    ("file[path=blank.csv,rank=1]", r"blank\.csv holds no data"),
    ("file[path=negative.npy,rank=3]", r"data has 1 negative entries \(min -0\.5\); NMF needs nonnegative data "
                                       r"\(file /.*/negative\.npy\)"),
    ("file[path=nonfinite.npy,rank=3]", r"data contains 2 NaN or infinite entries"),
    ("file[path=y.npy,rank=31]", r"rank 31 is larger than min\(m, n\) = 30"),
    ("file[path=y.npy]", r"parameter 'rank' is required"),
    ("file[rank=3]", r"parameter 'path' is required"),
    ("file[path=y.npy,rank=3,W_true=w_transposed.npy,H_true=h.npy]", r"W_true has shape \(3, 40\), expected \(40, 3\)"),
    ("file[path=y.npy,rank=3,W_true=w_transposed.npy]", r"W_true and H_true go together"),
    ("file[path=y.npy,rank=3,var=Y]", r"var= picks a variable of a \.mat or \.npz file, not of y\.npy"),
    ("file[path=y.npy,rank=3,tranpose=1]", r"unknown parameter 'tranpose'; did you mean 'transpose'\?"),
    ("file[path=truncated.npy,rank=3]", r"truncated\.npy \(300000 x 300000, in float32\) needs about 335\.3 GiB"),
    ("file[path=cut.npy,rank=3]", r"cut\.npy is truncated: its header announces 40 x 30 values"),
    ("file[path=v73.mat,rank=3]", r"v73\.mat is a MATLAB v7\.3 file \(HDF5\), which scipy cannot read: re-save it"),
    ("file[path=two.mat,rank=3]", r"two\.mat holds 2 variables \(Y \(40 x 30 double\), GT \(3 x 30 double\)\): "
                                  r"pick one with var=NAME"),
    ("file[path=two.mat,var=Z,rank=3]", r"two\.mat has no variable 'Z'"),
    ("file[path=text.mat,rank=1]", r"variable 'name' is a MATLAB char, not a numeric matrix"),
    ("file[path=corrupt.npy,rank=3]", r"cannot read /.*/corrupt\.npy as a NumPy \.npy file: the magic string"),
    ("file[path=complex.mtx,rank=1]", r"complex\.mtx holds complex values, not real numbers"),
    ("file[path=labels.parquet,rank=1]", r"labels\.parquet: column 'label' \(\w*string\) is not numeric"),
]


@pytest.mark.parametrize("dataset,message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_and_exit_2_before_anything_runs(tmp_path, monkeypatch, capsys, dataset, message):
    _bad_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    status = main(["run", "--solvers", "mu", "--datasets", dataset, "--out", "run"])
    err = capsys.readouterr().err
    assert status == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert re.search(message, err.strip()), err
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads files without permission")
def test_an_unreadable_file_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "locked.npy"
    np.save(path, _matrix())
    path.chmod(0)
    try:
        assert main(["run", "--solvers", "mu", "--datasets", f"file[path={path},rank=3]"]) == 2
    finally:
        path.chmod(0o600)
    assert re.search(r"cannot read /.*locked\.npy as a NumPy \.npy file: Permission denied", capsys.readouterr().err)


def test_a_file_name_given_as_a_dataset_points_at_the_file_dataset(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "mydata.npy", _matrix())
    for given in ("mydata.npy", "data/y.csv", "counts.mtx"):
        assert main(["run", "--solvers", "mu", "--datasets", given]) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"proxmf-bench: error: unknown dataset {given!r}: to benchmark the matrix in a file, select "
                       f"\"file[path={given},rank=R]\" with R the rank to fit (formats and options: "
                       "proxmf-bench list datasets)")
    assert main(["run", "--solvers", "mu", "--datasets", "synthetic.small"]) == 2  # a typo of a name stays one
    assert "did you mean 'synthetic'?" in capsys.readouterr().err


def test_list_shows_the_required_parameters(capsys):
    assert main(["list", "datasets"]) == 0
    out = capsys.readouterr().out
    assert "  file  - your own matrix from a file: .npy .npz .csv .tsv .mat .mtx .parquet" in out
    assert "path (str, required): the data file" in out and "rank (int, [1, inf], required)" in out


def test_all_skips_the_file_dataset_which_needs_a_path(registry):
    variants = select("all", registry.datasets, registry, "dataset")
    assert "file" not in {v.name for v in variants} and "synthetic" in {v.name for v in variants}
    with pytest.raises(UserError, match="parameter 'path' is required"):
        select("file", registry.datasets, registry, "dataset")


def test_worker_processes_resolve_the_same_cells(tmp_path, monkeypatch, capsys):
    np.save(tmp_path / "y.npy", _matrix())
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--solvers", "mu", "--datasets", "file[path=y.npy,rank=3]", "--max-iter", "10",
                 "--jobs", "1", "--out", "run"]) == 0, capsys.readouterr().err
    frame = pd.read_parquet(tmp_path / "run" / "results.parquet")
    assert (frame.stop_reason == "max_iter").all() and frame.iteration.max() == 10


def test_initial_factors_depend_on_the_content_not_on_the_path(tmp_path, monkeypatch, registry):
    """The same bytes under another name, reached by a path written differently, start the
    same; a different matrix starts differently."""
    rng = np.random.default_rng(0)
    Y = np.abs(rng.standard_normal((40, 30)))
    (tmp_path / "sub").mkdir()
    np.save(tmp_path / "a.npy", Y)
    shutil.copyfile(tmp_path / "a.npy", tmp_path / "sub" / "copy_of_a.npy")
    np.save(tmp_path / "b.npy", Y + 1.0)
    monkeypatch.chdir(tmp_path)
    (solver,) = select("mu", registry.solvers, registry, "solver")

    def start(path):
        (variant,) = select(f"file[path={path},rank=3]", registry.datasets, registry, "dataset")
        cache = ProblemCache(registry)
        cache.load(Cell(solver, variant, "cpu", "float64", 0))
        return cache.start.copies()

    W_a, H_a = start("a.npy")
    W_c, H_c = start("./sub/../sub/copy_of_a.npy")
    W_b, H_b = start(str(tmp_path / "b.npy"))
    assert torch.equal(W_a, W_c) and torch.equal(H_a, H_c)
    assert not torch.equal(W_a, W_b)
