"""Shared fixtures. The real hyperspectral data lives in ../shared/data/hsi beside the repo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_HSI = REPO.parent / "shared" / "data" / "hsi"

if "PROXMF_BENCH_DATA" not in os.environ and SHARED_HSI.is_dir():
    os.environ["PROXMF_BENCH_DATA"] = str(SHARED_HSI)

torch.set_flush_denormal(True)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="session")
def registry():
    from proxmf_bench.plugins import load_registry

    return load_registry(use_entry_points=False)


@pytest.fixture(autouse=True)
def _isolated_plugins(monkeypatch):
    monkeypatch.delenv("PROXMF_BENCH_PLUGINS", raising=False)
