"""Markdown table of our solvers and the peers side by side (CPU, 1 thread, float64).

For each problem, every built-in stepped solver (default variant) and every installed peer
(``pip install 'proxmf-bench[peers]'``) runs in one ``run_benchmark`` call from the same initial
factors, each limited to ``--max-time`` seconds of solver time (a peer: per call). Columns:

- ms / iteration: ``(t(K) - t(K')) / (K - K')`` between the last recorded point ``K`` and the one
  nearest ``K / 2``, which leaves set-up costs (initialisation, a peer's input checks) out;
- time and iterations to reach ``1e-4`` relative suboptimality ``(f - f*) / f*``, with ``f*``
  the lowest loss any solver reached on that problem; "not reached" gives the best value.

Regenerate the README's table (about 10 minutes on 2 cores)::

    python -m benchmarks.peer_table --readme README.md

Without ``--readme`` the table is printed. Safe to import (asv imports every module here).
"""

from __future__ import annotations

import argparse
import math
import platform
import re
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd

PROBLEMS = (
    "synthetic[m=200,n=500,rank=10,noise=0.1]",
    "synthetic[m=1000,n=1000,rank=20,noise=0.1]",
)
TARGET = 1e-4
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


def summarise(frame: pd.DataFrame, peers: list[str], target: float = TARGET) -> pd.DataFrame:
    """One row per (dataset, solver): kind, ms/iteration, time and iterations to ``target``."""
    out = []
    for dataset, rows in frame.groupby("dataset", sort=False):
        f_star = rows.loss.min()
        for solver, cell in rows.groupby("solver", sort=False):
            cell = cell.sort_values("iteration")
            subopt = (cell.loss - f_star) / f_star
            hit = cell[subopt <= target]
            out.append({
                "problem": dataset, "solver": solver,
                "kind": "peer" if cell.solver_name.iloc[0] in peers else "proxmf-bench",
                "ms_per_iter": 1e3 * per_iteration(cell),
                "time_to_target": hit.time_s.iloc[0] if len(hit) else math.nan,
                "iters_to_target": int(hit.iteration.iloc[0]) if len(hit) else None,
                "best_subopt": float(subopt.min()),
                "stop_reason": cell.stop_reason.iloc[-1],
            })
    return pd.DataFrame(out)


def to_markdown(summary: pd.DataFrame, max_time: float) -> str:
    lines = []
    for problem, rows in summary.groupby("problem", sort=False):
        lines += [f"**{problem}** (float64)", "",
                  "| solver | | ms / iteration | time to 1e-4 | iterations to 1e-4 |",
                  "|---|---|---:|---:|---:|"]
        rows = rows.sort_values(["time_to_target", "best_subopt"], na_position="last")
        for r in rows.itertuples():
            if math.isnan(r.time_to_target):
                reached = f"not reached in {max_time:g} s (best {r.best_subopt:.1e})"
                iters = ""
            else:
                reached, iters = f"{r.time_to_target:.3f} s", f"{r.iters_to_target:.0f}"
            lines.append(f"| `{r.solver}` | {r.kind} | {r.ms_per_iter:.3f} | {reached} | {iters} |")
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


def build_table(problems: tuple[str, ...], max_time: float, max_iter: int) -> str:
    from proxmf_bench import run_benchmark

    ours, peers = solver_groups()
    frames = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, problem in enumerate(problems):
            out = run_benchmark(solvers=",".join(ours + peers), datasets=problem, dtypes="float64",
                                max_iter=max_iter, max_time=max_time, threads=1, out=Path(tmp) / str(i))
            frames.append(out.frame)
    summary = summarise(pd.concat(frames), peers)
    return f"Measured on {environment_line()}.\n\n{to_markdown(summary, max_time)}"


def replace_block(text: str, table: str) -> str:
    """``text`` with what lies between the peer-table markers replaced by ``table``."""
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"no {START} ... {END} block in the file")
    return pattern.sub(lambda _: f"{START}\n{table}\n{END}", text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, help="rewrite the peer-table block of this file")
    parser.add_argument("--max-time", type=float, default=5.0, help="solver seconds per run (default 5)")
    parser.add_argument("--max-iter", type=int, default=20_000, help="iterations per run (default 20000)")
    parser.add_argument("--problems", default=";".join(PROBLEMS), help="';'-separated dataset selections")
    args = parser.parse_args()
    table = build_table(tuple(args.problems.split(";")), args.max_time, args.max_iter)
    if args.readme is None:
        print(table)
    else:
        args.readme.write_text(replace_block(args.readme.read_text(), table))
        print(f"updated the peer table in {args.readme}")


if __name__ == "__main__":
    main()
