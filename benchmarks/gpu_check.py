"""The GPU check: the CUDA tests, then the table a user needs, in one command under 5 minutes.

Run ``python -m benchmarks.gpu_check`` on a CUDA machine. It

1. runs the CUDA tests (``pytest -m cuda``: every stepped solver on the GPU against the CPU,
   float32 runs, the harness's synchronised clock, the layouts, the HALS reference);
2. prints, for ``mu``, ``pgm``, ``fista`` and ``hals`` on synthetic 20000 x 10000 rank 50 in
   float32 (``--size``, ``--dtype``): the per-iteration time in the harness (which synchronises
   before reading the clock), the same iterations of the bare loop timed with a synchronisation
   before the clock is read and without one (the second measures only how fast the kernels are
   queued: that the harness's figure is the first shows it syncs), the harness over the synced
   bare loop, the speed-up over one CPU thread (bare loop, or the solver for ``hals``, a few
   iterations on the CPU), and the peak GPU memory of the harness run (the problem's ``Y`` and
   ``Y^T`` included: 1.6 GB of the 20000 x 10000 float32 problem);
3. records the TF32 settings (``torch.backends.cuda.matmul.allow_tf32``, cuDNN's, and
   ``torch.get_float32_matmul_precision()``): with TF32 on, float32 products are faster and
   less accurate, so a table means nothing without them.

Without a CUDA device it says so and exits 0 (a test runs it that way). ``--no-tests`` skips
step 1; ``--cpu-iterations 0`` skips the CPU column.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.floor_table import BARE, measure_solver

REPO = Path(__file__).resolve().parents[1]
SOLVERS = ("mu", "pgm", "fista", "hals")


def tf32_settings() -> str:
    return (f"TF32: cuda.matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}, "
            f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
            f"float32_matmul_precision={torch.get_float32_matmul_precision()}")


def run_cuda_tests() -> int:
    """``pytest -m cuda`` in a subprocess; its exit status."""
    print("== CUDA tests: python -m pytest -q -p no:cacheprovider -m cuda tests", flush=True)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", "tests"],
                          cwd=REPO).returncode


def measure_bare_loop(name: str, problem, W0: torch.Tensor, H0: torch.Tensor, iters: int, sync: bool) -> float:
    """Seconds per iteration of bare loop ``name``; ``sync=False`` reads the clock before the
    queued kernels have finished (the launch rate, not the speed)."""
    W, H = W0.clone(), H0.clone()
    torch.cuda.synchronize()
    tic = time.perf_counter()
    BARE[name](problem.Y, problem.Yt, W, H, iters)
    if sync:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - tic
    torch.cuda.synchronize()
    return elapsed / iters


def cpu_time(registry, name: str, variant, dataset, problem, start, iters: int) -> float:
    """Seconds per iteration on one CPU thread: the bare loop, or the solver when there is none."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cpu = problem.to("cpu", problem.dtype)
        W0, H0 = start.W0.cpu(), start.H0.cpu()
        if name in BARE:
            W, H = W0.clone(), H0.clone()
            tic = time.perf_counter()
            BARE[name](cpu.Y, cpu.Yt, W, H, iters)
            return (time.perf_counter() - tic) / iters
        from proxmf_bench.problem.start import StartingPoint

        return measure_solver(registry, variant, dataset, cpu, StartingPoint(cpu, W0, H0), iters)
    finally:
        torch.set_num_threads(threads)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="20000x10000x50", help="m x n x rank (default 20000x10000x50)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--seconds", type=float, default=1.0, help="GPU seconds per timed run (default 1)")
    parser.add_argument("--cpu-iterations", type=int, default=2, help="iterations timed on one CPU thread")
    parser.add_argument("--no-tests", action="store_true", help="skip the CUDA tests")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(f"no CUDA device (torch {torch.__version__}, built with CUDA {torch.version.cuda}): "
              "nothing to check here; run this on a machine with a GPU")
        return 0

    from proxmf_bench.plugin.registry import load_registry
    from proxmf_bench.plugin.selection import select
    from proxmf_bench.problem.start import StartingPoint, initial_factors

    device = torch.device("cuda")
    print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    print(tf32_settings(), flush=True)
    status = 0 if args.no_tests else run_cuda_tests()

    m, n, r = (int(v) for v in args.size.split("x"))
    registry = load_registry(use_entry_points=False)
    dataset = select(f"synthetic[m={m},n={n},rank={r}]", registry.datasets, registry, "dataset")[0]
    tic = time.perf_counter()
    problem = registry.get_dataset("synthetic").load(dataset.params, 0, device, getattr(torch, args.dtype))
    W0, H0 = initial_factors(problem, 0)
    start = StartingPoint(problem, W0, H0)
    print(f"== {m} x {n} rank {r} {args.dtype} on {device} (data made in {time.perf_counter() - tic:.1f} s)")
    print(f"{'solver':>6} {'harness ms/it':>14} {'bare synced':>12} {'bare unsynced':>14} {'harness/bare':>13}"
          f" {'CPU 1 thread ms/it':>19} {'speed-up':>9} {'peak GPU MiB':>13}", flush=True)
    for name in SOLVERS:
        variant = select(name, registry.solvers, registry, "solver")[0]
        probe = measure_solver(registry, variant, dataset, problem, start, 3)
        iters = max(5, min(2000, int(args.seconds / max(probe, 1e-6))))
        torch.cuda.reset_peak_memory_stats(device)
        harness = min(measure_solver(registry, variant, dataset, problem, start, iters) for _ in range(2))
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        if name in BARE:
            synced = min(measure_bare_loop(name, problem, W0, H0, iters, sync=True) for _ in range(2))
            unsynced = measure_bare_loop(name, problem, W0, H0, iters, sync=False)
            bare = f"{1e3 * synced:12.3f} {1e3 * unsynced:14.3f} {harness / synced:13.2f}"
        else:
            bare = f"{'-':>12} {'-':>14} {'-':>13}"
        if args.cpu_iterations > 0:
            cpu = cpu_time(registry, name, variant, dataset, problem, start, args.cpu_iterations)
            reference = synced if name in BARE else harness
            cpu_cols = f"{1e3 * cpu:19.1f} {cpu / reference:8.1f}x"
        else:
            cpu_cols = f"{'-':>19} {'-':>9}"
        print(f"{name:>6} {1e3 * harness:14.3f} {bare} {cpu_cols} {peak:13.0f}", flush=True)
    print(tf32_settings())
    if status:
        print(f"the CUDA tests failed (pytest exit status {status})")
    return status


if __name__ == "__main__":
    sys.exit(main())
