"""Plugin discovery and the registry of solvers, datasets and prox operators.

Plugins come from four places, in this order: the built-in modules (registered exactly like
third-party ones), installed distributions advertising the ``proxmf_bench`` entry-point group,
files named in ``PROXMF_BENCH_PLUGINS`` (``os.pathsep``-separated), and files passed with
``--plugin``. A plugin that fails to import or register is recorded with its error and skipped;
with ``strict=True`` the first such failure raises :class:`PluginError`. A plugin module that
raises :class:`~proxmf_bench.errors.PluginUnavailable` on import (an optional dependency is
missing) is skipped with that reason and is not a failure.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from proxmf_bench.errors import PluginError, PluginUnavailable, UserError, describe_exception, did_you_mean
from proxmf_bench.plugin import hookspecs
from proxmf_bench.plugin.specs import DatasetSpec, ProxSpec, SolverSpec

ENV_PLUGINS = "PROXMF_BENCH_PLUGINS"

BUILTIN_PLUGINS = (
    "proxmf_bench.solve.prox",
    "proxmf_bench.solvers.mu",
    "proxmf_bench.solvers.nalmu",
    "proxmf_bench.solvers.pgm",
    "proxmf_bench.solvers.pgm_momentum",
    "proxmf_bench.solvers.fista",
    "proxmf_bench.solvers.adaprox",
    "proxmf_bench.solvers.pgm_torch",
    "proxmf_bench.solvers.hals",
    "proxmf_bench.solvers.peer_sklearn",
    "proxmf_bench.solvers.peer_tensorly",
    "proxmf_bench.solvers.peer_torchnmf",
    "proxmf_bench.datasets.synthetic",
    "proxmf_bench.datasets.nnls_toy",
    "proxmf_bench.datasets.hsi",
    "proxmf_bench.datasets.digits",
    "proxmf_bench.datasets.file",
    "proxmf_bench.datasets.sparse_synthetic",
)

# hook name -> (spec class, registry attribute, singular noun for messages)
_KINDS = {
    "proxmf_register_solvers": (SolverSpec, "solvers", "solver"),
    "proxmf_register_datasets": (DatasetSpec, "datasets", "dataset"),
    "proxmf_register_prox": (ProxSpec, "prox", "prox operator"),
}


@dataclass
class PluginInfo:
    """What ``proxmf-bench plugins`` shows about one plugin."""

    name: str
    origin: str
    solvers: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    prox: list[str] = field(default_factory=list)
    error: str | None = None
    skipped: str | None = None  # why an available-on-request plugin registered nothing

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Registry:
    """Every registered spec by name, and where each one came from."""

    solvers: dict[str, SolverSpec] = field(default_factory=dict)
    datasets: dict[str, DatasetSpec] = field(default_factory=dict)
    prox: dict[str, ProxSpec] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)
    owner: dict[tuple[str, str], str] = field(default_factory=dict)
    # How load_registry built it (JSON-able), so a worker process can build the same one.
    source: dict[str, Any] | None = None

    def get_solver(self, name: str) -> SolverSpec:
        return lookup_spec(self.solvers, name, "solver")

    def get_dataset(self, name: str) -> DatasetSpec:
        return lookup_spec(self.datasets, name, "dataset")

    def get_prox(self, name: str) -> ProxSpec:
        return lookup_spec(self.prox, name, "prox operator")

    @property
    def failed(self) -> list[PluginInfo]:
        return [p for p in self.plugins if not p.ok]

    @property
    def skipped(self) -> list[PluginInfo]:
        return [p for p in self.plugins if p.skipped]


def lookup_spec(table: Mapping[str, Any], name: str, noun: str) -> Any:
    """``table[name]``, or a :class:`UserError` naming the close match and what is available."""
    try:
        return table[name]
    except KeyError:
        known = ", ".join(sorted(table)) or "none registered"
        raise UserError(f"unknown {noun} {name!r}{did_you_mean(name, table)} (available: {known})") from None


def load_registry(
    plugin_files: Sequence[str | os.PathLike] = (),
    *,
    strict: bool = False,
    builtins: Iterable[str] = BUILTIN_PLUGINS,
    use_entry_points: bool = True,
    use_env: bool = True,
) -> Registry:
    """Discover, import and register every plugin; return the filled :class:`Registry`.

    ``use_env=False`` ignores ``$PROXMF_BENCH_PLUGINS`` (a worker process is given the files
    it named in ``plugin_files``, from the parent's ``Registry.source``).
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    builtins = list(builtins)
    env_files = [p for p in os.environ.get(ENV_PLUGINS, "").split(os.pathsep) if p] if use_env else []
    registry = Registry(source={
        "plugin_files": [str(Path(p).expanduser().absolute()) for p in plugin_files],
        "env_files": [str(Path(p).expanduser().absolute()) for p in env_files],
        "builtins": builtins,
        "use_entry_points": use_entry_points,
    })

    def add(name: str, origin: str, load) -> None:
        info = PluginInfo(name=name, origin=origin)
        registry.plugins.append(info)
        try:
            plugin = load()
            pm.register(plugin, name=name)
        except PluginUnavailable as exc:
            info.skipped = str(exc)
            return
        except (Exception, SystemExit) as exc:  # a plugin's import may raise anything, even sys.exit()
            _fail(info, exc, strict)
            return
        _register_specs(pm, plugin, info, registry, strict)

    for module in builtins:
        add(module, "builtin", lambda m=module: importlib.import_module(m))
    if use_entry_points:
        for ep in sorted(entry_points(group=hookspecs.PROJECT), key=lambda e: e.name):
            dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "unknown distribution"
            add(ep.name, f"entry point {ep.value} ({dist})", ep.load)
    for path in env_files:
        add(_file_plugin_name(path), f"file {path} (${ENV_PLUGINS})", lambda p=path: _load_file(p))
    for path in plugin_files:
        add(_file_plugin_name(path), f"file {path} (--plugin)", lambda p=path: _load_file(p))
    return registry


def _register_specs(
    pm: pluggy.PluginManager, plugin: Any, info: PluginInfo, registry: Registry, strict: bool
) -> None:
    """Collect the plugin's specs, then commit them only if all are valid (all or nothing)."""
    staged: list[tuple[str, Any]] = []
    try:
        for hook_name, (cls, table, noun) in _KINDS.items():
            caller = getattr(pm.hook, hook_name)
            for impl in caller.get_hookimpls():
                if impl.plugin is not plugin:
                    continue

                def register(spec: Any, cls=cls, table=table, noun=noun) -> None:
                    if not isinstance(spec, cls):
                        raise TypeError(f"{noun} hook registered {type(spec).__name__}, expected {cls.__name__}")
                    taken = getattr(registry, table).get(spec.name)
                    if taken is not None or any(t == table and s.name == spec.name for t, s in staged):
                        first = registry.owner.get((table, spec.name), info.name)
                        raise PluginError(
                            f"{noun} {spec.name!r} is registered twice: by plugin {first!r} "
                            f"and by plugin {info.name!r}"
                        )
                    staged.append((table, spec))

                impl.function(register=register)
    except (Exception, SystemExit) as exc:
        pm.unregister(plugin)
        _fail(info, exc, strict)
        return
    for table, spec in staged:
        getattr(registry, table)[spec.name] = spec
        registry.owner[(table, spec.name)] = info.name
        getattr(info, table).append(spec.name)


def _fail(info: PluginInfo, exc: Exception, strict: bool) -> None:
    info.error = str(exc) if isinstance(exc, PluginError) else describe_exception(exc)
    if strict:
        raise PluginError(f"plugin {info.name!r} ({info.origin}) failed: {info.error}") from exc


def _file_plugin_name(path: str | os.PathLike) -> str:
    return f"file:{Path(path).stem}"


def _load_file(path: str | os.PathLike) -> ModuleType:
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"plugin file not found: {file}")
    module_name = f"proxmf_bench_plugin_{abs(hash(str(file.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {file} as a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
