"""NALMU on the unrolled-MU chapter's toy NNLS problem: trained layers against plain MU.

The chapter's setting (``nnls_toy`` defaults: rank n=5, m=20 bands, p=500 pixels, sigma=0.1;
K=20 layers; per-component weights per layer, the chapter's ``Ah`` of shape n x K; Adam,
learning rate 1e-2, nu = logspace(-7, 0, K)). Weights are trained on dataset seeds 1000-1003
(1004 held out for choosing the epoch) and evaluated on seeds 0..T-1, which training never saw.
Reported: mean held-out ``||H - H_true||_F^2`` of trained NALMU after its K layers and of MU
after K and after 1000 iterations, from the same initial factors, for two starts: the
chapter's (``H0`` all ones) and the benchmark harness's seeded random factors. Then the
chapter's lessons measured: tied against per-layer weights, ``logspace`` against last-layer
``nu``. One thread, float64.

Run from the repository root::

    python benchmarks/nalmu_toy.py            # about two minutes on one core
    python benchmarks/nalmu_toy.py --epochs 100 --test-seeds 3     # a quick look
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

DATASET = "nnls_toy"
LAYERS = 20
LONG_RUN = 1000


def held_out_errors(registry, solver: str, init: str, seeds: list[int], checkpoints: list[int]) -> dict[int, dict[str, float]]:
    """Mean ``||H - H_true||^2`` and data loss at each checkpoint of ``solver`` over ``seeds``."""
    from proxmf_bench.plugin.selection import select
    from proxmf_bench.problem.start import initial_factors

    variant = select(solver, registry.solvers, registry, "solver")[0]
    factory = registry.get_solver(variant.name).factory
    data = select(DATASET, registry.datasets, registry, "dataset")[0]
    spec = registry.get_dataset(DATASET)
    totals = {k: {"sq_err_H": 0.0, "loss": 0.0} for k in checkpoints}
    for seed in seeds:
        problem = spec.load(data.params, seed, torch.device("cpu"), torch.float64)
        W0, H0 = initial_factors(problem, seed)
        if init == "ones":
            H0 = torch.ones_like(H0)
        algo = factory(**variant.params)
        algo.init(problem, W0, H0)
        for k in range(1, max(checkpoints) + 1):
            algo.step()
            if k in totals:
                W, H = algo.factors()
                totals[k]["sq_err_H"] += float(((H - problem.H_true) ** 2).sum()) / len(seeds)
                totals[k]["loss"] += problem.loss(W, H) / len(seeds)
    return totals


def train(registry, out: Path, init: str, epochs: int, tied: bool = False, nu: str = "logspace"):
    from proxmf_bench.nalmu.train import TrainSettings, train_nalmu

    settings = TrainSettings(epochs=epochs, batch_size=8, lr=1e-2, optimizer="adam", nu=nu)
    return train_nalmu(registry, DATASET, out, layers=LAYERS, shape="component", tied=tied, settings=settings,
                       problems=5, val_fraction=0.2, init=init, force=True)


def main(argv: list[str] | None = None) -> None:
    from proxmf_bench.plugin.registry import load_registry

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=500)
    parser.add_argument("--test-seeds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="keep the weights files here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    registry = load_registry(use_entry_points=False)
    seeds = list(range(args.test_seeds))
    out = args.out or Path(tempfile.mkdtemp(prefix="nalmu-toy-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"nnls_toy (rank 5, m=20, p=500, sigma=0.1), K={LAYERS}, {args.epochs} epochs, "
          f"held-out seeds 0..{len(seeds) - 1}; mean ||H - H_true||_F^2 per problem\n")

    print(f"| start | MU @ {LAYERS} | MU @ {LONG_RUN} | NALMU @ {LAYERS} (trained) | NALMU {LAYERS} + MU to {LONG_RUN} | training |")
    print("|---|---|---|---|---|---|")
    for init in ("ones", "harness"):
        report = train(registry, out / f"toy-{init}.pt", init, args.epochs)
        mu = held_out_errors(registry, "mu", init, seeds, [LAYERS, LONG_RUN])
        nalmu = held_out_errors(registry, f"nalmu[weights={report.path}]", init, seeds, [LAYERS, LONG_RUN])
        print(f"| {'H0 = ones (chapter)' if init == 'ones' else 'harness (random)'} "
              f"| {mu[LAYERS]['sq_err_H']:.4g} | {mu[LONG_RUN]['sq_err_H']:.4g} "
              f"| {nalmu[LAYERS]['sq_err_H']:.4g} | {nalmu[LONG_RUN]['sq_err_H']:.4g} "
              f"| {report.fit.seconds:.1f} s, best epoch {report.fit.best_epoch} |")

    print(f"\nLessons (start H0 = ones): NALMU after {LAYERS} layers on held-out problems\n")
    print("| weights | nu | ||H - H_true||^2 | 1/2 ||Y - W H||^2 | training |")
    print("|---|---|---|---|---|")
    mu = held_out_errors(registry, "mu", "ones", seeds, [LAYERS])[LAYERS]
    print(f"| (MU, all ones) | - | {mu['sq_err_H']:.4g} | {mu['loss']:.4g} | - |")
    for tied in (False, True):
        for nu in ("logspace", "last"):
            start = time.perf_counter()
            report = train(registry, out / f"toy-{'tied' if tied else 'layers'}-{nu}.pt", "ones", args.epochs, tied, nu)
            res = held_out_errors(registry, f"nalmu[weights={report.path}]", "ones", seeds, [LAYERS])[LAYERS]
            print(f"| {'tied' if tied else 'per layer'} | {nu} | {res['sq_err_H']:.4g} | {res['loss']:.4g} "
                  f"| {time.perf_counter() - start:.1f} s |")
    print(f"\nweights files in {out}")


if __name__ == "__main__":
    main()
