"""NALMU (K=25) against MU on the Samson scene: SAD and abundance RMSE on held-out pixel patches.

Samson (156 bands, 95 x 95 pixels, 3 endmembers: soil, tree, water) is the registered
``samson`` dataset (``proxmf-bench data`` says where its file is expected; the shared copy
beside the repository is used when ``PROXMF_BENCH_DATA`` is unset). Its pixels are in
column-major order, so consecutive pixel blocks of 475 are
vertical strips of 5 image columns: 19 patches. Five of them (chosen by ``--seed``) are the
test set and never used in training; of the other 14, three pick the best epoch and eleven
train. Every method starts each test patch from the same seeded random factors of the
benchmark harness (``initial_factors``), as in ``proxmf-bench run``.

Ground truth: the abundance maps (nonnegative, summing to one) and the endmember spectra,
which the file stores max-normalised; each spectrum is rescaled here by the least-squares
factor that best explains the data, which changes no angle and puts the spectra on the
data's scale. Metrics after matching components to the ground truth (Hungarian algorithm on
spectral angles):

- SAD: mean spectral angle between estimated and true endmembers, degrees;
- abundance RMSE: each row of ``H`` is put on the ground truth's scale (times
  ``||w_k|| / ||w_k^*||``, which leaves ``W H`` unchanged), then every pixel's abundances are
  divided by their sum (the sum-to-one convention of unmixing) and compared with the maps.

Run from the repository root (one thread, float64; about three minutes)::

    python benchmarks/nalmu_samson.py
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

LAYERS = 25
LONG_RUN = 1000
PATCH = 475
N_TEST, N_VAL = 5, 3


def samson_problem(registry):
    """The registered Samson scene in float64, endmembers rescaled to the data's scale."""
    from proxmf_bench.problem.problem import Problem

    scene = registry.get_dataset("samson").load({}, 0, torch.device("cpu"), torch.float64)
    Y, G, A = scene.Y, scene.W_true, scene.H_true
    # scales s minimising ||Y - G diag(s) A||_F: normal equations (G^T G * A A^T) s = diag(G^T Y A^T)
    s = torch.linalg.solve((G.T @ G) * (A @ A.T), torch.diagonal(G.T @ Y @ A.T))
    return Problem(Y=Y, rank=scene.rank, W_true=G * s, H_true=A, name="samson")


def patches(problem, seed: int):
    from proxmf_bench.nalmu.train import pixel_patches

    parts = pixel_patches(problem, PATCH)
    order = torch.randperm(len(parts), generator=torch.Generator().manual_seed(seed)).tolist()
    chosen = [parts[i] for i in order]
    return chosen[:N_TEST], chosen[N_TEST:N_TEST + N_VAL], chosen[N_TEST + N_VAL:]


def unmixing_metrics(problem, W: torch.Tensor, H: torch.Tensor) -> tuple[float, float]:
    """``(SAD in degrees, RMSE of sum-to-one abundances)`` after matching components."""
    from proxmf_bench.problem.metrics import match_components

    perm, angles = match_components(W, problem.W_true)
    index = torch.from_numpy(perm)
    scale = W.double()[:, index].norm(dim=0) / problem.W_true.norm(dim=0)
    Hs = H.double()[index] * scale[:, None]
    abundances = Hs / Hs.sum(dim=0, keepdim=True).clamp_min(1e-300)
    return float(np.mean(angles)), float(torch.sqrt(torch.mean((abundances - problem.H_true) ** 2)))


def evaluate(factory, params: dict, test, inits: int, checkpoints: list[int]) -> dict[int, tuple[float, float]]:
    """Mean (SAD, RMSE) over test patches and ``inits`` starts each, at each checkpoint."""
    from proxmf_bench.problem.start import initial_factors

    sums = {k: np.zeros(2) for k in checkpoints}
    runs = len(test) * inits
    for index, (patch, _) in enumerate(test):
        for start in range(inits):
            W0, H0 = initial_factors(patch, index * 100 + start)
            algo = factory(**params)
            algo.init(patch, W0, H0)
            for k in range(1, max(checkpoints) + 1):
                algo.step()
                if k in sums:
                    sums[k] += np.array(unmixing_metrics(patch, *algo.factors())) / runs
    return {k: (float(v[0]), float(v[1])) for k, v in sums.items()}


def train(problem, train_patches, val_patches, args, out: Path):
    from proxmf_bench.nalmu.model import NALMU, NALMUConfig, save_weights
    from proxmf_bench.nalmu.train import TrainSettings, fit, make_example

    def make(parts):  # every patch with args.inits different starting points
        return [make_example(p, i * 100 + j, src) for i, (p, src) in enumerate(parts)
                for j in range(args.inits)]

    config = NALMUConfig(layers=LAYERS, rank=problem.rank, m=problem.shape[0], shape=args.shape,
                         tied=args.tied, normalize=args.normalize)
    model = NALMU(config)
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch, lr=args.lr, optimizer="adamw",
                             nu=args.nu, loss_W=args.loss_W, loss_H=args.loss_H)
    result = fit(model, make(train_patches), make(val_patches), settings)
    path = save_weights(out, model, {"data": "Samson.mat pixel patches", "training": vars(args) | {"out": str(out)}})
    return path, result


def main(argv: list[str] | None = None) -> None:
    from proxmf_bench.plugin.registry import load_registry
    from proxmf_bench.solvers.mu import MU
    from proxmf_bench.solvers.nalmu import NALMUSolver, resolve_params

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--inits", type=int, default=2, help="random starts per training patch")
    parser.add_argument("--test-inits", type=int, default=4, help="random starts per test patch")
    parser.add_argument("--shape", default="full", choices=("full", "component", "scalar"))
    parser.add_argument("--tied", action="store_true")
    parser.add_argument("--normalize", action="store_true")
    parser.add_argument("--nu", default="logspace", choices=("logspace", "last", "uniform"))
    parser.add_argument("--loss-W", dest="loss_W", default="sad", choices=("sq", "sad"))
    parser.add_argument("--loss-H", dest="loss_H", default="sum-to-one", choices=("sq", "sum-to-one"))
    parser.add_argument("--seed", type=int, default=0, help="which patches are held out")
    parser.add_argument("--out", type=Path, default=Path("nalmu-samson.pt"), help="weights file to write")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)

    if "PROXMF_BENCH_DATA" not in os.environ:
        shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "hsi"
        if shared.is_dir():
            os.environ["PROXMF_BENCH_DATA"] = str(shared)
    problem = samson_problem(load_registry(use_entry_points=False))
    test, val, train_patches = patches(problem, args.seed)
    start = time.perf_counter()
    path, result = train(problem, train_patches, val, args, args.out)
    seconds = time.perf_counter() - start
    print(f"Samson, K={LAYERS}, {args.shape} weights{' (tied)' if args.tied else ''}, nu={args.nu}, "
          f"loss_W={args.loss_W}, loss_H={args.loss_H}, normalize={args.normalize}, lr={args.lr}: "
          f"{len(train_patches)} training / {len(val)} validation / {len(test)} test patches of {PATCH} pixels, "
          f"{args.inits} starts per training patch; {result.epochs_run} epochs in {seconds:.0f} s, "
          f"best epoch {result.best_epoch}. Test: mean over {len(test)} patches x {args.test_inits} starts.\n")
    mu = evaluate(MU, {}, test, args.test_inits, [LAYERS, LONG_RUN])
    nalmu = evaluate(NALMUSolver, resolve_params({"weights": str(path)}), test, args.test_inits, [LAYERS, LONG_RUN])
    print("| method | SAD (deg) | abundance RMSE |")
    print("|---|---|---|")
    rows = [(f"MU, {LAYERS} iterations", mu[LAYERS]), (f"MU, {LONG_RUN} iterations", mu[LONG_RUN]),
            (f"NALMU, {LAYERS} trained layers", nalmu[LAYERS]),
            (f"NALMU, {LAYERS} layers + MU to {LONG_RUN}", nalmu[LONG_RUN])]
    for name, (sad, rmse) in rows:
        print(f"| {name} | {sad:.2f} | {rmse:.4f} |")
    print(f"\nweights -> {path}")


if __name__ == "__main__":
    main()
