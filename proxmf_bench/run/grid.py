"""What a run computes, in a form that can be saved, compared and rebuilt elsewhere.

A :class:`GridSpec` holds the selection strings and settings of a run (not the resolved
objects), so that a worker process or a dask worker can rebuild exactly the same cells from
its own plugin registry, and so that ``--resume`` can tell whether the grid changed.
``RUN_DIR/grid.json`` (the manifest) stores the spec, the record schedule, the plugin files
and the id of every cell, in order. It is read back only through :func:`check_manifest` and
:meth:`GridSpec.from_dict`, which refuse a damaged one with a line naming what is wrong.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, fields, replace
from typing import Any

import torch

from proxmf_bench.errors import UserError
from proxmf_bench.plugin.registry import Registry
from proxmf_bench.plugin.selection import Variant, select
from proxmf_bench.problem.problem import YT_POLICIES
from proxmf_bench.run.cells import Cell, Limits
from proxmf_bench.run.schedule import RecordSchedule

# 2: cell ids cover the stopping limits and the record schedule
MANIFEST_FORMAT = 2

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
    solvers: list[Variant], datasets: list[Variant], devices: list[str], dtypes: list[str], seeds: list[int],
    limits: Limits = Limits(), schedule: RecordSchedule = RecordSchedule(),
) -> list[Cell]:
    """Cells in execution order: each problem is loaded once for all its solvers."""
    return [
        Cell(s, d, dev, dt, seed, limits, schedule)
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
    a count, read as ``0..N-1``); ``repeat`` is how many times each cell is timed; ``yt`` is
    the policy for the problems' row-major copy of ``Y^T`` (:data:`~proxmf_bench.problem.problem.YT_POLICIES`).
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
    yt: str = "auto"

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
        return build_cells(solvers, datasets, list(self.devices), list(self.dtypes), list(self.seeds),
                           self.limits, RecordSchedule())

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["devices"], out["dtypes"], out["seeds"] = list(self.devices), list(self.dtypes), list(self.seeds)
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "the grid") -> GridSpec:
        """The spec saved by :meth:`to_dict`; a ``UserError`` naming ``where`` and the field if
        ``data`` is not one (a missing field, a wrong type, a value out of range). A field with a
        default (``repeat``) may be absent: manifests written before it existed lack it."""
        if not isinstance(data, dict):
            raise UserError(f"{where}: the grid is {_kind(data)}, not an object")
        values = {}
        for f in fields(cls):
            if f.name in data:
                values[f.name] = _checked_field(f.name, data[f.name], where)
            elif f.default is MISSING:
                raise UserError(f"{where}: the grid lacks {f.name!r}")
        if values["max_iter"] is None and values["max_time"] is None:
            raise UserError(f"{where}: max_iter and max_time are both null: the run would never stop")
        return cls(**values)


def _kind(value: Any) -> str:
    """``null``, or the JSON type of ``value`` with its start: ``a string ("10")``."""
    if value is None:
        return "null"
    name = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "object"}.get(
        type(value), type(value).__name__)
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name} ({json.dumps(value, default=str)[:40]})"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _is_names(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)


# what each saved field must be: (test, description)
_FIELDS = {
    "solvers": (lambda v: isinstance(v, str) and bool(v.strip()), "a selection string"),
    "datasets": (lambda v: isinstance(v, str) and bool(v.strip()), "a selection string"),
    "devices": (_is_names, "a non-empty list of device names"),
    "dtypes": (lambda v: _is_names(v) and all(d in DTYPES for d in v), f"a non-empty list of {', '.join(DTYPES)}"),
    "seeds": (lambda v: _is_int(v) or (isinstance(v, list) and bool(v) and all(_is_int(s) for s in v)),
              "a count or a non-empty list of integers"),
    "max_iter": (lambda v: v is None or (_is_int(v) and v >= 0), "null or an integer >= 0"),
    "max_time": (lambda v: v is None or (_is_number(v) and v > 0), "null or a finite number > 0"),
    "tol": (lambda v: v is None or (_is_number(v) and v >= 0), "null or a finite number >= 0"),
    "threads": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "repeat": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "yt": (lambda v: v in YT_POLICIES, f"one of {', '.join(YT_POLICIES)}"),
}


def _checked_field(name: str, value: Any, where: str) -> Any:
    test, description = _FIELDS[name]
    if not test(value):
        raise UserError(f"{where}: {name} must be {description}, got {_kind(value)}")
    if name == "seeds":
        try:
            return parse_seeds(value)
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from None
    return tuple(value) if name in ("devices", "dtypes") else value


def manifest(run_id: str, spec: GridSpec, registry: Registry, cells: list[Cell]) -> dict[str, Any]:
    """The content of ``grid.json``."""
    source = registry.source or {}
    return {
        "format": MANIFEST_FORMAT,
        "run_id": run_id,
        "grid": spec.to_dict(),
        "record_schedule": RecordSchedule().to_dict(),
        "plugin_files": source.get("plugin_files", []),
        "env_files": source.get("env_files", []),
        "cells": [{"id": c.id, **_brief(c)} for c in cells],
    }


def _brief(cell: Cell) -> dict[str, Any]:
    return {"solver": cell.solver.label, "dataset": cell.dataset.label, "device": cell.device,
            "dtype": cell.dtype, "seed": cell.seed}


def check_manifest(data: Any, where: str) -> dict[str, Any]:
    """Validate a loaded manifest; a one-line ``UserError`` naming ``where`` and what is wrong."""
    if not isinstance(data, dict) or "format" not in data:
        raise UserError(f"{where} is not a proxmf-bench grid manifest (no format number)")
    version = data["format"]
    if version != MANIFEST_FORMAT:
        if _is_int(version) and version < MANIFEST_FORMAT:
            raise UserError(f"{where} was written by an older proxmf-bench (format {version}, whose cell ids do not "
                            f"cover the stopping limits): it cannot be resumed; start a new run")
        raise UserError(f"{where} has format {_kind(version)}; this proxmf-bench reads format {MANIFEST_FORMAT}")
    for key in ("run_id", "grid", "record_schedule", "plugin_files", "env_files", "cells"):
        if key not in data:
            raise UserError(f"{where} is not a proxmf-bench grid manifest (no {key!r})")
    GridSpec.from_dict(data["grid"], where)
    if not isinstance(data["run_id"], str) or not data["run_id"]:
        raise UserError(f"{where}: run_id must be a string, got {_kind(data['run_id'])}")
    schedule = data["record_schedule"]
    if not (isinstance(schedule, dict) and set(schedule) == {"dense", "per_decade"}
            and all(_is_int(v) and v >= 1 for v in schedule.values())):
        raise UserError(f"{where}: record_schedule must be {{dense, per_decade}} positive integers, got {_kind(schedule)}")
    for key in ("plugin_files", "env_files"):
        if not (isinstance(data[key], list) and all(isinstance(f, str) for f in data[key])):
            raise UserError(f"{where}: {key} must be a list of paths, got {_kind(data[key])}")
    cells = data["cells"]
    if not (isinstance(cells, list) and all(isinstance(c, dict) and isinstance(c.get("id"), str) for c in cells)):
        raise UserError(f"{where}: cells must be a list of objects with an id, got {_kind(cells)}")
    ids = [c["id"] for c in cells]
    if len(set(ids)) != len(ids):
        raise UserError(f"{where} lists a cell twice: the manifest is corrupt")
    return data


def explain_changes(saved: dict[str, Any], spec: GridSpec, cells: list[Cell]) -> str | None:
    """``None`` if ``spec``/``cells`` are the grid of the manifest ``saved``, else why not."""
    old = GridSpec.from_dict(saved["grid"])
    old_schedule = RecordSchedule(**saved["record_schedule"])
    reasons = []
    for name in ("max_iter", "max_time", "tol", "threads", "repeat", "yt"):
        before, after = getattr(old, name), getattr(spec, name)
        if before != after:
            reasons.append(f"{name.replace('_', '-')} {_setting(before)} -> {_setting(after)}")
    if cells and cells[0].schedule != old_schedule:
        reasons.append(f"record schedule {old_schedule.to_dict()} -> {cells[0].schedule.to_dict()} "
                       f"(another proxmf-bench version)")
    # cells compared as they would be under the saved limits: a changed limit is said once
    old_cells = {c["id"]: c for c in saved["cells"]}
    new_cells = {replace(c, limits=old.limits, schedule=old_schedule).id: _brief(c) for c in cells}
    added = [new_cells[i] for i in new_cells if i not in old_cells]
    removed = [old_cells[i] for i in old_cells if i not in new_cells]
    for verb, changed in (("added", added), ("removed", removed)):
        if changed:
            shown = "; ".join(_show(c) for c in changed[:2]) + ("; ..." if len(changed) > 2 else "")
            reasons.append(f"{len(changed)} cells {verb} ({shown})")
    if (added or removed) and all(getattr(old, f) == getattr(spec, f) for f in ("solvers", "datasets", "devices", "dtypes", "seeds")):
        reasons.append("the selection is unchanged, so the plugins, their default grids or the data files named in it changed")
    return ", ".join(reasons) or None


def _setting(value: Any) -> str:
    return "none" if value is None else str(value)


def _show(brief: dict[str, Any]) -> str:
    return f"{brief['solver']} on {brief['dataset']}, {brief['device']}, {brief['dtype']}, seed {brief['seed']}"


def dumps(data: dict[str, Any]) -> bytes:
    """Standard JSON (no ``Infinity`` or ``NaN``: the values are checked before they get here)."""
    return (json.dumps(data, indent=1, allow_nan=False) + "\n").encode()
