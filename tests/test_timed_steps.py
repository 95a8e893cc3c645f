"""Nothing is imported inside a timed ``init``/``step`` of a built-in solver: every lazy import
happens when the harness builds the solver (``pgm_torch``'s route through ``torch.optim`` once
imported ``torch._dynamo``, about 0.6 s, inside its first step)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO

# In a fresh interpreter: build every built-in stepped solver (imports allowed), then for each,
# the modules imported during init() and two step()s.
PROBE = """
import json, sys, torch
from proxmf_bench.plugin.registry import load_registry
from proxmf_bench.plugin.selection import select
from proxmf_bench.problem.problem import Problem
from proxmf_bench.problem.start import initial_factors
from proxmf_bench.solve.blackbox import is_black_box

registry = load_registry(use_entry_points=False)
problem = Problem(Y=torch.rand(12, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64), rank=2)
W0, H0 = initial_factors(problem, 0)
names = sorted(n for n, s in registry.solvers.items() if not is_black_box(s.factory))
solvers = {}
for name in names:
    variant = select(name, registry.solvers, registry, "solver")[0]
    solvers[name] = registry.get_solver(name).factory(**variant.params)
imported = {}
for name, solver in solvers.items():
    before = set(sys.modules)
    solver.init(problem, W0.clone(), H0.clone())
    solver.step()
    solver.step()
    imported[name] = sorted(set(sys.modules) - before)
print(json.dumps(imported))
"""


def test_no_module_is_imported_inside_init_or_step():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    imported = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"mu", "pgm", "fista", "hals", "pgm_torch"} <= set(imported)
    assert {name: modules for name, modules in imported.items() if modules} == {}
