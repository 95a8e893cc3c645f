"""Markdown table of our solvers and the peers side by side (CPU, 1 thread, float64).

For each problem (digits, Samson, Jasper, synthetic small and 1000 x 1000 rank 20), every
built-in stepped solver (default variant) and every installed peer
(``pip install 'proxmf-bench[peers]'``) runs in one ``run_benchmark`` call from the same initial
factors, each limited to ``--max-time`` seconds of solver time (a peer: per call). Columns:

- ms / iteration: ``(t(K) - t(K')) / (K - K')`` between the last recorded point ``K`` and the one
  nearest ``K / 2``, which leaves set-up costs (initialisation, a peer's input checks) out;
- time and iterations to reach ``1e-4`` and ``1e-6`` relative suboptimality ``(f - f*) / f*``,
  with ``f*`` the lowest loss any solver reached on that problem in this run (not a reference
  optimum: on digits the solvers end in different local minima, and ``f*`` is the best of them);
  "not reached" gives the best value. The solver whose last point sets ``f*`` reaches every
  target there by definition; where that is its first point at the target, the time is marked
  "its last point, which sets f*": a bound set by the time limit, not a measured crossing.

Regenerate the README's table (about 6 minutes on 2 idle cores; the built-in peers continue
from their last factors, so a peer's wall time stays close to its solver time)::

    python -m benchmarks.peer_table --readme README.md

Without ``--readme`` the table is printed; ``--quick`` runs a tiny problem for 0.2 s or 300 iterations per solver
(a smoke test). Safe to import (asv imports every module here).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is imported where used: asv imports this module in an environment without it
    import pandas as pd

PROBLEMS = (
    "digits",
    "samson",
    "jasper",
    "synthetic[size=small,noise=0.1]",
    "synthetic[m=1000,n=1000,rank=20,noise=0.1]",
)
QUICK_PROBLEMS = ("synthetic[m=30,n=20,rank=3,noise=0.1]",)
TARGETS = (1e-4, 1e-6)
START, END = "<!-- peer-table -->", "<!-- /peer-table -->"
PEER_DISTRIBUTIONS = ("scikit-learn", "tensorly", "torchnmf")


def solver_groups() -> tuple[list[str], list[str]]:
    """(our stepped solver families, installed black-box peers), by name."""
    from proxmf_bench.plugin.registry import load_registry
    from proxmf_bench.solve.blackbox import is_black_box

    registry = load_registry(use_entry_points=False)
    ours = sorted(n for n, s in registry.solvers.items() if not is_black_box(s.factory))
    peers = sorted(n for n, s in registry.solvers.items() if is_black_box(s.factory))
    return ours, peers


def per_iteration(rows: pd.DataFrame) -> float:
    """Seconds per iteration from the slope between the last point and the one nearest K/2."""
    rows = rows.sort_values("iteration")
    last = rows.iloc[-1]
    if last.iteration < 2:
        return math.nan
    mid = rows.iloc[(rows.iteration - last.iteration / 2).abs().argmin()]
    return (last.time_s - mid.time_s) / (last.iteration - mid.iteration)


def summarise(frame: pd.DataFrame, peers: list[str], targets: tuple[float, ...] = TARGETS) -> pd.DataFrame:
    """One row per (dataset, solver): kind, ms/iteration, time and iterations to each target."""
    import pandas as pd

    out = []
    for dataset, rows in frame.groupby("dataset", sort=False):
        f_star = rows.loss.min()
        for solver, cell in rows.groupby("solver", sort=False):
            cell = cell.sort_values("iteration")
            subopt = (cell.loss - f_star) / f_star
            row = {
                "problem": dataset, "solver": solver,
                "kind": "peer" if cell.solver_name.iloc[0] in peers else "proxmf-bench",
                "ms_per_iter": 1e3 * per_iteration(cell),
                "best_subopt": float(subopt.min()),
                "stop_reason": cell.stop_reason.iloc[-1],
            }
            for target in targets:
                hit = cell[subopt <= target]
                row[f"time_{target:g}"] = hit.time_s.iloc[0] if len(hit) else math.nan
                row[f"iters_{target:g}"] = int(hit.iteration.iloc[0]) if len(hit) else None
                # reached only where the cell itself sets f*: the limit, not a measured crossing
                row[f"sets_f_star_{target:g}"] = bool(len(hit)) and hit.index[0] == cell.index[-1] and subopt.iloc[-1] == 0
            out.append(row)
    return pd.DataFrame(out)


def to_markdown(summary: pd.DataFrame, max_time: float, targets: tuple[float, ...] = TARGETS) -> str:
    lines = []
    header = " | ".join(f"time to {t:g} | iterations" for t in targets)
    for problem, rows in summary.groupby("problem", sort=False):
        lines += [f"**{problem}** (float64)", "",
                  f"| solver | | ms / iteration | {header} |",
                  "|---|---|---:|" + "---:|---:|" * len(targets)]
        rows = rows.sort_values([f"time_{targets[0]:g}", "best_subopt"], na_position="last", kind="stable")
        for r in rows.to_dict("records"):
            cells = []
            for t in targets:
                if math.isnan(r[f"time_{t:g}"]):
                    cells += [f"not reached in {max_time:g} s (best {r['best_subopt']:.1e})", ""]
                else:
                    mark = " (its last point, which sets f*)" if r[f"sets_f_star_{t:g}"] else ""
                    cells += [f"{r[f'time_{t:g}']:.3f} s{mark}", f"{r[f'iters_{t:g}']:.0f}"]
            lines.append(f"| `{r['solver']}` | {r['kind']} | {r['ms_per_iter']:.3f} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def environment_line() -> str:
    from proxmf_bench.run.environment import cpu_name

    versions = []
    for dist in ("torch", *PEER_DISTRIBUTIONS):
        try:
            versions.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            pass
    return f"{cpu_name()}, 1 thread, Python {platform.python_version()}, {', '.join(versions)}"


def load_average() -> str:
    """The 1-minute load average and the CPU count: how shared the machine was."""
    try:
        return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    except OSError:  # not available on this platform
        return "load average unknown"


def build_table(problems: tuple[str, ...], max_time: float, max_iter: int) -> str:
    import pandas as pd

    from proxmf_bench import run_benchmark

    ours, peers = solver_groups()
    load_before = load_average()
    frames = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, problem in enumerate(problems):
            out = run_benchmark(solvers=",".join(ours + peers), datasets=problem, dtypes="float64",
                                max_iter=max_iter, max_time=max_time, threads=1, out=Path(tmp) / str(i))
            frames.append(out.frame)
    summary = summarise(pd.concat(frames), peers)
    return (f"Measured on {environment_line()} ({load_before} at the start, {load_average()} at the end); "
            "f* is the lowest loss any solver reached on the problem."
            f"\n\n{to_markdown(summary, max_time)}")


def replace_block(text: str, table: str) -> str:
    """``text`` with what lies between the peer-table markers replaced by ``table``."""
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"no {START} ... {END} block in the file")
    return pattern.sub(lambda _: f"{START}\n{table}\n{END}", text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, help="rewrite the peer-table block of this file")
    parser.add_argument("--max-time", type=float, default=5.0, help="solver seconds per run (default 5)")
    parser.add_argument("--max-iter", type=int, default=20_000, help="iterations per run (default 20000)")
    parser.add_argument("--problems", default=";".join(PROBLEMS), help="';'-separated dataset selections")
    parser.add_argument("--quick", action="store_true", help="a tiny problem, 0.2 s per solver (a smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.problems, args.max_time, args.max_iter = ";".join(QUICK_PROBLEMS), 0.2, min(args.max_iter, 300)
    table = build_table(tuple(args.problems.split(";")), args.max_time, args.max_iter)
    if args.readme is None:
        print(table)
    else:
        args.readme.write_text(replace_block(args.readme.read_text(), table))
        print(f"updated the peer table in {args.readme}")


if __name__ == "__main__":
    main()
