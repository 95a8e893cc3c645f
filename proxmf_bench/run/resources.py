"""Memory: how much is available, refusing allocations that cannot fit, and sizes in words.

Datasets call :func:`check_memory` with an estimate *before* they allocate, so an enormous
size (``synthetic[m=1000000,n=1000000]``) is a one-line error with the numbers instead of an
out-of-memory kill minutes later.
"""

from __future__ import annotations

import os
import re
from fractions import Fraction
from pathlib import Path

import torch

from proxmf_bench.errors import DataError, UserError

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
# the largest size an operating-system limit can hold (8 EiB)
MAX_SIZE = (1 << 63) - 1


def format_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def parse_size(text: str) -> int:
    """``'2G'``, ``'512MiB'``, ``'1.5gb'`` or a plain byte count -> bytes (powers of 1024).

    Computed exactly (no float overflow); sizes above 8 EiB are a ``UserError``.
    """
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", str(text), re.IGNORECASE)
    if not match:
        raise UserError(f"malformed size {text!r}: use a number of bytes or e.g. 512M, 4G")
    try:
        value = int(Fraction(match.group(1)) * _UNITS[match.group(2).lower()])
    except ValueError:  # more digits than Python converts
        value = MAX_SIZE + 1
    if value < 1:
        raise UserError(f"size {text!r} must be at least one byte")
    if value > MAX_SIZE:
        raise UserError(f"size {_shorten(str(text))!r} is larger than any memory (at most 8 EiB)")
    return value


def _shorten(text: str, width: int = 40) -> str:
    return text if len(text) <= width else f"{text[:width // 2]}...{text[-width // 2:]}"


def available_memory(device: torch.device | str = "cpu") -> int | None:
    """Bytes that can be allocated now on ``device``, or ``None`` if unknown.

    CPU: ``MemAvailable`` of ``/proc/meminfo`` (free plus reclaimable cache), else the free
    pages from ``sysconf``, capped by this process's ``RLIMIT_DATA``. CUDA: the driver's free
    memory.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    free = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_DATA)[0]
        if soft != resource.RLIM_INFINITY:
            free = min(free, soft)
    except (ImportError, OSError, ValueError):
        pass
    return free


def check_memory(need: int, what: str, device: torch.device | str = "cpu", hint: str = "use a smaller size") -> None:
    """Raise a :class:`DataError` if ``need`` bytes are more than ``device`` has available;
    its message ends with ``hint`` (what to do instead) unless that is empty."""
    have = available_memory(device)
    if have is not None and need > have:
        raise DataError(
            f"{what} needs about {format_bytes(need)} of memory on {torch.device(device)}, "
            f"more than the {format_bytes(have)} available{'; ' + hint if hint else ''}"
        )
