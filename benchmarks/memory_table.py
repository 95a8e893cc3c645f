"""Peak memory of ``proxmf-bench run`` against the size of the data, side by side in one script.

Each size is one ``proxmf-bench run`` process (a few MU iterations on a float32 synthetic
problem by default) started from a small wrapper that reports the peak resident set size of
its child from ``getrusage(RUSAGE_CHILDREN)`` (exact, the largest single process), while this
script samples the proportional set size (PSS: shared pages divided among the processes that
map them) of the whole process tree every 0.1 s, which counts ``--jobs`` workers together. A
tiny run first measures the interpreter (Python, torch, the plugins), so the table says how
much memory the data costs beyond it, in multiples of the bytes of ``Y``::

    python benchmarks/memory_table.py                          # 3 sizes, serial
    python benchmarks/memory_table.py --jobs 2 --sizes 10000x5000 --extra=--solvers=mu,pgm
    python benchmarks/memory_table.py --jobs 2 --no-share ...    # each worker its own copy
    python benchmarks/memory_table.py --sizes 40000x20000 --iters 2
    python benchmarks/memory_table.py --extra=--yt=keep         # flags passed to every run

The proxmf-bench run is the one installed next to the Python running this script, so the
same script measures another checkout from that checkout's virtual environment.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SIZES = ("5000x2500", "10000x5000", "20000x10000")
BASELINE = "50x40"

# proxmf-bench's command line with the workers' shared data turned off (--no-share)
_UNSHARED = ("import sys; import proxmf_bench.run.runner as runner; runner.sharing_available = lambda: False; "
             "from proxmf_bench.cli import main; sys.exit(main())")

# Runs the command in argv[1:] and prints the peak RSS of the largest process among its
# descendants, in bytes (Linux reports ru_maxrss in KiB).
_WRAPPER = """\
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:]).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, code)
"""


def _children(pid: int) -> list[int]:
    """``pid`` and its descendants, from ``/proc``."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, ()))
    return out


def _tree_pss(pid: int) -> int:
    """Bytes of PSS of ``pid`` and its descendants (0 where ``/proc`` cannot tell)."""
    total = 0
    for p in _children(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def measure(command: list[str]) -> tuple[int, int, float]:
    """``(peak RSS of the largest process, peak sampled PSS of the tree, seconds)`` of ``command``."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _WRAPPER, *command], stdout=subprocess.PIPE, text=True)
    peak_pss = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_pss
        while not done.is_set():
            peak_pss = max(peak_pss, _tree_pss(proc.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    done.set()
    sampler.join()
    rss, code = (int(v) for v in out.split()[-2:])
    if code != 0:
        raise SystemExit(f"memory_table: {' '.join(command)} exited with status {code}")
    return rss, peak_pss, time.perf_counter() - start


def run_command(size: str, rank: int, dtype: str, iters: int, jobs: int | None, extra: list[str], out: Path,
                share: bool = True) -> list[str]:
    m, n = (int(v) for v in size.lower().split("x"))
    exe = [str(Path(sys.executable).with_name("proxmf-bench"))] if share else [sys.executable, "-c", _UNSHARED]
    cmd = [*exe, "run", "--solvers", "mu", "--datasets", f"synthetic[m={m},n={n},rank={min(rank, m, n)}]",
           "--dtypes", dtype, "--max-iter", str(iters), "--out", str(out)]
    if jobs:
        cmd += ["--jobs", str(jobs)]
    return cmd + extra


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated MxN (default: %(default)s)")
    parser.add_argument("--rank", type=int, default=50)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--iters", type=int, default=3, help="MU iterations per run (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=None, help="run the cells in N worker processes")
    parser.add_argument("--extra", action="append", default=[], help="a flag passed to every run (repeatable)")
    parser.add_argument("--no-share", action="store_true",
                        help="--jobs workers load their own copy of the data instead of mapping one shared file")
    args = parser.parse_args(argv)
    itemsize = 4 if args.dtype == "float32" else 8
    gib = 2.0**30
    with tempfile.TemporaryDirectory(prefix="memory_table_") as tmp:
        def one(size: str, k: int) -> tuple[int, int, float]:
            return measure(run_command(size, args.rank, args.dtype, args.iters, args.jobs, args.extra, Path(tmp) / f"r{k}",
                                       share=not args.no_share))

        base_rss, base_pss, _ = one(BASELINE, 0)
        print(f"interpreter (a {BASELINE} run): peak RSS {base_rss / gib:.2f} GiB, tree PSS {base_pss / gib:.2f} GiB")
        sharing = "" if not args.jobs else ", each worker its own data" if args.no_share else ", data shared"
        print(f"{args.dtype}, rank {args.rank}, {args.iters} MU iterations, jobs {args.jobs or 'serial'}{sharing}, "
              f"flags {' '.join(args.extra) or '-'}")
        print("| m x n | Y (GiB) | peak RSS (GiB) | (RSS - interpreter) / Y | tree PSS (GiB) | (PSS - interpreter) / Y "
              "| wall (s) |")
        print("|---|---|---|---|---|---|---|")
        for k, size in enumerate(args.sizes.split(","), start=1):
            m, n = (int(v) for v in size.lower().split("x"))
            data = itemsize * m * n
            rss, pss, wall = one(size, k)
            print(f"| {m} x {n} | {data / gib:.2f} | {rss / gib:.2f} | {(rss - base_rss) / data:.2f} | {pss / gib:.2f} "
                  f"| {(pss - base_pss) / data:.2f} | {wall:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
