"""What a run computes, in a form that can be saved, compared and rebuilt elsewhere.

A :class:`GridSpec` holds the selection strings and settings of a run (not the resolved
objects), so that a worker process or a dask worker can rebuild exactly the same cells from
its own plugin registry, and so that ``--resume`` can tell whether the grid changed.
``RUN_DIR/grid.json`` (the manifest) stores the spec, the plugin files and the id of every
cell, in order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

import torch

from proxmf_bench.errors import UserError
from proxmf_bench.plugin.registry import Registry
from proxmf_bench.plugin.selection import Variant, select
from proxmf_bench.run.cells import Cell, Limits

MANIFEST_FORMAT = 1

# Above this many cells a grid is almost surely a typo (--seeds 1000000000): refused before
# the cell list is built.
MAX_CELLS = 1_000_000

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def parse_devices(text: str, require_available: bool = True) -> list[str]:
    """``"cpu,cuda"`` -> ``["cpu", "cuda:0"]``; CUDA asked for but absent is a ``UserError``.

    ``require_available=False`` skips that check (cells run on other machines: dask).
    """
    out = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            raise UserError(f"empty device in {text!r}")
        try:
            dev = torch.device(item)
        except (RuntimeError, ValueError):
            raise UserError(f"unknown device {item!r} (use cpu, cuda or cuda:N)") from None
        if dev.type == "cuda" and not require_available:
            dev = torch.device("cuda", 0 if dev.index is None else dev.index)
        elif dev.type == "cuda":
            if not torch.cuda.is_available():
                raise UserError(f"device {item!r} requested but CUDA is not available on this machine")
            index = 0 if dev.index is None else dev.index
            if index >= torch.cuda.device_count():
                raise UserError(f"device {item!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
            dev = torch.device("cuda", index)
        elif dev.type != "cpu":
            raise UserError(f"unsupported device {item!r} (use cpu, cuda or cuda:N)")
        name = str(dev)
        if name not in out:
            out.append(name)
    return out


def parse_dtypes(text: str) -> list[str]:
    out = []
    for item in (t.strip() for t in text.split(",")):
        if item not in DTYPES:
            raise UserError(f"unknown dtype {item!r} (use {', '.join(DTYPES)})")
        if item not in out:
            out.append(item)
    return out


def parse_seeds(value: int | str | Sequence[int]) -> tuple[int, ...]:
    """The seeds of ``--seeds``: a count ``N`` (seeds ``0..N-1``), a list ``0,3,7``, a range
    ``10-19`` (both ends included), or a mix ``0,10-12``; a ``UserError`` for anything else.

    A single number is a count (the seed ``5`` alone is ``5-5``). Seeds are nonnegative and
    listed once each; a grid has at most :data:`MAX_CELLS` of them.
    """
    if isinstance(value, bool):
        raise UserError(f"--seeds must be a count, a list or a range, got {value!r}")
    if isinstance(value, int):
        return _seed_count(value)
    if not isinstance(value, str):
        items = list(value)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            raise UserError(f"--seeds must be integers, got {items!r}")
        return _distinct([*items], str(items))
    text = value.strip()
    if text.isdigit():
        return _seed_count(int(text))
    seeds: list[int] = []
    for item in (t.strip() for t in text.split(",")):
        low, dash, high = item.partition("-")
        if not low.strip().isdigit() or (dash and not high.strip().isdigit()):
            raise UserError(f"--seeds {value!r} is not a count (5), a list (0,3,7) or a range (10-19): "
                            f"cannot read {item!r}")
        first, last = int(low), int(high) if dash else int(low)
        if last < first:
            raise UserError(f"--seeds range {item!r} ends before it starts")
        if len(seeds) + last - first + 1 > MAX_CELLS:
            raise UserError(f"--seeds {value!r} gives more than {MAX_CELLS:,} seeds")
        seeds.extend(range(first, last + 1))
    return _distinct(seeds, repr(value))


def _seed_count(count: int) -> tuple[int, ...]:
    if count < 1:
        raise UserError(f"--seeds must be >= 1, got {count}")
    if count > MAX_CELLS:
        raise UserError(f"--seeds {count} is more than the {MAX_CELLS:,} seeds a grid may have")
    return tuple(range(count))


def _distinct(seeds: list[int], text: str) -> tuple[int, ...]:
    if any(s < 0 for s in seeds):
        raise UserError(f"--seeds {text}: seeds must be >= 0")
    seen: set[int] = set()
    for s in seeds:
        if s in seen:
            raise UserError(f"--seeds {text} lists the seed {s} twice")
        seen.add(s)
    return tuple(seeds)


def build_cells(
    solvers: list[Variant], datasets: list[Variant], devices: list[str], dtypes: list[str], seeds: list[int]
) -> list[Cell]:
    """Cells in execution order: each problem is loaded once for all its solvers."""
    return [
        Cell(s, d, dev, dt, seed)
        for d in datasets
        for seed in seeds
        for dev in devices
        for dt in dtypes
        for s in solvers
    ]


@dataclass(frozen=True)
class GridSpec:
    """Selections and settings of a run; :meth:`cells` resolves them against a registry.

    ``seeds`` are the seeds themselves (a manifest written before lists were accepted holds
    a count, read as ``0..N-1``); ``repeat`` is how many times each cell is timed.
    """

    solvers: str
    datasets: str
    devices: tuple[str, ...]
    dtypes: tuple[str, ...]
    seeds: tuple[int, ...]
    max_iter: int | None
    max_time: float | None
    tol: float | None
    threads: int
    repeat: int = 1

    @property
    def limits(self) -> Limits:
        return Limits(max_iter=self.max_iter, max_time=self.max_time, tol=self.tol)

    def variants(self, registry: Registry) -> tuple[list[Variant], list[Variant]]:
        """The solver and dataset variants the selections expand into."""
        return (select(self.solvers, registry.solvers, registry, "solver"),
                select(self.datasets, registry.datasets, registry, "dataset"))

    def cells(self, registry: Registry, variants: tuple[list[Variant], list[Variant]] | None = None) -> list[Cell]:
        """Every cell of the grid, in execution order (``variants``: from :meth:`variants`)."""
        solvers, datasets = variants if variants is not None else self.variants(registry)
        count = len(solvers) * len(datasets) * len(self.devices) * len(self.dtypes) * len(self.seeds)
        if count > MAX_CELLS:
            raise UserError(
                f"the grid has {count:,} cells ({len(solvers)} solver variants x {len(datasets)} datasets x "
                f"{len(self.devices)} devices x {len(self.dtypes)} dtypes x {len(self.seeds)} seeds); "
                f"at most {MAX_CELLS:,} are allowed in one run"
            )
        return build_cells(solvers, datasets, list(self.devices), list(self.dtypes), list(self.seeds))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["devices"], out["dtypes"], out["seeds"] = list(self.devices), list(self.dtypes), list(self.seeds)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GridSpec:
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data or f.default is MISSING}
        values["devices"], values["dtypes"] = tuple(values["devices"]), tuple(values["dtypes"])
        values["seeds"] = parse_seeds(values["seeds"])
        return cls(**values)


def manifest(run_id: str, spec: GridSpec, registry: Registry, cells: list[Cell]) -> dict[str, Any]:
    """The content of ``grid.json``."""
    source = registry.source or {}
    return {
        "format": MANIFEST_FORMAT,
        "run_id": run_id,
        "grid": spec.to_dict(),
        "plugin_files": source.get("plugin_files", []),
        "env_files": source.get("env_files", []),
        "cells": [{"id": c.id, **_brief(c)} for c in cells],
    }


def _brief(cell: Cell) -> dict[str, Any]:
    return {"solver": cell.solver.label, "dataset": cell.dataset.label, "device": cell.device,
            "dtype": cell.dtype, "seed": cell.seed}


def check_manifest(data: Any, where: str) -> dict[str, Any]:
    """Validate the structure of a loaded manifest; a clear error if it is not one."""
    try:
        if data["format"] != MANIFEST_FORMAT:
            raise UserError(f"{where} has format {data['format']!r}; this proxmf-bench reads format {MANIFEST_FORMAT}")
        GridSpec.from_dict(data["grid"])
        str(data["run_id"])
        ids = [c["id"] for c in data["cells"]]
        list(data["plugin_files"])
    except UserError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{where} is not a proxmf-bench grid manifest ({type(exc).__name__}: {exc})") from None
    if len(set(ids)) != len(ids):
        raise UserError(f"{where} lists a cell twice: the manifest is corrupt")
    return data


def explain_changes(saved: dict[str, Any], spec: GridSpec, cells: list[Cell]) -> str | None:
    """``None`` if ``spec``/``cells`` are the grid of the manifest ``saved``, else why not."""
    old = GridSpec.from_dict(saved["grid"])
    reasons = []
    for name in ("max_iter", "max_time", "tol", "threads", "repeat"):
        before, after = getattr(old, name), getattr(spec, name)
        if before != after:
            reasons.append(f"{name.replace('_', '-')} {_setting(before)} -> {_setting(after)}")
    old_cells = {c["id"]: c for c in saved["cells"]}
    new_cells = {c.id: _brief(c) for c in cells}
    added = [new_cells[i] for i in new_cells if i not in old_cells]
    removed = [old_cells[i] for i in old_cells if i not in new_cells]
    for verb, changed in (("added", added), ("removed", removed)):
        if changed:
            shown = "; ".join(_show(c) for c in changed[:2]) + ("; ..." if len(changed) > 2 else "")
            reasons.append(f"{len(changed)} cells {verb} ({shown})")
    if (added or removed) and all(getattr(old, f) == getattr(spec, f) for f in ("solvers", "datasets", "devices", "dtypes", "seeds")):
        reasons.append("the selection is unchanged, so the plugins or their default grids changed")
    return ", ".join(reasons) or None


def _setting(value: Any) -> str:
    return "none" if value is None else str(value)


def _show(brief: dict[str, Any]) -> str:
    return f"{brief['solver']} on {brief['dataset']}, {brief['device']}, {brief['dtype']}, seed {brief['seed']}"


def dumps(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=1) + "\n").encode()
