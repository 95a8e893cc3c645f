"""Dataset files on disk: where they live, checking them, and fetching them.

Datasets that read files declare them as :class:`~proxmf_bench.plugin.specs.DataFile` entries
(a path relative to the data directory, a sha256, a size and an optional public address).
The data directory is, first match wins:

1. ``--data-dir DIR`` (``run`` and ``data``), or ``data_dir=`` in the Python API;
2. the environment variable ``PROXMF_BENCH_DATA``;
3. a per-user cache directory (``$XDG_CACHE_HOME/proxmf-bench``, ``~/.cache/proxmf-bench``,
   ``~/Library/Caches/proxmf-bench`` on macOS, ``%LOCALAPPDATA%/proxmf-bench`` on Windows).

Computed results kept between runs (reference optima) go to :func:`cache_dir`: ``--cache-dir``,
else ``$PROXMF_BENCH_CACHE``, else that per-user cache directory.

A file is used only after its size and sha256 match; the check runs once per process for a
given file (keyed on its path, size and modification time). Downloads are streamed to a
temporary file beside the target, hashed on the way, and renamed into place only when the
hash matches, so an interrupted or corrupt download never leaves a file that looks valid.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from proxmf_bench.errors import DataError
from proxmf_bench.plugin.specs import DataFile, DatasetSpec

if TYPE_CHECKING:
    from proxmf_bench.plugin.registry import Registry

ENV_DATA = "PROXMF_BENCH_DATA"
APP_NAME = "proxmf-bench"
_CHUNK = 1 << 20
# the URL schemes downloads are made with (urllib's)
SCHEMES = ("http", "https", "ftp", "file")


def check_url(url: str, what: str) -> None:
    """A ``DataError`` unless ``url`` has a scheme that downloads use (see :data:`SCHEMES`)."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        hint = "; for a local folder use file:///absolute/path" if not scheme else ""
        raise DataError(f"{what} {url!r} has {f'the unsupported scheme {scheme!r}' if scheme else 'no scheme'} "
                        f"(use {', '.join(s + '://' for s in SCHEMES)}){hint}")


def default_data_dir() -> Path:
    """The per-user cache directory used when neither ``--data-dir`` nor the env var is set."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / APP_NAME
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / APP_NAME
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / APP_NAME


ENV_CACHE = "PROXMF_BENCH_CACHE"
REFERENCES_DIR = "references"


def cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Where computed results are cached between runs (the reference optima, in
    ``<cache>/references/``): ``explicit`` (``--cache-dir``), else ``$PROXMF_BENCH_CACHE``,
    else the per-user cache directory (:func:`default_data_dir`). Independent of the data
    directory, which may be a shared read-only copy."""
    if explicit is not None:
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else default_data_dir()


_DEFAULT_ORIGIN = "default per-user cache"
_override: Path | None = None


def data_dir(explicit: str | os.PathLike | None = None) -> tuple[Path, str]:
    """The data directory and where that choice came from (for messages)."""
    if explicit is not None:
        return Path(explicit).expanduser(), "--data-dir"
    if _override is not None:
        return _override, "--data-dir"
    env = os.environ.get(ENV_DATA)
    if env:
        return Path(env).expanduser(), f"${ENV_DATA}"
    return default_data_dir(), _DEFAULT_ORIGIN


@contextlib.contextmanager
def use_data_dir(path: str | os.PathLike | None) -> Iterator[None]:
    """Within the block, datasets read from ``path`` (no-op when ``None``).

    Also set in the environment, so that worker processes started inside the block agree.
    """
    global _override
    if path is None:
        yield
        return
    previous, previous_env = _override, os.environ.get(ENV_DATA)
    _override = Path(path).expanduser()
    os.environ[ENV_DATA] = str(_override)
    try:
        yield
    finally:
        _override = previous
        if previous_env is None:
            os.environ.pop(ENV_DATA, None)
        else:
            os.environ[ENV_DATA] = previous_env


def check_root(root: Path, origin: str) -> None:
    """``DataError`` unless ``root`` is an existing directory."""
    if not root.exists():
        raise DataError(f"data directory {root} (from {origin}) does not exist")
    if not root.is_dir():
        raise DataError(f"data directory {root} (from {origin}) is not a directory")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


@lru_cache(maxsize=64)
def _hash_once(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file version; the key makes a changed file be hashed again."""
    return sha256_of(Path(path))


def file_digest(path: Path) -> tuple[int, str]:
    """``(size, sha256)`` of a file, hashed once per process per version (path, size, mtime)."""
    stat = path.stat()
    return stat.st_size, _hash_once(str(path), stat.st_size, stat.st_mtime_ns)


def file_status(file: DataFile, root: Path) -> str:
    """``"ok"``, ``"missing"``, ``"wrong size (N bytes, expected M)"`` or ``"checksum mismatch"``."""
    path = root / file.path
    if not path.is_file():
        return "missing"
    stat = path.stat()
    if stat.st_size != file.size:
        return f"wrong size ({stat.st_size} bytes, expected {file.size})"
    if _hash_once(str(path.resolve()), stat.st_size, stat.st_mtime_ns) != file.sha256:
        return "checksum mismatch"
    return "ok"


def require(file: DataFile, dataset: str) -> Path:
    """The verified path of ``file`` in the current data directory, or a one-line ``DataError``."""
    root, origin = data_dir()
    if origin != _DEFAULT_ORIGIN:  # a directory named by the user must exist; the cache may not yet
        check_root(root, origin)
    status = file_status(file, root)
    if status == "ok":
        return root / file.path
    how = f"run 'proxmf-bench data fetch {dataset}'" if file.url else "copy the original file"
    raise DataError(
        f"dataset {dataset!r}: {file.path} is {status} in data directory {root} (from {origin}); "
        f"{how} to place it at {root / file.path}, or point --data-dir / ${ENV_DATA} at a "
        f"folder that holds {file.path}"
    )


def fetch(
    file: DataFile, root: Path, mirror: str | None = None, progress: bool = False, timeout: float = 60.0
) -> Path:
    """Download ``file`` into ``root`` unless a valid copy is there; return its path.

    The address is ``file.url``, or ``mirror/<file.path>`` when a mirror (an ``http://``,
    ``https://``, ``ftp://`` or ``file://`` URL) is given. A failed download or a checksum
    mismatch is a ``DataError`` and leaves nothing behind, not even the folders made for it.
    """
    target = root / file.path
    if file_status(file, root) == "ok":
        return target
    url = f"{mirror.rstrip('/')}/{file.path}" if mirror else file.url
    if url is None:
        raise DataError(f"{file.path} has no public download address; copy it to {target} by hand")
    check_url(url, "the address")
    made = []  # folders made for this file, outermost first
    folder = target.parent
    while not folder.exists():
        made.insert(0, folder)
        folder = folder.parent
    tmp = None
    try:
        for folder in made:
            folder.mkdir()
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        tmp = Path(tmp_name)
        with os.fdopen(fd, "wb") as out:
            digest = _download(url, out, file.size, progress, timeout)
        if digest != file.sha256:
            raise DataError(
                f"download of {url} failed its checksum (sha256 {digest[:12]}..., expected "
                f"{file.sha256[:12]}...); nothing was saved"
            )
        os.replace(tmp, target)
    except BaseException as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(exc, OSError):
            raise DataError(f"cannot save {target}: {exc.strerror or exc}") from None
        raise
    return target


def _download(url: str, out, expected_size: int, progress: bool, timeout: float) -> str:
    """Stream ``url`` into ``out``; return the sha256 of what was received."""
    digest = hashlib.sha256()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=expected_size, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1], leave=False)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
                if bar is not None:
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DataError(f"cannot download {url}: {reason}") from None
    finally:
        if bar is not None:
            bar.close()
    return digest.hexdigest()


@dataclass(frozen=True)
class FileReport:
    """One line of ``proxmf-bench data``: a dataset's file, where it belongs, its state."""

    dataset: str
    file: DataFile | None
    location: Path | None
    status: str


def inventory(datasets: Mapping[str, DatasetSpec], root: Path) -> list[FileReport]:
    """One report per file of each dataset (one ``no files needed`` line for the others)."""
    out = []
    for name in sorted(datasets):
        files = datasets[name].files
        if not files:
            out.append(FileReport(name, None, None, "no files needed"))
        for file in files:
            out.append(FileReport(name, file, root / file.path, file_status(file, root)))
    return out


# --- the 'proxmf-bench data' command ------------------------------------------------------


def _selected(registry: Registry, names: Sequence[str]) -> dict[str, DatasetSpec]:
    if not names or list(names) == ["all"]:
        return dict(registry.datasets)
    return {name: registry.get_dataset(name) for name in names}


def print_inventory(registry: Registry, names: Sequence[str], explicit_dir: str | None) -> int:
    """Print each selected dataset's files, where they are expected and their state."""
    selected = _selected(registry, names)
    root, origin = data_dir(explicit_dir)
    state = "" if root.is_dir() else "  (does not exist yet)"
    print(f"data directory: {root}  [{origin}]{state}")
    reports = inventory(selected, root)
    width = max(len(r.dataset) for r in reports) if reports else 0
    for r in reports:
        if r.file is None:
            print(f"  {r.dataset:<{width}}  {r.status}")
            continue
        source = "fetchable" if r.file.url else "copy by hand"
        print(f"  {r.dataset:<{width}}  {r.status:<18}  {r.location}  ({source})")
    missing = sorted({r.dataset for r in reports if r.file is not None and r.status != "ok"})
    if missing:
        print(f"\nfetch with: proxmf-bench data fetch {' '.join(missing)}")
    return 0


def fetch_datasets(
    registry: Registry, names: Sequence[str], explicit_dir: str | None, mirror: str | None, progress: bool
) -> int:
    """Fetch every file of the selected datasets that is not already present and valid."""
    selected = _selected(registry, names)
    if mirror is not None:
        check_url(mirror, "--mirror")
    root, origin = data_dir(explicit_dir)
    if root.exists() and not root.is_dir():
        raise DataError(f"data directory {root} (from {origin}) is not a directory")
    print(f"data directory: {root}  [{origin}]")
    for name, spec in sorted(selected.items()):
        for file in spec.files:
            before = file_status(file, root)
            path = fetch(file, root, mirror=mirror, progress=progress)
            print(f"  {name}: {file.path} {'already present' if before == 'ok' else 'fetched'} -> {path}")
    return 0
