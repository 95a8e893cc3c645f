"""How noisy is this machine for asv? Run the pull-request timing subset twice on one commit and
report, per benchmark, the ratio of the two medians; the largest is the smallest ``--factor``
that this machine's noise would not trip.

Run ``python -m benchmarks.asv_noise`` (``--commit REV``, default ``HEAD``; ``--bench REGEX``,
default ``^pr_timing``). Both runs use asv's environment for the commit, as ``asv continuous``
does, under two machine names (``<machine>-noise-a`` and ``-b``) so that the second does not
overwrite the first; about twice the subset's time (2 x 2 minutes on 2 cores) plus, the first
time, the environment's creation.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ratios(first: dict[str, float], second: dict[str, float]) -> dict[str, float]:
    """``max(a/b, b/a)`` per benchmark present and finite in both runs."""
    out = {}
    for key, a in first.items():
        b = second.get(key)
        if b is not None and a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b):
            out[key] = max(a / b, b / a)
    return out


def medians(results_file: Path) -> dict[str, float]:
    """``{"benchmark(params)": median seconds}`` from one asv results file."""
    from asv.results import Results

    results = Results.load(str(results_file))
    out = {}
    for key in results.get_all_result_keys():
        params = results.get_result_params(key)
        values = results.get_result_value(key, params)
        combos = _combinations(params)
        for combo, value in zip(combos, values):
            if value is not None:
                out[f"{key}({', '.join(combo)})" if combo else key] = float(value)
    return out


def _combinations(params: list[list[str]]) -> list[tuple[str, ...]]:
    combos: list[tuple[str, ...]] = [()]
    for values in params:
        combos = [c + (v,) for c in combos for v in values]
    return combos


def run_once(machine: str, commit: str, bench: str) -> Path:
    subprocess.run(["asv", "machine", "--machine", machine, "--yes"], cwd=REPO, check=True, capture_output=True)
    subprocess.run(["asv", "run", "--machine", machine, "--bench", bench, "--launch-method", "forkserver",
                    "--show-stderr", f"{commit}^!"], cwd=REPO, check=True)
    sha = subprocess.run(["git", "rev-parse", commit], cwd=REPO, check=True, capture_output=True,
                         text=True).stdout.strip()
    files = [p for p in (REPO / ".asv" / "results" / machine).glob(f"{sha[:8]}-*.json")]
    if not files:
        raise SystemExit(f"asv wrote no results for {commit} under .asv/results/{machine}")
    return max(files, key=lambda p: p.stat().st_mtime)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commit", default="HEAD")
    parser.add_argument("--bench", default="^pr_timing")
    args = parser.parse_args(argv)
    machine = json.loads((Path.home() / ".asv-machine.json").read_text()) if (Path.home() / ".asv-machine.json").exists() else {}
    base = next((k for k in machine if k != "version"), "machine")
    runs = [medians(run_once(f"{base}-noise-{tag}", args.commit, args.bench)) for tag in "ab"]
    table = sorted(ratios(*runs).items(), key=lambda kv: -kv[1])
    if not table:
        raise SystemExit("no benchmark has a result in both runs")
    for key, ratio in table:
        print(f"{ratio:6.3f}  {key}")
    print(f"largest ratio between two runs of one commit: {table[0][1]:.3f} ({table[0][0]})")


if __name__ == "__main__":
    main(sys.argv[1:])
