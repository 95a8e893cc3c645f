"""The ``proxmf-bench`` command line.

Exit status: 0 success; 2 bad input (one line, ``proxmf-bench: error: ...``; ``--debug`` shows
the traceback instead); 3 ``run`` finished but some cells ended in ``error`` (everything is
written, and the last line names the failed cells; ``--allow-errors`` keeps 0); 75
(``EXIT_INCOMPLETE``) a run left incomplete by its workers (a worker process killed from
outside, a dask cluster that failed): the run directory is written and ``--resume`` finishes
it; 130 (143) Ctrl-C (SIGTERM) during ``run``, which keeps finished cells and writes the run
directory (a second one exits at once); 1 an internal error, a bug of proxmf-bench.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import textwrap
from collections.abc import Sequence

from proxmf_bench.errors import ExecutionError, UserError

PROG = "proxmf-bench"
EXIT_INCOMPLETE = 75  # EX_TEMPFAIL: cells are missing because their workers failed; --resume

# ``run`` finished, wrote everything, but some cells ended in error (CI must see a failure).
EXIT_CELL_ERRORS = 3
# Cells named in the final line of a run with errors; the rest are counted.
SHOWN_FAILURES = 3

RUN_EPILOG = """\
selection syntax:
  name                      a solver or dataset with its default variants
  name[key=value,...]       with parameters set, e.g. "mu[eps=1e-10]"
  name[key=[v1,v2]]         a list expands into one variant per value
  all                       every registered solver (or dataset)
  several items are comma-separated: --solvers "mu,mu[eps=1e-8]"

examples:
  proxmf-bench run --solvers all
  proxmf-bench run --solvers mu --datasets "synthetic[m=500,n=800,rank=20]" --seeds 3
  proxmf-bench run --solvers mu,fista --datasets "file[path=mydata.npy,rank=10]"   # your own matrix
  proxmf-bench run --solvers mu --devices cpu,cuda --dtypes float32,float64 --max-time 5
  proxmf-bench run --solvers all --seeds 10 --jobs 4 --max-time 30 --out results/night
  proxmf-bench run --resume results/night          # after Ctrl-C, a crash or a reboot
  proxmf-bench run --solvers all --backend dask --scheduler tcp://10.0.0.5:8786

nothing lost:
  every cell is written to RUN_DIR/cells/ as it finishes; --resume RUN_DIR runs only the
  cells that have no result yet (grid options not given are taken from RUN_DIR/grid.json;
  given ones must describe the same grid; plugin files it used must be given again). Ctrl-C
  or SIGTERM records the running cell as interrupted and exits non-zero; a second Ctrl-C
  exits at once. One run at a time writes RUN_DIR: another is refused, naming its PID.

fault isolation (--jobs N or --backend dask):
  each cell runs in a worker process; one that crashes it (segfault, os._exit), exceeds
  --max-memory, or runs past --cell-timeout wall seconds (default 2 x --max-time + 60 s;
  no limit without --max-time) is recorded as an error and the grid goes on. A worker
  killed from outside (SIGKILL, SIGTERM: a user, a batch system, the kernel's OOM killer)
  is recorded as worker_lost; --resume runs such cells again. Workers die with this process.

dask:
  a scheduler that cannot be reached or stops answering, a cluster without workers, or a
  worker that cannot import proxmf-bench stops the run after --dask-timeout seconds (30),
  with one line; finished cells are kept and the running ones recorded as worker_lost.

exit status:
  0 every cell ran (diverged counts as a result); 2 bad input, nothing run; 3 the run
  finished but some cells ended in error (everything is written; the last line names them;
  --allow-errors gives 0); 75 incomplete: cells lost with their workers, or the dask
  cluster failed (--resume finishes the run); 130 (143) interrupted by Ctrl-C (SIGTERM),
  finished cells kept.
"""

REPORT_EPILOG = """\
sections per dataset in one dtype (devices and runs overlaid), figures per objective:
  the objective F = loss + penalties (the loss for the nonnegative problem) and (F - f*)/f*
  against iterations and solver time; time to reach 1e-2, 1e-4, 1e-6; ground-truth metrics
  against time; a summary table (final loss and objective, time per iteration, iterations,
  stop reasons, errors) and the time to each tolerance per seed (with the range over
  --repeat timings). f* of each problem (dataset, dtype, seed, objective) is the lowest of
  its reference optimum (saved by 'run --reference' or 'reference RUN_DIR'), --f-star, and
  the best objective of the runs shown; its source is stated on each figure and in
  figures/f_star.csv.
paired comparisons (as 'proxmf-bench compare' prints them, also in figures/verdicts.csv),
  when a run holds variants of one solver (each against the one with the fewest parameters
  given) and for two runs (each solver of both, the first run against the second).
--csv (or csv in --formats): the raw long table of every run, figures/results.csv.

examples:
  proxmf-bench report results/20250101-120000-ab12
  proxmf-bench report results/before results/after -o compare.html
  proxmf-bench report results/night --formats png,csv     # PNG figures and the raw table
"""


def _common_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("plugins and diagnostics")
    group.add_argument("--plugin", action="append", default=[], metavar="FILE",
                       help="load a plugin from a Python file (repeatable); "
                            "files listed in $PROXMF_BENCH_PLUGINS are loaded too")
    group.add_argument("--strict-plugins", action="store_true",
                       help="stop with an error if any plugin fails to import or register")
    group.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    return common


def build_parser() -> argparse.ArgumentParser:
    from proxmf_bench import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Benchmark constrained (proximal) matrix factorization solvers in PyTorch.",
        epilog="Run 'proxmf-bench COMMAND --help' for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = _common_parser()
    for add in (_add_run, _add_reference, _add_list, _add_plugins, _add_check, _add_data, _add_report, _add_compare,
                _add_train):
        add(sub, common)
    return parser


def _add_run(sub, common: argparse.ArgumentParser) -> None:
    run = sub.add_parser(
        "run", parents=[common], help="run solvers x datasets x devices x dtypes x seeds",
        description="Run every selected solver on every selected dataset and record loss "
                    "against iterations and solver time in results/<run-id>/.",
        epilog=RUN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Grid options default to None ("not given"): a new run fills in the documented default,
    # --resume the value saved with the run.
    run.add_argument("--solvers", help="solver selection (default: all)")
    run.add_argument("--datasets", help="dataset selection (default: synthetic); a matrix from a file: "
                                        "file[path=FILE,rank=R] (.npy .npz .csv .tsv .mat .mtx .parquet)")
    run.add_argument("--devices", help="comma-separated: cpu, cuda, cuda:N (default: cpu)")
    run.add_argument("--dtypes", help="comma-separated: float32, float64 (default: float64)")
    run.add_argument("--seeds", metavar="SEEDS",
                     help="N (seeds 0..N-1), a list 0,3,7, a range 10-19, or a mix 0,10-12; the seed of each "
                          "run is recorded (default: 1, i.e. seed 0)")
    run.add_argument("--max-iter", type=int, metavar="K",
                     help="iterations per run (default: 200, or no cap when --max-time is given)")
    run.add_argument("--max-time", type=float, default=None, metavar="SECONDS",
                     help="solver-time limit per run, overshoot at most one iteration; alone (without "
                          "--max-iter) it is the only limit")
    run.add_argument("--tol", type=float, default=None,
                     help="stop when the relative loss change of one iteration falls to TOL "
                          "(the loss is then evaluated every iteration, outside the clock)")
    run.add_argument("--threads", type=int, metavar="N",
                     help="torch threads per run, recorded with the results (default: 1)")
    run.add_argument("--repeat", type=int, metavar="K",
                     help="time every run K times (after an untimed warm-up); the iterates must be identical, "
                          "time_s is the median of the K timings, time_s_min/time_s_max their range (default: 1)")
    run.add_argument("--yt", choices=("auto", "keep", "skip"), default=None,
                     help="whether each problem holds a row-major copy of Y^T besides Y: faster H Y^T on the "
                          "CPU (1.3-1.7x in float32) for one more copy of the data in memory; auto keeps it for "
                          "data up to 256 MiB (default: auto; recorded in the data_layout column)")
    run.add_argument("--out", default=None, metavar="DIR", help="run directory (default: results/<run-id>)")
    run.add_argument("--data-dir", default=None, metavar="DIR",
                     help="where datasets read their files (default: $PROXMF_BENCH_DATA, "
                          "else a per-user cache directory; see 'proxmf-bench data')")
    run.add_argument("--report", action="store_true",
                     help="write the HTML report and figures into the run directory at the end")
    run.add_argument("--allow-errors", action="store_true",
                     help=f"exit with status 0 even if some cells ended in error (default: {EXIT_CELL_ERRORS})")
    run.add_argument("--reference", action="store_true",
                     help="at the end, compute (or take from the cache) the reference optimum f* of every "
                          "problem of the grid and save it with the run (see 'proxmf-bench reference')")
    run.add_argument("--f-star", metavar="FILE",
                     help="known optima, a CSV table with the columns problem,f_star[,source]; saved with the run "
                          "and used by its reports")
    run.add_argument("--cache-dir", metavar="DIR",
                     help="where reference optima are cached (default: $PROXMF_BENCH_CACHE, else the per-user "
                          "cache directory)")
    scale = run.add_argument_group("scale-out, resuming and fault isolation")
    scale.add_argument("--jobs", type=int, metavar="N",
                       help="run cells in N worker processes, each with --threads threads (default: one "
                            "after another in this process); with --backend dask and no --scheduler, the "
                            "size of the local cluster")
    scale.add_argument("--backend", choices=("local", "dask"), default="local",
                       help="where cells run: this machine (default) or a dask.distributed cluster "
                            "(pip install 'proxmf-bench[dask]')")
    scale.add_argument("--scheduler", metavar="ADDRESS",
                       help="dask scheduler address, e.g. tcp://host:8786 (default: a local cluster on 127.0.0.1)")
    scale.add_argument("--dask-timeout", type=float, metavar="SECONDS",
                       help="how long a dask cluster may be unreachable, without workers, or unable to run "
                            "cells before the run stops (default: 30)")
    scale.add_argument("--dashboard", nargs="?", const="127.0.0.1:8787", metavar="ADDRESS",
                       help="serve the local dask cluster's dashboard at ADDRESS (default 127.0.0.1:8787; "
                            "none unless given)")
    scale.add_argument("--resume", metavar="RUN_DIR",
                       help="continue the run in RUN_DIR: keep finished cells, run the others")
    scale.add_argument("--cell-timeout", type=float, metavar="SECONDS",
                       help="wall-clock limit of one cell in a worker process (default: 2 x --max-time "
                            "+ 60; none without --max-time)")
    scale.add_argument("--max-memory", metavar="SIZE",
                       help="memory limit of each worker process, e.g. 4G, at least 512M (Linux; host memory only)")
    run.set_defaults(handler=cmd_run)


REFERENCE_EPILOG = """\
what is computed (see the README, "Problems, objectives and f*"):
  one long float64 solve per problem (dataset, dtype, seed, objective) from the initial
  factors every solver of the problem starts from: the exact optimum (scipy nnls, column by
  column) for a fixed-W NNLS problem, else restarted FISTA then plain PGM until the
  objective stops changing (1e-13 relative), within --max-iter and --max-time. Results are
  cached in <cache>/references/ by problem key and data digest: a second call, in any run,
  reads them; two processes asking at once compute once.

examples:
  proxmf-bench reference --solvers "mu,pgm[prox_H=l1_nonneg,lam_H=0.1]" --datasets samson --seeds 3
  proxmf-bench reference results/night            # the problems of a run; saved in it for its reports
  proxmf-bench reference --datasets nnls_toy --seeds 5 --out f_star.csv
  proxmf-bench report results/night --f-star f_star.csv
"""


def _add_reference(sub, common: argparse.ArgumentParser) -> None:
    ref = sub.add_parser(
        "reference", parents=[common], help="compute and cache the reference optimum f* of each problem of a grid",
        description="Compute (or read from the cache) the reference optimum f* of every problem of a grid: the "
                    "problems of RUN_DIR (then saved in RUN_DIR/reference.csv, where its reports find them), or "
                    "those of the grid the selection options describe.",
        epilog=REFERENCE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ref.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="a run directory: the problems of its grid")
    ref.add_argument("--solvers", help="solver selection, which decides the objectives (default: all)")
    ref.add_argument("--datasets", help="dataset selection (default: synthetic)")
    ref.add_argument("--dtypes", help="comma-separated: float32, float64 (default: float64)")
    ref.add_argument("--seeds", metavar="SEEDS", help="N, a list 0,3,7 or a range 10-19 (default: 1)")
    ref.add_argument("--device", default=None,
                     help="where to compute: cpu, cuda, cuda:N (default: cpu; with RUN_DIR its first device)")
    ref.add_argument("--max-iter", type=int, default=20_000, metavar="K",
                     help="iterations of the main phase per problem (default: 20000)")
    ref.add_argument("--max-time", type=float, default=120.0, metavar="SECONDS",
                     help="wall-clock budget per problem (default: 120)")
    ref.add_argument("--force", action="store_true", help="compute again even where the cache has a result")
    ref.add_argument("--out", metavar="FILE", help="also write the f* table (problem,f_star,source) to FILE")
    ref.add_argument("--cache-dir", metavar="DIR",
                     help="cache directory (default: $PROXMF_BENCH_CACHE, else the per-user cache directory)")
    ref.add_argument("--data-dir", default=None, metavar="DIR",
                     help="where datasets read their files (default: $PROXMF_BENCH_DATA, else the per-user cache)")
    ref.set_defaults(handler=cmd_reference)


def _add_list(sub, common: argparse.ArgumentParser) -> None:
    lst = sub.add_parser(
        "list", parents=[common], help="list solvers, datasets and prox operators with their parameters",
        description="List registered solvers, datasets and prox operators with their parameters.",
    )
    lst.add_argument("kind", nargs="?", choices=("solvers", "datasets", "prox"), help="only this kind")
    lst.set_defaults(handler=cmd_list)


def _add_plugins(sub, common: argparse.ArgumentParser) -> None:
    plug = sub.add_parser(
        "plugins", parents=[common], help="show every plugin, where it came from, and errors",
        description="Show each plugin, its origin (builtin, entry point, file), what it "
                    "registered, and the error of any plugin that failed to load.",
    )
    plug.set_defaults(handler=cmd_plugins)


CHECK_EPILOG = """\
what is checked (seeded inputs, float32 and float64):
  prox      shape/dtype/device kept, input untouched, batched = per element/column/row,
            finite output; with a penalty: output in its domain and the argmin (against
            nearby points and a numerical minimiser); projections: ignore the step,
            idempotent, nearest point (and the obtuse-angle test for convex sets);
            convex: firmly nonexpansive; declared parameter ranges and choices work
  solver    factors of the right shapes, dtype and device, finite; problem data untouched;
            no clock, output or Problem.loss inside init/step; same seed, same factors;
            loss() equals Problem.loss; fixed-W problems keep W or are refused clearly
            (black-box solvers: solve() and its iteration budget)
  dataset   a valid Problem on the requested device and dtype, finite nonnegative data,
            the same problem per seed, fresh tensors per load, ground truth of the right shapes

exit status: 0 when every property holds, 1 when one fails, 2 for bad input

examples:
  proxmf-bench check --plugin my_prox.py           # every spec the file registers
  proxmf-bench check "ridge_nonneg[lam=10]" --plugin my_prox.py
  proxmf-bench check simplex mu synthetic          # built-ins by name
  proxmf-bench check all                           # everything registered
"""


def _add_check(sub, common: argparse.ArgumentParser) -> None:
    check = sub.add_parser(
        "check", parents=[common], help="contract checks of plugins: prox operators, solvers, datasets",
        description="Check plugins against their contracts and print, for each spec, every property\n"
                    "as ok, FAILED (with a counterexample: input, expected, got) or skipped (with why).\n"
                    "By default the specs of every third-party plugin (entry points,\n"
                    "$PROXMF_BENCH_PLUGINS, --plugin files) are checked.",
        epilog=CHECK_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("names", nargs="*", metavar="NAME",
                       help="a prox operator, solver or dataset, optionally with parameters (NAME[key=value,...] "
                            "checks those only), or 'all' for every registered spec (default: those of "
                            "third-party plugins)")
    check.add_argument("--device", default="cpu", help="device of the inputs and problems (default: cpu)")
    check.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default: 0)")
    check.add_argument("--data-dir", default=None, metavar="DIR",
                       help="where datasets read their files (default: $PROXMF_BENCH_DATA, else a per-user cache)")
    check.set_defaults(handler=cmd_check)


def _add_data(sub, common: argparse.ArgumentParser) -> None:
    data = sub.add_parser(
        "data", parents=[common], help="list dataset files and their state; fetch them",
        description="'data' (or 'data list') shows, for every dataset, the files it reads, where\n"
                    "they are expected and whether they are present with the right checksum.\n"
                    "'data fetch NAME...' downloads the files of the named datasets (or 'all')\n"
                    "from their public addresses, verifies their sha256 and puts them in place.",
        epilog=DATA_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data.add_argument("action", nargs="?", choices=("list", "fetch"), default="list",
                      help="list (default) or fetch")
    data.add_argument("names", nargs="*", metavar="NAME", help="datasets to show or fetch (default: all)")
    data.add_argument("--data-dir", default=None, metavar="DIR",
                      help="data directory (default: $PROXMF_BENCH_DATA, else a per-user cache directory)")
    data.add_argument("--mirror", default=None, metavar="URL",
                      help="fetch from URL/<path> (same layout as the data directory) instead of "
                           "each file's registered address")
    data.set_defaults(handler=cmd_data)


def _add_report(sub, common: argparse.ArgumentParser) -> None:
    rep = sub.add_parser(
        "report", help="offline HTML report and PNG/SVG/PDF figures of one or more runs",
        description="Write one self-contained HTML report (figures embedded, nothing fetched\n"
                    "from the network) and the same figures as files. Several run directories\n"
                    "are overlaid on the same axes (e.g. before/after a change, CPU vs GPU).",
        epilog=REPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rep.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories written by 'run'")
    rep.add_argument("-o", "--output", metavar="FILE",
                     help="HTML file (default: RUN_DIR/report.html for one run, ./report.html for several)")
    rep.add_argument("--figures", metavar="DIR",
                     help="figure directory (default: RUN_DIR/figures for one run, "
                          "figures/ beside the HTML file for several)")
    rep.add_argument("--formats", default="png,svg,pdf",
                     help="figure file formats, comma-separated (default: png,svg,pdf); csv writes the raw "
                          "long table of every run as results.csv beside the figures")
    rep.add_argument("--csv", action="store_true", help="also write the raw long table (as --formats ...,csv)")
    rep.add_argument("--f-star", metavar="FILE",
                     help="known optima, a CSV table with the columns problem,f_star[,source], used with the "
                          "references saved in the run directories")
    rep.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    rep.set_defaults(handler=cmd_report)


COMPARE_EPILOG = """\
what is compared, per instance (dataset, dtype, seed; and device and run when both sides
have the same ones), candidate against baseline:
  the final ground-truth metrics (sad_deg, rmse_H, fms: lower is better except fms); the
  time to reach (F - f*)/f* <= 1e-2, 1e-4, 1e-6, each solver within its own problem; the
  final objective, only where both solve the same problem; the time per iteration. Times
  are compared as ratios (x0.5: the candidate takes half the time).
per dataset, and over all of them: wins/ties/losses, the median difference with a 95%
bootstrap interval (seeded), and the two-sided Wilcoxon signed-rank p-value (scipy) from 6
pairs; with fewer the verdict says "not enough seeds".

selections:
  a solver as labelled in the results, or any selection naming it (the parameters in any
  order, or only those that tell it apart); comma-separated for several comparisons (the
  i-th baseline with the i-th candidate, or one with all); SOLVER@RUN picks one run (its
  label or directory). Without --candidate, with two run directories: the baseline solver
  in the first against the same solver in the second.

examples:
  proxmf-bench compare results/enet --baseline "pgm[prox_W=box]" \
      --candidate "pgm[prox_W=box,prox_H=elastic_nonneg,lam_H=0.01,ridge_H=0.01]"
  proxmf-bench compare results/enet --baseline "pgm,fista" --candidate "pgm[prox_H=l1_nonneg],fista[prox_H=l1_nonneg]"
  proxmf-bench compare results/before results/after --baseline pgm --csv verdicts.csv
  proxmf-bench compare results/cpu results/gpu --baseline "mu@cpu" --candidate "mu@gpu" --metric time_per_iter
"""


def _add_compare(sub, common: argparse.ArgumentParser) -> None:
    cmp_ = sub.add_parser(
        "compare", parents=[common], help="paired comparison of a candidate solver against a baseline, over seeds",
        description="Does the candidate beat the baseline, over seeds and datasets, and by how much? Prints a\n"
                    "verdict table (one block per comparison) from the results of one or more runs.",
        epilog=COMPARE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmp_.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories written by 'run'")
    cmp_.add_argument("--baseline", required=True, metavar="SEL", help="the solver(s) compared against")
    cmp_.add_argument("--candidate", metavar="SEL",
                      help="the solver(s) compared (default: the baseline's, in the second of two runs)")
    cmp_.add_argument("--metric", action="extend", nargs="+", metavar="M",
                      help="what to compare: a ground-truth metric (sad_deg, rmse_H, fms...), time_to_TOL "
                           "(time_to_1e-4), objective, time_per_iter (default: all of them)")
    cmp_.add_argument("--csv", metavar="FILE", help="also write the verdict table to FILE as CSV")
    cmp_.add_argument("--f-star", metavar="FILE",
                      help="known optima, a CSV table with the columns problem,f_star[,source], used with the "
                           "references saved in the run directories")
    cmp_.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default: 0)")
    cmp_.set_defaults(handler=cmd_compare)


def _add_train(sub, common: argparse.ArgumentParser) -> None:
    train = sub.add_parser(
        "train", parents=[common], help="train NALMU weights on a dataset with ground truth",
        description="Train the elementwise weights of NALMU (unrolled multiplicative updates) on "
                    "problems with known factors, keep the weights with the lowest held-out loss "
                    "and save them with their configuration; use them with "
                    "--solvers 'nalmu[weights=FILE]'. Ctrl-C stops and saves the best weights so far.",
        epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("model", choices=("nalmu",), help="what to train")
    train.add_argument("--dataset", default="nnls_toy", help="dataset with ground truth (default: nnls_toy)")
    train.add_argument("--out", default="nalmu.pt", metavar="FILE", help="weights file to write (default: nalmu.pt)")
    train.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    arch = train.add_argument_group("model")
    arch.add_argument("--layers", type=int, default=25, metavar="K", help="unrolled layers (default: 25)")
    arch.add_argument("--shape", default="full", choices=("full", "component", "scalar"),
                      help="weights of one layer: full (A_W m x r, A_H r x 1), component (one per "
                           "component), scalar (default: full)")
    arch.add_argument("--tied", action="store_true", help="one set of weights shared by all layers")
    arch.add_argument("--normalize", action="store_true",
                      help="normalise the columns of Y and scale the initial factors to match")
    arch.add_argument("--eps", type=float, default=1e-12, help="floor on entries and denominators (default: 1e-12)")
    opt = train.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, default=300, help="passes over the training problems (default: 300)")
    opt.add_argument("--batch", type=int, default=8, metavar="B", help="training problems per step (default: 8)")
    opt.add_argument("--lr", type=float, default=1e-2, help="learning rate (default: 1e-2)")
    opt.add_argument("--optimizer", default="adamw", choices=("adamw", "adam"), help="(default: adamw)")
    opt.add_argument("--weight-decay", type=float, default=0.0, help="AdamW/Adam weight decay (default: 0)")
    opt.add_argument("--nu", default="logspace", choices=("logspace", "last", "uniform"),
                     help="layer weights of the loss: logspace(-7, 0, K), last layer only, or all ones "
                          "(default: logspace)")
    opt.add_argument("--loss-W", dest="loss_W", default="sq", choices=("sq", "sad"),
                     help="NMF form: loss on W, squared error of unit-norm columns or spectral angle "
                          "(default: sq)")
    opt.add_argument("--loss-H", dest="loss_H", default="sq", choices=("sq", "sum-to-one"),
                     help="loss on H: squared error (in the NMF form after putting H on the ground "
                          "truth's scale), or squared error of column proportions (default: sq)")
    opt.add_argument("--seed", type=int, default=0, help="seed of the batch order and patch split (default: 0)")
    source = train.add_argument_group("training data")
    source.add_argument("--split", default="seeds", choices=("seeds", "pixels"),
                      help="one problem per dataset seed, or pixel patches of one problem (default: seeds)")
    source.add_argument("--problems", type=int, default=20, help="problems with --split seeds (default: 20)")
    source.add_argument("--first-seed", type=int, default=1000,
                      help="first dataset seed used for training (default: 1000, so that 'run --seeds N' "
                           "evaluates on unseen problems)")
    source.add_argument("--patch-size", type=int, default=500, help="pixels per patch with --split pixels (default: 500)")
    source.add_argument("--val-fraction", type=float, default=0.2, help="share of problems held out (default: 0.2)")
    source.add_argument("--init", default="harness", choices=("harness", "ones"),
                      help="initial factors: the benchmark harness's seeded random ones, or an all-ones H0 "
                           "as in the chapter's toy (default: harness, which 'run' uses)")
    source.add_argument("--dtype", default="float64", choices=("float32", "float64"), help="(default: float64)")
    source.add_argument("--threads", type=int, default=1, metavar="N", help="torch threads (default: 1)")
    train.set_defaults(handler=cmd_train)


TRAIN_EPILOG = """\
examples:
  proxmf-bench train nalmu --dataset nnls_toy --layers 20 --shape component --out toy.pt
  proxmf-bench run --solvers "mu,nalmu[weights=toy.pt]" --datasets nnls_toy --seeds 5
  proxmf-bench train nalmu --dataset "synthetic[m=50,n=200,rank=4]" --normalize --loss-W sad
  proxmf-bench train nalmu --dataset samson --split pixels --patch-size 475 --layers 25 \\
      --loss-W sad --loss-H sum-to-one --lr 1e-3 --epochs 100
"""


DATA_EPILOG = """\
data directory, first match wins: --data-dir, $PROXMF_BENCH_DATA, a per-user cache
directory (~/.cache/proxmf-bench on Linux). Files sit under it as <folder>/<file>, e.g.
samson/Samson.mat and jasper_ridge/Jasper.mat.

examples:
  proxmf-bench data
  proxmf-bench data fetch samson jasper
  proxmf-bench data fetch all --data-dir ~/hsi
  PROXMF_BENCH_DATA=~/hsi proxmf-bench run --solvers mu --datasets samson,jasper
"""


def _registry(args: argparse.Namespace):
    from proxmf_bench.plugin.registry import load_registry

    registry = load_registry(args.plugin, strict=args.strict_plugins)
    for info in registry.failed:
        print(f"{PROG}: warning: plugin {info.name!r} ({info.origin}) failed: {info.error}", file=sys.stderr)
    return registry


def cmd_run(args: argparse.Namespace) -> int:
    from proxmf_bench.run.runner import RunOptions, run_benchmark

    options = RunOptions(
        solvers=args.solvers, datasets=args.datasets, devices=args.devices, dtypes=args.dtypes, seeds=args.seeds,
        max_iter=args.max_iter, max_time=args.max_time, tol=args.tol, threads=args.threads, out=args.out,
        resume=args.resume, data_dir=args.data_dir, jobs=args.jobs, backend=args.backend, scheduler=args.scheduler,
        cell_timeout=args.cell_timeout, max_memory=args.max_memory, dask_timeout=args.dask_timeout,
        dashboard=args.dashboard, plugin_files=args.plugin, strict_plugins=args.strict_plugins, repeat=args.repeat,
        yt=args.yt, reference=args.reference, cache_dir=args.cache_dir, f_star=args.f_star,
    )
    observer_factory = None
    if sys.stderr.isatty():
        from proxmf_bench.run.progress import ProgressBars

        observer_factory = ProgressBars
    output = run_benchmark(options, registry=_registry(args), observer_factory=observer_factory,
                           command=[PROG, *sys.argv[1:]])
    for warning in output.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    _print_summary(output)
    if args.report:
        if output.frame.empty:
            print(f"{PROG}: warning: no results recorded, so no report", file=sys.stderr)
        else:
            _make_report([output.run_dir])
    if output.interrupted:
        print(f"{PROG}: interrupted; finished cells were kept in {output.run_dir}; "
              f"continue with: {PROG} run --resume {output.run_dir}", file=sys.stderr)
        return 128 + int(output.signal or signal.SIGINT)
    if output.failed_cells:
        print(_failure_line(output.failed_cells, output.meta["cells"]["total"], args.allow_errors), file=sys.stderr)
    if output.lost:  # an incomplete run matters more than errors: it is not finished
        print(f"{PROG}: {len(output.lost)} cell(s) lost their worker process; run them again with: "
              f"{PROG} run --resume {output.run_dir}", file=sys.stderr)
        return EXIT_INCOMPLETE
    if output.failed_cells:
        return 0 if args.allow_errors else EXIT_CELL_ERRORS
    return 0


def _failure_line(failed: list[str], total: int, allowed: bool) -> str:
    """One line naming the first failed cells and counting the rest."""
    shown = "; ".join(failed[:SHOWN_FAILURES]) + (f"; and {len(failed) - SHOWN_FAILURES} more"
                                                   if len(failed) > SHOWN_FAILURES else "")
    status = "--allow-errors: exit status 0" if allowed else f"exit status {EXIT_CELL_ERRORS}"
    return f"{PROG}: {len(failed)} of {total} cells ended in error ({status}): {shown}"


def cmd_reference(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    import torch

    from proxmf_bench.plugin.data_files import use_data_dir
    from proxmf_bench.results.f_star import REFERENCE_FILE, write_f_star
    from proxmf_bench.run.grid import GridSpec, parse_devices, parse_dtypes, parse_seeds
    from proxmf_bench.run.reference import Budget, grid_references, reference_table
    from proxmf_bench.run.store import RunStore

    budget = Budget(max_iter=args.max_iter, max_time=args.max_time)
    registry = _registry(args)
    if args.run_dir is not None:
        given = [f"--{n}" for n in ("solvers", "datasets", "dtypes", "seeds") if getattr(args, n) is not None]
        if given:
            raise UserError(f"{', '.join(given)}: the grid of {args.run_dir} is used; give either RUN_DIR or a selection")
        spec = GridSpec.from_dict(RunStore(Path(args.run_dir)).read_manifest()["grid"])
        if args.device is not None:
            spec = dataclasses.replace(spec, devices=tuple(parse_devices(args.device)))
    else:
        spec = GridSpec(solvers=args.solvers or "all", datasets=args.datasets or "synthetic",
                        devices=tuple(parse_devices(args.device or "cpu")),
                        dtypes=tuple(parse_dtypes(args.dtypes or "float64")), seeds=parse_seeds(args.seeds or 1),
                        max_iter=1, max_time=None, tol=None, threads=1)
    cells = spec.cells(registry)
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)

    def show(item, reference) -> None:
        cell = item.cell
        where = f"{cell.dataset.label} {cell.dtype} seed {cell.seed} [{item.name}]"
        if reference is None:
            print(f"{where}: no reference: {item.note}")
        else:
            state = "cached" if reference.cached else f"computed in {reference.seconds:.1f} s"
            print(f"{where}: f* = {reference.f_star:.10g} ({reference.source}; {state})", flush=True)

    with use_data_dir(args.data_dir):
        references = grid_references(registry, cells, budget, args.cache_dir, force=args.force,
                                     progress=sys.stderr.isatty(), on_result=show)
    table = reference_table(references)
    if args.run_dir is not None:
        print(f"-> {write_f_star(Path(args.run_dir) / REFERENCE_FILE, table)}")
    if args.out is not None:
        print(f"-> {write_f_star(Path(args.out), table)}")
    return 0


def _print_summary(output) -> None:
    import pandas as pd

    frame = output.frame
    last = frame.sort_values("iteration").groupby(
        ["dataset", "solver", "device", "dtype", "seed"], sort=False
    ).tail(1)
    table = last[["dataset", "solver", "device", "dtype", "seed", "iteration", "time_s", "loss", "stop_reason"]]
    table = table.sort_values(["dataset", "device", "dtype", "seed", "loss"])
    with pd.option_context("display.width", 160, "display.max_rows", 200, "display.max_colwidth", 40):
        print(table.to_string(index=False))
    cells = output.meta["cells"]
    print(f"\n{cells['finished']}/{cells['total']} cells, {len(frame)} rows -> {output.run_dir}")
    for error in output.errors:
        print(f"{PROG}: warning: error in {error}", file=sys.stderr)
    for lost in output.lost:
        print(f"{PROG}: warning: worker lost in {lost}", file=sys.stderr)


def _make_report(run_dirs, output=None, figures=None, formats="png,svg,pdf", f_star=None) -> None:
    from proxmf_bench.results.report import build_report, parse_formats

    report = build_report(run_dirs, output=output, figures_dir=figures, formats=parse_formats(formats),
                          progress=sys.stderr.isatty(), f_star=f_star)
    n_figures = sum(1 for p in report.files if p.suffix != ".csv")
    tables = ", ".join(p.name for p in report.files if p.suffix == ".csv")
    print(f"report: {report.html_path} ({n_figures} figure files and {tables} in {report.figures_dir})")


def cmd_report(args: argparse.Namespace) -> int:
    formats = args.formats + (",csv" if args.csv else "")
    _make_report(args.run_dirs, args.output, args.figures, formats, args.f_star)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from proxmf_bench.plugin.selection import select
    from proxmf_bench.results.compare import compare_runs, format_verdicts, write_verdicts

    registry = None

    def resolve(item: str) -> list[tuple[str, str]]:  # the registry is loaded only if a label does not match
        nonlocal registry
        registry = registry or _registry(args)
        return [(v.name, v.params_json()) for v in select(item, registry.solvers, registry, "solver")]

    verdicts = compare_runs(args.run_dirs, args.baseline, args.candidate, args.metric, args.f_star, resolve, args.seed)
    print(format_verdicts(verdicts))
    if args.csv is not None:
        print(f"-> {write_verdicts(args.csv, verdicts)}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    registry = _registry(args)
    sections = [
        ("solvers", registry.solvers, "solvers"),
        ("datasets", registry.datasets, "datasets"),
        ("prox", registry.prox, "prox operators"),
    ]
    for table_name, table, title in sections:
        if args.kind and args.kind != table_name:
            continue
        print(f"{title}:")
        if not table:
            print("  (none)")
        for name in sorted(table):
            spec = table[name]
            owner = registry.owner.get((table_name, name), "?")
            print(f"  {name}  - {spec.summary or 'no description'}  [plugin {owner}]")
            grid = getattr(spec, "grid", {})
            if grid:
                print(f"      default grid: {dict(grid)}")
            for param in spec.params:
                print(textwrap.fill(param.describe(), width=100, initial_indent="      ", subsequent_indent="        "))
        print()
    for info in registry.skipped:
        print(f"not available: plugin {info.name}: {info.skipped}")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    registry = _registry(args)
    for info in registry.plugins:
        status = "FAILED" if not info.ok else "skipped" if info.skipped else "ok"
        print(f"{info.name}  [{status}]  {info.origin}")
        for kind in ("solvers", "datasets", "prox"):
            names = getattr(info, kind)
            if names:
                print(f"    {kind}: {', '.join(names)}")
        if info.error:
            print(f"    error: {info.error}")
        if info.skipped:
            print(f"    skipped: {info.skipped}")
    n_bad = len(registry.failed)
    print(f"\n{len(registry.plugins)} plugins, {n_bad} failed, {len(registry.skipped)} skipped")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    import torch

    from proxmf_bench.plugin.data_files import use_data_dir
    from proxmf_bench.plugin.registry import load_registry
    from proxmf_bench.testing.plugins import broken_plugin_report, check_target, header, plan

    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise UserError(f"--device: {args.device!r} is not a device (cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    registry = load_registry(args.plugin, strict=args.strict_plugins)
    work = plan(registry, args.names)
    reports = [broken_plugin_report(info) for info in work.broken]
    for report in reports:
        print(report.format(), end="\n\n", flush=True)
    with use_data_dir(args.data_dir):
        for target in work.targets:
            report = check_target(target, registry, device=device, seed=args.seed)
            reports.append(report)
            print(report.format(header(target)), end="\n\n", flush=True)
    for info in registry.skipped:
        print(f"not available: plugin {info.name}: {info.skipped}")
    failed = [r for r in reports if not r.ok]
    n_props = sum(len(r.failures) for r in failed)
    print(f"{len(reports)} checked: {len(reports) - len(failed)} passed, {len(failed)} failed"
          + (f" ({n_props} propert{'y' if n_props == 1 else 'ies'}: {', '.join(f'{r.kind} {r.name}' for r in failed)})"
             if failed else ""))
    return 1 if failed else 0


def cmd_data(args: argparse.Namespace) -> int:
    from proxmf_bench.plugin.data_files import fetch_datasets, print_inventory

    registry = _registry(args)
    if args.action == "fetch":
        return fetch_datasets(registry, args.names, args.data_dir, args.mirror, progress=sys.stderr.isatty())
    if args.mirror is not None:
        raise UserError("--mirror only applies to 'data fetch'")
    return print_inventory(registry, args.names, args.data_dir)

def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from proxmf_bench.nalmu.train import TrainSettings, train_nalmu

    registry = _registry(args)
    if args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch, lr=args.lr, optimizer=args.optimizer,
                             weight_decay=args.weight_decay, nu=args.nu, loss_W=args.loss_W,
                             loss_H=args.loss_H, seed=args.seed)
    report = train_nalmu(
        registry, args.dataset, args.out, layers=args.layers, shape=args.shape, tied=args.tied,
        normalize=args.normalize, eps=args.eps, settings=settings, split=args.split, problems=args.problems,
        val_fraction=args.val_fraction, patch_size=args.patch_size, first_seed=args.first_seed,
        dtype=getattr(torch, args.dtype), init=args.init, force=args.force, progress=sys.stderr.isatty(),
        command=[PROG, *sys.argv[1:]],
    )
    cfg, fit = report.config, report.fit
    print(f"NALMU ({cfg.form}, K={cfg.layers}, {cfg.shape}, {'tied' if cfg.tied else 'per layer'}) on "
          f"{report.data.description['dataset']}: {len(report.data.train)} training / "
          f"{len(report.data.val)} held-out problems, {fit.epochs_run} epochs in {fit.seconds:.1f} s, "
          f"best epoch {fit.best_epoch}")
    for name, after in report.trained.items():
        print(f"  held-out {name:9s} untrained (MU) {report.untrained[name]:.6g} -> trained {after:.6g}")
    print(f"weights -> {report.path}")
    if fit.interrupted:
        print(f"{PROG}: interrupted; the best weights so far (epoch {fit.best_epoch}) were saved", file=sys.stderr)
        return 130
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    # Paths and arguments that are not valid UTF-8 arrive as surrogate escapes: print them
    # escaped instead of failing with UnicodeEncodeError.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False) or os.environ.get("PROXMF_BENCH_DEBUG") == "1"
    try:
        return args.handler(args)
    except ExecutionError as exc:
        if debug:
            raise
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE
    except UserError as exc:
        if debug:
            raise
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        print(f"{PROG}: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
