"""Facts about the machine and software recorded in ``meta.json``."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("proxmf-bench", "torch", "numpy", "pandas", "pyarrow", "pluggy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_names() -> list[str]:
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def git_commit() -> str | None:
    """The commit of the proxmf-bench source tree, when it is a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain"], capture_output=True, text=True, timeout=5)
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def peak_memory() -> dict[str, Any]:
    """Peak resident set size of this process and peak CUDA allocation, in bytes."""
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out: dict[str, Any] = {"rss_bytes": rss_kib * (1 if sys.platform == "darwin" else 1024)}
    if torch.cuda.is_available():
        out["cuda_bytes"] = [torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count())]
    return out


def describe() -> dict[str, Any]:
    return {
        "versions": versions(),
        "git_commit": git_commit(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "gpus": gpu_names(),
    }
