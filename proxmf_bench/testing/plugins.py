"""What ``proxmf-bench check`` checks: registered specs chosen by name or by plugin.

By default every spec of every third-party plugin (entry points, ``$PROXMF_BENCH_PLUGINS``,
``--plugin`` files), and each such plugin that failed to load as a failure of its own; names
pick specs of any origin (``NAME`` or ``NAME[key=value,...]``, which checks those parameters
only), and ``all`` picks every registered spec.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from proxmf_bench.errors import UserError, did_you_mean
from proxmf_bench.plugin.registry import PluginInfo, Registry
from proxmf_bench.plugin.selection import parse_item
from proxmf_bench.testing.dataset import check_dataset
from proxmf_bench.testing.prox import check_prox
from proxmf_bench.testing.report import CheckReport, Counterexample, Recorder
from proxmf_bench.testing.solver import check_solver

KINDS = ("prox", "solvers", "datasets")  # registry tables, in the order they are checked
_NOUN = {"prox": "prox", "solvers": "solver", "datasets": "dataset"}


@dataclass(frozen=True)
class Target:
    """One spec to check: its registry table, name, and the parameter sets given (or None)."""

    table: str
    name: str
    params: tuple[Mapping[str, Any], ...] | None = None
    owner: str = ""


@dataclass
class Plan:
    """The targets, and the third-party plugins that failed to load."""

    targets: list[Target] = field(default_factory=list)
    broken: list[PluginInfo] = field(default_factory=list)


def plan(registry: Registry, names: Sequence[str]) -> Plan:
    """The specs named in ``names`` (see the module docstring); a :class:`UserError` for an
    unknown name, or when nothing is left to check."""
    out = Plan()
    owners = registry.owner
    if not names:
        third_party = [info for info in registry.plugins if info.origin != "builtin"]
        out.broken = [info for info in third_party if not info.ok]
        chosen = {info.name for info in third_party}
        out.targets = [Target(table, name, None, owner) for table in KINDS for name in sorted(getattr(registry, table))
                       if (owner := owners.get((table, name), "")) in chosen]
        if not out.targets and not out.broken:
            raise UserError("nothing to check: no third-party plugin is registered (give --plugin FILE, install "
                            "one, or name the specs to check, 'all' for the built-ins too)")
        return out
    for text in names:
        if text.strip() == "all":
            out.targets += [Target(table, name, None, owners.get((table, name), ""))
                            for table in KINDS for name in sorted(getattr(registry, table))]
            continue
        name, given = parse_item(text)
        found = [table for table in KINDS if name in getattr(registry, table)]
        if not found:
            known = [n for table in KINDS for n in getattr(registry, table)]
            raise UserError(f"unknown solver, dataset or prox operator {name!r}{did_you_mean(name, known)}")
        params = (given,) if "[" in text else None
        for table in found:
            if params is not None:  # parameters given here are input: bad ones are a UserError
                spec = getattr(registry, table)[name]
                spec.resolve(given) if table == "prox" else spec.resolve(given, registry)
            out.targets.append(Target(table, name, params, owners.get((table, name), "")))
    return out


def check_target(target: Target, registry: Registry, device: str | torch.device = "cpu", seed: int = 0) -> CheckReport:
    """Run the check of ``target``'s kind on its spec."""
    spec = getattr(registry, target.table)[target.name]
    if target.table == "prox":
        return check_prox(spec, params=target.params, device=device, seed=seed)
    check = check_solver if target.table == "solvers" else check_dataset
    return check(spec, registry, params=target.params, device=device, seed=seed)


def broken_plugin_report(info: PluginInfo) -> CheckReport:
    """A failed plugin as a report with one failed property."""
    rec = Recorder("plugin", info.name)
    rec.fail("plugin imports and registers", Counterexample(info.origin, "the plugin loads", info.error or "failed"))
    return rec.finish()


def header(target: Target) -> str:
    return f"{_NOUN[target.table]} {target.name}" + (f"  [plugin {target.owner}]" if target.owner else "")
