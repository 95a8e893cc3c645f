r"""The ``file`` dataset: a matrix ``Y`` from a file, to benchmark solvers on your own data.

``file[path=FILE,rank=R]`` factorizes the matrix in ``FILE``, ``Y ~ W H`` with ``W`` of
``m x R`` and ``H`` of ``R x n``; the extension says how it is read (:data:`FORMATS`):

- ``.npy``: a 2-D array (C or Fortran order), read block by block into the result;
- ``.npz``: one array (``var=NAME`` picks it among several), or a ``scipy.sparse`` matrix
  written by ``scipy.sparse.save_npz``;
- ``.csv`` / ``.tsv``: numbers separated by commas / tabs. A first line with no number in it
  (or pandas' default column labels ``0, 1, ...``) is a header; a header whose first cell is
  empty (pandas' ``to_csv()`` with its index, R's ``write.csv``) marks a first column of row
  labels, which is not data;
- ``.mat``: MATLAB v4 to v7.2 (``var=NAME`` picks the variable); v7.3 files are HDF5, which
  scipy does not read: they are refused with how to re-save them;
- ``.mtx``: Matrix Market, coordinate (sparse) or array;
- ``.parquet``: the numeric columns of a table, rows of the table as rows of ``Y`` (a pandas
  index stored with the table is not data).

``transpose=true`` factorizes the transpose. ``W_true=FILE`` and ``H_true=FILE`` (given
together, any of the formats, ``W_var`` / ``H_var`` for the variable) are the ground truth of
the matrix factorized (after ``transpose``), ``m x R`` and ``R x n``; they enable the metrics.

Identity: paths are resolved against the current directory into absolute, normalised paths,
and each file's size and SHA-256 join the resolved parameters (``dataset_params`` in the
results), so ``path=x.npy`` and ``path=./x.npy`` are one variant and a run records exactly
which bytes it used. A file is hashed once per process per (path, size, modification time);
one that changes during a run is refused when next loaded.

Loading: every format goes through :func:`read_matrix`. The header (array headers, Matrix
Market banner, parquet metadata, MATLAB variable table; for text, the first lines) gives the
shape before any value is read, so a matrix that cannot fit in the memory available is refused
first. The values are then converted once, into a C-contiguous (row-major) array of the
requested dtype on the requested device, and checked (nonnegative, finite, rank at most
``min(m, n)``, ground-truth shapes) by :class:`~proxmf_bench.problem.problem.Problem`. Nothing
is cached: each problem reads its file again (from the operating system's page cache), so
a process holds one copy of ``Y``.

Sparse files (a ``scipy.sparse`` ``.npz``, a coordinate ``.mtx``, a sparse ``.mat`` variable)
are read as ``scipy.sparse`` matrices. ``sparse=auto`` (the default) keeps ``Y`` sparse, as a
torch sparse CSR tensor (:mod:`proxmf_bench.problem.sparse`), when at most
:data:`AUTO_SPARSE_DENSITY` of its entries are nonzero, and densifies it otherwise
(:func:`densify_sparse`); ``sparse=true`` keeps any sparse file sparse (and converts a dense
file to CSR after reading it); ``sparse=false`` always densifies. The memory estimate made
before reading counts the CSR arrays (``Y`` and its transpose) when the matrix will stay
sparse and the header gives its number of nonzeros (``.npz``, ``.mtx``; a ``.mat`` header does
not, so its dense size is checked). Ground-truth files are always dense.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from proxmf_bench.errors import DataError, UserError
from proxmf_bench.plugin.data_files import file_digest
from proxmf_bench.plugin.hookspecs import hookimpl
from proxmf_bench.plugin.specs import DatasetSpec, Param, SpecLookup, coerce_params
from proxmf_bench.problem.problem import Problem
from proxmf_bench.problem.sparse import from_scipy
from proxmf_bench.run.resources import check_memory

OWNER = "dataset 'file'"
# the file parameters, and the variable parameter of each
FILE_PARAMS = {"path": "var", "W_true": "W_var", "H_true": "H_var"}
SPARSE_MODES = ("auto", "true", "false")
# sparse=auto keeps a sparse file sparse up to this density: CSR takes 12 to 16 bytes a nonzero
# (value and int64 index) against 4 to 8 a dense entry, and a sparse product runs at a fraction
# of a dense one's speed per stored entry, so well below the memory break-even of 25 to 50 %
AUTO_SPARSE_DENSITY = 0.05


@dataclass(frozen=True)
class Source:
    """One file to read: its path, the variable to take from it ("" for the only one), and
    the parameter that names that variable (for messages)."""

    path: Path
    var: str = ""
    var_param: str = "var"


@dataclass(frozen=True)
class Extent:
    """What a file holds, known from its header: the shape, and the bytes the reader needs
    to hold the values as read, besides the result."""

    shape: tuple[int, ...]
    read_bytes: int
    nnz: int | None = None
    """Stored entries of a sparse file, when its header says."""


@dataclass(frozen=True)
class Format:
    """How to read one kind of file: ``probe`` reads the header only; ``read`` the values,
    as a numpy array or a ``scipy.sparse`` matrix, which :func:`read_matrix` converts; or
    ``read_into(source, dtype, transpose)`` straight into the result, for formats that can
    (no copy of the file's values besides the result). ``variables``: the file holds named
    arrays, one picked by ``var=``."""

    name: str
    probe: Callable[[Source], Extent]
    read: Callable[[Source], Any] | None = None
    read_into: Callable[[Source, np.dtype, bool], np.ndarray] | None = None
    variables: bool = False


# --- helpers shared by the readers ------------------------------------------------------------


def _check_real(dtype: np.dtype, path: Path) -> None:
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise DataError(f"{path} holds values of type {dtype}, not real numbers")


def _npy_header(fh) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype from the header of a ``.npy`` stream, which is left at
    the first value."""
    version = np.lib.format.read_magic(fh)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(fh)
    return tuple(shape), fortran, dtype


def _pick(source: Source, names: Mapping[str, str], kind: str) -> str:
    """The variable to read: ``source.var``, else the only one; ``names`` maps each to its shape."""
    listing = ", ".join(f"{name} ({shape})" for name, shape in names.items()) or "none"
    if source.var:
        if source.var not in names:
            raise DataError(f"{source.path} has no {kind} {source.var!r} ({kind}s: {listing})")
        return source.var
    if len(names) != 1:
        raise DataError(f"{source.path} holds {len(names)} {kind}s ({listing}): pick one with {source.var_param}=NAME")
    return next(iter(names))


def _shape_text(shape: tuple[int, ...]) -> str:
    return " x ".join(map(str, shape)) if shape else "scalar"


# --- .npy ------------------------------------------------------------------------------------


_BLOCK = 1 << 24  # bytes of a .npy file read at a time


def _probe_npy(source: Source) -> Extent:
    with open(source.path, "rb") as fh:
        shape, _, dtype = _npy_header(fh)
    _check_real(dtype, source.path)
    return Extent(shape, _BLOCK)


def _read_npy_into(source: Source, dtype: np.dtype, transpose: bool) -> np.ndarray:
    """The array of a ``.npy`` file read block by block into the C-contiguous result, so
    that memory holds the result and one block (a memory map would add the file's pages)."""
    with open(source.path, "rb") as fh:
        shape, fortran, stored = _npy_header(fh)
        rows, cols = shape[::-1] if fortran else shape  # the values in the file, as a C-order rows x cols array
        out = np.empty((cols, rows) if fortran != transpose else (rows, cols), dtype=dtype)
        target = out.T if fortran != transpose else out  # rows x cols, a view of the result
        step = max(1, _BLOCK // max(1, cols * stored.itemsize))
        for start in range(0, rows, step):
            count = min(step, rows - start)
            chunk = fh.read(count * cols * stored.itemsize)
            if len(chunk) < count * cols * stored.itemsize:
                raise DataError(f"{source.path} is truncated: its header announces {_shape_text(shape)} values")
            target[start:start + count] = np.frombuffer(chunk, dtype=stored).reshape(count, cols)
    return out


# --- .npz: named arrays, or a scipy.sparse matrix (save_npz) -------------------------------------


def _npz_members(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    with zipfile.ZipFile(path) as archive:
        members = {}
        for name in archive.namelist():
            if name.endswith(".npy"):
                with archive.open(name) as fh:
                    shape, _, dtype = _npy_header(fh)
                    members[name[:-4]] = shape, dtype
    return members


def _is_sparse_npz(members: Mapping[str, Any]) -> bool:
    return {"format", "shape", "data"} <= set(members)


def _npz_array(source: Source, members: Mapping[str, tuple[tuple[int, ...], np.dtype]]) -> str:
    return _pick(source, {name: _shape_text(shape) for name, (shape, _) in members.items()}, "array")


def _probe_npz(source: Source) -> Extent:
    members = _npz_members(source.path)
    if _is_sparse_npz(members):
        with np.load(source.path, allow_pickle=False) as archive:
            shape = tuple(int(v) for v in archive["shape"])
        _check_real(members["data"][1], source.path)
        stored = sum(math.prod(s) * dtype.itemsize for s, dtype in members.values())
        return Extent(shape, stored, math.prod(members["data"][0]))
    shape, dtype = members[_npz_array(source, members)]
    _check_real(dtype, source.path)
    return Extent(shape, math.prod(shape) * dtype.itemsize)


def _read_npz(source: Source) -> Any:
    members = _npz_members(source.path)
    if _is_sparse_npz(members):
        import scipy.sparse

        return scipy.sparse.load_npz(source.path)
    with np.load(source.path, allow_pickle=False) as archive:
        return archive[_npz_array(source, members)]


# --- .csv / .tsv -------------------------------------------------------------------------------


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class _TextLayout:
    delimiter: str
    skip: int  # lines before the data: blank lines and the header
    header: bool  # the first line is column labels
    labels: bool  # the first column is row labels
    cells: int  # cells per line

    @property
    def usecols(self) -> range | None:
        return range(1, self.cells) if self.labels else None


_SAMPLE = 1 << 16


def _text_layout(path: Path, delimiter: str) -> _TextLayout:
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        first = next((row for row in reader if any(c.strip() for c in row)), None)
        line = reader.line_num
    if first is None:
        raise DataError(f"{path} holds no data")
    cells = [c.strip() for c in first]
    default_labels = [str(j) for j in range(len(cells))]
    header = not any(_is_number(c) for c in cells) or cells in (default_labels, [""] + default_labels[:-1])
    return _TextLayout(delimiter, line if header else line - 1, header, header and cells[0] == "", len(cells))


def _probe_text(source: Source, delimiter: str) -> Extent:
    layout = _text_layout(source.path, delimiter)
    with open(source.path, "rb") as fh:
        sample = fh.read(_SAMPLE)
    # rows estimated from the length of the first lines
    rows = max(1, math.ceil(source.path.stat().st_size * max(1, sample.count(b"\n")) / len(sample)) - layout.skip)
    cols = layout.cells - layout.labels
    return Extent((rows, cols), 8 * rows * cols)


def _read_text(source: Source, delimiter: str) -> np.ndarray:
    layout = _text_layout(source.path, delimiter)
    try:
        return np.loadtxt(source.path, delimiter=delimiter, dtype=np.float64, ndmin=2, skiprows=layout.skip,
                          usecols=layout.usecols, quotechar='"', encoding="utf-8-sig")
    except ValueError as exc:
        raise DataError(_first_bad_cell(source.path, layout) or f"cannot read {source.path}: {exc}") from None


def _first_bad_cell(path: Path, layout: _TextLayout) -> str | None:
    """Where a text file stops being a matrix of numbers (1-based line and column), read
    again cell by cell: only after the fast reader failed."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        reader = csv.reader(fh, delimiter=layout.delimiter)
        for row in reader:
            if reader.line_num <= layout.skip:
                continue
            if not row or (len(row) == 1 and not row[0].strip()) or row[0].startswith("#"):
                continue
            if len(row) != layout.cells:
                return (f"{path}, line {reader.line_num}: {len(row)} cells where the first line has "
                        f"{layout.cells}")
            for column, cell in enumerate(row[layout.labels:], start=1 + layout.labels):
                if not cell.strip():
                    return f"{path}, line {reader.line_num}, column {column}: empty cell"
                if not _is_number(cell):
                    return f"{path}, line {reader.line_num}, column {column}: {cell.strip()[:40]!r} is not a number"
    return None


# --- .mat --------------------------------------------------------------------------------------


_MAT_NOT_NUMERIC = ("char", "logical", "cell", "struct", "object", "function_handle")


def _mat_variable(source: Source) -> tuple[str, tuple[int, ...], str]:
    import scipy.io

    if scipy.io.matlab.matfile_version(source.path)[0] == 2:
        raise DataError(
            f"{source.path} is a MATLAB v7.3 file (HDF5), which scipy cannot read: re-save it in MATLAB "
            f"with save(FILE, 'Y', '-v7'), or write Y as .npy (see 'Benchmark your own data' in the README)"
        )
    table = {name: (tuple(shape), cls) for name, shape, cls in scipy.io.whosmat(source.path)}
    name = _pick(source, {k: f"{_shape_text(s)} {cls}" for k, (s, cls) in table.items()}, "variable")
    shape, cls = table[name]
    if cls in _MAT_NOT_NUMERIC:
        raise DataError(f"{source.path}: variable {name!r} is a MATLAB {cls}, not a numeric matrix")
    return name, shape, cls


def _probe_mat(source: Source) -> Extent:
    _, shape, cls = _mat_variable(source)
    # whosmat gives neither the element size nor a sparse variable's nonzero count: 8 bytes a
    # value for a dense variable; for a sparse one, its values and indices decompressed, taken
    # as three times the file's size
    stored = 8 * math.prod(shape) if cls != "sparse" else 3 * source.path.stat().st_size
    return Extent(shape, stored)


def _read_mat(source: Source) -> Any:
    import scipy.io

    name = _mat_variable(source)[0]
    return scipy.io.loadmat(source.path, variable_names=[name])[name]


# --- .mtx ----------------------------------------------------------------------------------------


def _probe_mtx(source: Source) -> Extent:
    import scipy.io

    rows, cols, entries, layout, field, symmetry = scipy.io.mminfo(source.path)
    if field == "complex":
        raise DataError(f"{source.path} holds complex values, not real numbers")
    if layout == "array":
        return Extent((rows, cols), 8 * rows * cols)
    stored = entries * (1 if symmetry == "general" else 2)  # the mirrored half is added on reading
    return Extent((rows, cols), 3 * 8 * stored, stored)  # value, row and column of each entry


def _read_mtx(source: Source) -> Any:
    import scipy.io

    return scipy.io.mmread(source.path)


# --- .parquet ------------------------------------------------------------------------------------


def _parquet_columns(path: Path) -> tuple[int, list[str]]:
    """Rows and data columns of a parquet file (its numeric columns, a stored pandas index left out)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path)
    schema = meta.schema_arrow
    index = {c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)}
    fields = [f for f in schema if f.name not in index]
    other = [f"{f.name!r} ({f.type})" for f in fields if not (pa.types.is_integer(f.type) or pa.types.is_floating(f.type))]
    if other:
        more = f" and {len(other) - 1} more are" if len(other) > 1 else " is"
        raise DataError(f"{path}: column {other[0]}{more} not numeric; it reads tables of numeric columns only")
    return meta.metadata.num_rows, [f.name for f in fields]


def _probe_parquet(source: Source) -> Extent:
    rows, names = _parquet_columns(source.path)
    return Extent((rows, len(names)), 2 * 8 * rows * len(names))  # arrow's columns, then the matrix


def _read_parquet(source: Source) -> np.ndarray:
    import pyarrow.parquet as pq

    rows, names = _parquet_columns(source.path)
    table = pq.read_table(source.path, columns=names)
    out = np.empty((rows, len(names)), dtype=np.float64, order="F")  # filled column by column
    for j, column in enumerate(table.columns):
        out[:, j] = column.to_numpy()  # nulls become NaN, refused with the other non-finite entries
    return out


FORMATS: dict[str, Format] = {
    ".npy": Format("a NumPy .npy file", _probe_npy, read_into=_read_npy_into),
    ".npz": Format("a NumPy .npz archive", _probe_npz, _read_npz, variables=True),
    ".csv": Format("a CSV file", lambda s: _probe_text(s, ","), lambda s: _read_text(s, ",")),
    ".tsv": Format("a TSV file", lambda s: _probe_text(s, "\t"), lambda s: _read_text(s, "\t")),
    ".mat": Format("a MATLAB file", _probe_mat, _read_mat, variables=True),
    ".mtx": Format("a Matrix Market file", _probe_mtx, _read_mtx),
    ".parquet": Format("a parquet file", _probe_parquet, _read_parquet),
}


# --- the shared path: resolve, estimate, read, convert, validate ----------------------------------


def resolve(given: Mapping[str, Any], registry: SpecLookup | None = None) -> dict[str, Any]:
    """Coerce the parameters; make each path absolute and normalised, adding its size and sha256.

    The file parameter ``path`` gets ``size`` and ``sha256``; ``W_true`` gets ``W_true_size``
    and ``W_true_sha256``, and so on. Each file's header is checked (a 2-D matrix that fits in
    memory in float32, the least any run needs) before the file is read in full to be hashed.
    """
    params = coerce_params(PARAMS, given, OWNER)
    if bool(params["W_true"]) != bool(params["H_true"]):
        raise UserError(f"{OWNER}: W_true and H_true go together (the metrics need both)")
    for key, var_key in FILE_PARAMS.items():
        if not params[key]:
            if params[var_key]:
                raise UserError(f"{OWNER}: {var_key}= names a variable of {key}=, which is not given")
            continue
        source = Source(Path(os.path.abspath(os.path.expanduser(params[key]))), params[var_key], var_key)
        fmt = format_of(source.path)
        if source.var and not fmt.variables:
            raise UserError(f"{OWNER}: {var_key}= picks a variable of a .mat or .npz file, not of {source.path.name}")
        if not source.path.exists():
            raise DataError(f"{OWNER}: {key}={given[key]}: no such file {source.path}")
        if not source.path.is_file():
            raise DataError(f"{OWNER}: {key}={given[key]}: {source.path} is not a file")
        _prepare(fmt, source, torch.float32, torch.device("cpu"), params["sparse"] if key == "path" else "false")
        prefix = "" if key == "path" else f"{key}_"
        params[key] = str(source.path)
        with _reading(fmt, source.path):
            params[f"{prefix}size"], params[f"{prefix}sha256"] = file_digest(source.path)
    return params


@contextlib.contextmanager
def _reading(fmt: Format, path: Path) -> Iterator[None]:
    """Failures inside the block say which file could not be read; a reader's own worded
    :class:`DataError` keeps its words."""
    try:
        yield
    except DataError as exc:
        raise DataError(f"{OWNER}: {exc}") from None
    except MemoryError:
        raise DataError(f"{OWNER}: out of memory reading {path}") from None
    except Exception as exc:  # every library raises its own types for a damaged file
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        raise DataError(f"{OWNER}: cannot read {path} as {fmt.name}: {reason}") from None


def keeps_sparse(mode: str, shape: tuple[int, ...], nnz: int | None) -> bool:
    """Whether a sparse matrix of ``shape`` with ``nnz`` stored entries stays sparse under
    ``sparse=mode`` (``nnz=None``: not known yet, decided after reading under ``auto``)."""
    if mode != "auto":
        return mode == "true"
    return nnz is not None and nnz <= AUTO_SPARSE_DENSITY * math.prod(shape)


def _prepare(fmt: Format, source: Source, dtype: torch.dtype, device: torch.device,
             sparse: str = "false") -> tuple[int, int]:
    """The shape of the matrix in ``source``, from its header; a :class:`DataError` if it is
    not 2-D, or if reading it and holding it in ``dtype`` on ``device`` cannot fit in memory
    (dense, or as CSR arrays of ``Y`` and ``Y^T`` when it stays sparse: :func:`keeps_sparse`)."""
    with _reading(fmt, source.path):
        extent = fmt.probe(source)
    shape = extent.shape
    if len(shape) != 2:
        raise DataError(f"{OWNER}: {source.path} holds a {len(shape)}-D array ({_shape_text(shape)}); "
                        "it needs a 2-D matrix")
    itemsize = torch.empty((), dtype=dtype).element_size()
    dense = itemsize * math.prod(shape)
    if extent.nnz is not None and keeps_sparse(sparse, shape, extent.nnz):
        dense = 2 * ((itemsize + 8) * extent.nnz + 8 * (sum(shape) + 2))
    what = f"{OWNER}: {source.path} ({_shape_text(shape)}, in {str(dtype).removeprefix('torch.')})"
    check_memory(extent.read_bytes + dense, what, hint="")
    if device.type != "cpu":
        check_memory(dense, what, device, hint="")
    return shape


def read_matrix(source: Source, sha256: str, transpose: bool, device: torch.device, dtype: torch.dtype,
                sparse: str = "false") -> torch.Tensor:
    """The matrix in ``source`` as a C-contiguous ``dtype`` tensor on ``device``, or as a sparse
    CSR tensor when ``sparse`` says so (:func:`keeps_sparse`).

    Refused before its values are read if the file changed since ``sha256`` was taken, is
    not 2-D or cannot fit in the memory available; after, if it holds something other than
    real numbers.
    """
    fmt = format_of(source.path)
    with _reading(fmt, source.path):
        now = file_digest(source.path)[1]
    if now != sha256:
        raise DataError(f"{OWNER}: {source.path} changed since the run started "
                        f"(sha256 {now[:12]}..., was {sha256[:12]}...)")
    _prepare(fmt, source, dtype, device, sparse)
    host_dtype = torch.empty((), dtype=dtype).numpy().dtype
    with _reading(fmt, source.path):
        if fmt.read_into is not None:
            out = torch.from_numpy(fmt.read_into(source, host_dtype, transpose)).to(device)
            return out.to_sparse_csr() if sparse == "true" else out
        raw = fmt.read(source)
        _check_real(raw.dtype, source.path)
    if _is_sparse(raw) and keeps_sparse(sparse, raw.shape, raw.nnz):
        return from_scipy(raw.T if transpose else raw, dtype).to(device)
    host = densify_sparse(raw, host_dtype, transpose) if _is_sparse(raw) else _dense(raw, host_dtype, transpose)
    out = torch.from_numpy(host).to(device)
    return out.to_sparse_csr() if sparse == "true" else out


def _is_sparse(value: Any) -> bool:
    import scipy.sparse

    return scipy.sparse.issparse(value)


def _dense(array: np.ndarray, dtype: np.dtype, transpose: bool) -> np.ndarray:
    """``array`` (or its transpose) as a C-contiguous, writable ``dtype`` array: one copy,
    none when the reader's array already is one."""
    source = array.T if transpose else array
    if source.dtype == dtype and source.flags.c_contiguous and source.flags.writeable:
        return source
    out = np.empty(source.shape, dtype=dtype)
    np.copyto(out, source, casting="unsafe")
    return out


def densify_sparse(matrix: Any, dtype: np.dtype, transpose: bool) -> np.ndarray:
    """The dense C-contiguous ``dtype`` array of a ``scipy.sparse`` matrix (or of its transpose).

    For sparse files densified (``sparse=false``, or ``auto`` above :data:`AUTO_SPARSE_DENSITY`),
    after :func:`read_matrix` checked that the dense matrix fits. Only the stored values are converted to ``dtype``;
    then one dense array is allocated (duplicate entries are summed, as Matrix Market means).
    """
    matrix = matrix.astype(dtype, copy=False)
    return (matrix.T if transpose else matrix).toarray(order="C")


def format_of(path: Path) -> Format:
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        kind = f"file type {path.suffix!r}" if path.suffix else "a file without extension"
        raise DataError(f"{OWNER}: {path} is {kind}, which it does not read (it reads "
                        f"{', '.join(FORMATS)}; for others write a dataset plugin, see the README)") from None


def load(params: Mapping[str, Any], seed: int, device: torch.device, dtype: torch.dtype) -> Problem:
    """The problem of the file (and ground truth) in ``params`` on ``device`` in ``dtype``;
    the data does not depend on ``seed``."""
    matrices = {}
    for key, var_key in FILE_PARAMS.items():
        if params[key]:
            prefix = "" if key == "path" else f"{key}_"
            source = Source(Path(params[key]), params[var_key], var_key)
            matrices[key] = read_matrix(source, params[f"{prefix}sha256"], params["transpose"] and key == "path",
                                        device, dtype, params["sparse"] if key == "path" else "false")
    try:
        return Problem(
            Y=matrices["path"], rank=params["rank"], W_true=matrices.get("W_true"), H_true=matrices.get("H_true"),
            name="file", metadata={"file": params["path"], "sha256": params["sha256"], "transpose": params["transpose"]},
        )
    except DataError as exc:
        raise DataError(f"{exc} (file {params['path']})") from None


PARAMS = (
    Param("path", None, str, f"the data file ({', '.join(FORMATS)}), relative to the current directory",
          required=True),
    Param("rank", None, int, "rank r of the fit, at most min(m, n)", low=1, required=True),
    Param("var", "", str, "the variable (.mat) or array (.npz) holding Y, when the file holds several"),
    Param("transpose", False, bool, "factorize the transpose of the matrix in the file"),
    Param("sparse", "auto", str, f"keep Y sparse (torch CSR): auto (sparse files of density <= "
          f"{AUTO_SPARSE_DENSITY:g}), true, false (densify)", choices=SPARSE_MODES),
    Param("W_true", "", str, "file of the true W (m x r), with H_true: enables the ground-truth metrics"),
    Param("H_true", "", str, "file of the true H (r x n)"),
    Param("W_var", "", str, "the variable or array of W_true's file, when it holds several"),
    Param("H_var", "", str, "the variable or array of H_true's file, when it holds several"),
)


@hookimpl
def proxmf_register_datasets(register):
    register(
        DatasetSpec(
            name="file",
            load=load,
            params=PARAMS,
            resolve_params=resolve,
            summary="your own matrix from a file: .npy .npz .csv .tsv .mat .mtx .parquet (dense or sparse), "
                    "optional ground truth",
        )
    )
