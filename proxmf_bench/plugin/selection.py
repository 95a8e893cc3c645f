"""Parsing of selection strings such as ``"mu,pgm[prox_H=l1,lam_H=[0.1,1]]"``.

Grammar (whitespace around tokens is ignored)::

    selection := item ("," item)*          item := "all" | name | name "[" pairs "]"
    pairs     := key "=" value ("," key "=" value)*
    value     := text | "[" text ("," text)* "]"      # a list expands into variants

A list value, given on the command line or in a spec's default ``grid``, expands into the
Cartesian product of variants.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxmf_bench.errors import UserError, did_you_mean
from proxmf_bench.plugin.registry import Registry, lookup_spec

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class Variant:
    """One concrete selection: a spec name, the fully resolved parameters, and a label.

    ``label`` names the variant as a user would type it: the name alone, or the name with
    the parameters that were set explicitly or expanded from a grid.
    """

    name: str
    params: Mapping[str, Any]
    label: str

    def params_json(self) -> str:
        """The parameters as standard JSON (an infinite value, where a parameter allows one,
        is written as the string ``"inf"``: JSON has no infinity)."""
        params = {k: str(v) if isinstance(v, float) and not math.isfinite(v) else v for k, v in self.params.items()}
        return json.dumps(params, sort_keys=True, default=_json_default, allow_nan=False)


def _json_default(value: Any) -> Any:
    name = getattr(value, "name", None)
    return name if name is not None else str(value)


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside brackets; unbalanced brackets are a ``UserError``."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise UserError(f"unbalanced ']' in selection {text!r}")
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth != 0:
        raise UserError(f"unbalanced '[' in selection {text!r}")
    parts.append(text[start:])
    return [p.strip() for p in parts]


def parse_item(item: str) -> tuple[str, dict[str, Any]]:
    """``"pgm[lam=[0.1,1],prox=l1]"`` -> ``("pgm", {"lam": ["0.1", "1"], "prox": "l1"})``."""
    if "[" in item:
        if not item.endswith("]"):
            raise UserError(f"malformed selection {item!r}: expected name[key=value,...]")
        name, body = item[: item.index("[")].strip(), item[item.index("[") + 1 : -1]
    else:
        name, body = item.strip(), ""
    if not _NAME.match(name):
        raise UserError(f"malformed selection {item!r}: {name!r} is not a valid name")
    params: dict[str, Any] = {}
    for pair in split_top_level(body) if body.strip() else []:
        key, eq, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not _NAME.match(key) or not value:
            raise UserError(f"malformed parameter {pair!r} in {item!r}: expected key=value")
        if key in params:
            raise UserError(f"parameter {key!r} given twice in {item!r}")
        if value.startswith("["):
            if not value.endswith("]"):
                raise UserError(f"malformed list {value!r} in {item!r}")
            values = [v for v in split_top_level(value[1:-1]) if v]
            if not values:
                raise UserError(f"empty list for {key!r} in {item!r}")
            params[key] = values
        else:
            params[key] = value
    return name, params


def expand_grid(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Cartesian product over list-valued entries; scalars are kept in every variant."""
    keys = list(params)
    choices = [v if isinstance(v, (list, tuple)) else [v] for v in params.values()]
    return [dict(zip(keys, combo)) for combo in itertools.product(*choices)]


def format_label(name: str, shown: Mapping[str, Any]) -> str:
    """``name`` or ``name[k=v,...]``; spec-valued parameters (a prox operator) show their name."""
    if not shown:
        return name
    inner = ",".join(f"{k}={_json_default(v) if not isinstance(v, (str, int, float)) else v}" for k, v in shown.items())
    return f"{name}[{inner}]"


def _refuse_file_name(item: str, table: Mapping[str, Any]) -> None:
    """A dataset selection that is a file name (``mydata.npy``, ``data/y.csv``): a
    :class:`UserError` saying how the built-in ``file`` dataset reads it."""
    if "[" in item or item in table or "file" not in table or did_you_mean(item, table):
        return
    if Path(item).suffix or "/" in item or os.sep in item or Path(item).is_file():
        raise UserError(
            f"unknown dataset {item!r}: to benchmark the matrix in a file, select \"file[path={item},rank=R]\" "
            "with R the rank to fit (formats and options: proxmf-bench list datasets)"
        )


def select(text: str, table: Mapping[str, Any], registry: Registry, noun: str) -> list[Variant]:
    """Resolve a selection string against ``table`` (name -> spec) into variants.

    ``all`` selects every spec with its default grid (except those with a required
    parameter, such as the ``file`` dataset's path); a bare name uses that spec's grid;
    explicit parameters override the grid for the keys they name.
    """
    if not text or not text.strip():
        raise UserError(f"empty {noun} selection")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes from the command line (surrogate escapes)
        raise UserError(f"{noun} selection {text!r} contains bytes that are not valid UTF-8") from None
    variants: list[Variant] = []
    for item in split_top_level(text):
        if not item:
            raise UserError(f"empty item in {noun} selection {text!r}")
        if noun == "dataset":
            _refuse_file_name(item, table)
        name, given = parse_item(item)
        if name == "all" and not given:  # specs that need a parameter given (a file) have no default variant
            specs = [s for s in table.values() if not any(p.required for p in s.params)]
        else:
            specs = [lookup_spec(table, name, noun)]
        for spec in specs:
            merged = {**dict(spec.grid), **given}
            grid_keys = [k for k, v in spec.grid.items() if isinstance(v, (list, tuple)) and k not in given]
            for combo in expand_grid(merged):
                resolved = spec.resolve(combo, registry)
                shown = {k: combo[k] for k in combo if k in given or k in grid_keys}
                variants.append(Variant(spec.name, resolved, format_label(spec.name, shown)))
    seen: set[tuple[str, str]] = set()
    unique = []
    for v in variants:
        key = (v.name, v.params_json())
        if key not in seen:
            seen.add(key)
            unique.append(v)
    return unique
