"""The package's architecture: imports point one way, and core code never imports a plugin.

Imports are read from the source (``ast``), counting those inside functions and under
``TYPE_CHECKING``: a cycle hidden in a function is still a cycle of the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tomllib

from conftest import REPO

# installed module name -> source file, for the library and its plugin packages
ROOTS = {"proxmf_bench": REPO / "proxmf_bench", "proxmf_bench.solvers": REPO / "solvers",
         "proxmf_bench.datasets": REPO / "datasets"}
PLUGIN_PACKAGES = ("proxmf_bench.solvers", "proxmf_bench.datasets")


def _modules() -> dict[str, Path]:
    out = {}
    for prefix, base in ROOTS.items():
        for path in base.rglob("*.py"):
            parts = [p for p in path.relative_to(base).with_suffix("").parts if p != "__init__"]
            out[".".join([prefix, *parts])] = path
    return out


MODULES = _modules()


def _imported(name: str, path: Path) -> set[str]:
    """The project modules that module ``name`` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            for alias in node.names:  # "from pkg import module" imports the module
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    found = set()
    for target in targets:
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


GRAPH = {name: _imported(name, path) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iteratively)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def _package(module: str) -> str:
    """``proxmf_bench.run.harness`` -> ``proxmf_bench.run``; top-level modules are their own."""
    return ".".join(module.split(".")[:2])


def test_cycle_finder_finds_a_hidden_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_walker_sees_imports_inside_functions_and_type_checking():
    assert "proxmf_bench.run.dask_backend" in GRAPH["proxmf_bench.run.runner"]  # imported in a function
    assert "proxmf_bench.problem.problem" in GRAPH["proxmf_bench.plugin.specs"]  # under TYPE_CHECKING


def test_no_module_imports_itself_through_others():
    assert _cycles(GRAPH) == []


def test_subpackages_depend_on_each_other_one_way():
    # the root package is the public facade (it re-exports lazily from everywhere)
    packages: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        if module == "proxmf_bench":
            continue
        packages.setdefault(_package(module), set()).update(
            _package(t) for t in targets if t != "proxmf_bench" and _package(t) != _package(module))
    assert _cycles(packages) == []


def test_core_modules_never_import_a_plugin_module():
    core = [m for m in GRAPH if not m.startswith(PLUGIN_PACKAGES)]
    offending = {m: sorted(t for t in GRAPH[m] if t.startswith(PLUGIN_PACKAGES)) for m in core}
    assert {m: t for m, t in offending.items() if t} == {}


def test_tests_and_benchmarks_import_plugins_by_their_installed_names():
    # `solvers.mu` would load a second copy of the module, with classes of its own
    offending = []
    for path in [*(REPO / "tests").rglob("*.py"), *(REPO / "benchmarks").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            offending += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("solvers", "datasets")]
    assert offending == []


def test_every_subpackage_is_in_the_wheel():
    # an editable install finds any directory; a wheel (and asv's environments) only the listed ones
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {m for m, path in MODULES.items() if path.name == "__init__.py"}
    assert packages - listed == set()
