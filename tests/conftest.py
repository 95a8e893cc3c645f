"""Shared fixtures, and where the tests find the real hyperspectral data.

The Samson and Jasper Ridge files are looked for as the README's data directory rules say
(``$PROXMF_BENCH_DATA``, then the per-user cache directory), with the project's own copy in
``../shared/data/hsi`` beside the repository tried in between. The first directory holding
every file is used (and exported as ``$PROXMF_BENCH_DATA`` for the CLI tests); where none
does, the tests that need the files skip, saying where they looked.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from proxmf_bench.datasets.hsi import SCENES
from proxmf_bench.plugin.data_files import ENV_DATA, default_data_dir

REPO = Path(__file__).resolve().parents[1]
SHARED_HSI_COPY = REPO.parent / "shared" / "data" / "hsi"
HSI_FILES = tuple(scene.file.path for scene in SCENES)


def _find_hsi_data() -> tuple[Path | None, str]:
    """The first candidate directory that holds every HSI file, and the places looked at."""
    candidates = []
    if os.environ.get(ENV_DATA):
        candidates.append((Path(os.environ[ENV_DATA]).expanduser(), f"${ENV_DATA}"))
    candidates += [(SHARED_HSI_COPY, "the project's shared copy"), (default_data_dir(), "the per-user cache")]
    for path, _ in candidates:
        if all((path / name).is_file() for name in HSI_FILES):
            return path, ""
    looked = "; ".join(f"{path} ({origin})" for path, origin in candidates)
    return None, f"needs the Samson and Jasper files ({', '.join(HSI_FILES)}); looked in {looked}"


HSI_DATA, HSI_MISSING = _find_hsi_data()
if HSI_DATA is not None:
    os.environ[ENV_DATA] = str(HSI_DATA)
needs_hsi = pytest.mark.skipif(HSI_DATA is None, reason=HSI_MISSING)

torch.set_flush_denormal(True)

# the CUDA tests: ``pytest -m cuda`` selects them (benchmarks/gpu_check.py does); without a GPU
# they are skipped by pytest_collection_modifyitems below
cuda = pytest.mark.cuda


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seeded_torch():
    """Each test starts from the same torch seed, whatever ran before it (tests run in
    random order): a test that draws from the global generator is still reproducible."""
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def registry():
    from proxmf_bench.plugin.registry import load_registry

    return load_registry(use_entry_points=False)


@pytest.fixture(autouse=True)
def _isolated_plugins(monkeypatch):
    monkeypatch.delenv("PROXMF_BENCH_PLUGINS", raising=False)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Reference optima are cached in a directory of the test session, never in ~/.cache."""
    from proxmf_bench.plugin.data_files import ENV_CACHE

    monkeypatch.setenv(ENV_CACHE, str(tmp_path_factory.getbasetemp() / "proxmf-cache"))
