r"""Supervised training of NALMU weights (``proxmf-bench train nalmu``).

Given training problems ``(Y_i, W_i^*, H_i^*)`` and initial factors, the weights minimise

.. math:: \mathcal L = \frac1B \sum_{i} \sum_{k=1}^{K} \nu_k
          \big(\ell_W(W_i^k, W_i^*) + \ell_H(H_i^k, H_i^*)\big)

over the iterates of the unrolled layers (Kervazo and Cohen). ``nu`` schedules: ``logspace``
(:math:`\nu = \mathrm{logspace}(-7, 0, K)`, the chapter's choice), ``last`` (only the last
layer counts) and ``uniform``. Losses are means over entries:

- NNLS form (``W`` fixed and known): :math:`\ell_H` only, on ``H`` as it is.
- NMF form: components are first matched to the ground truth (Hungarian algorithm on the
  spectral angles, per layer and problem, as the ``sad_deg`` metric does) and each row of
  ``H`` is put on the ground truth's scale by ``||w_k|| / ||w_k^*||`` (as ``rmse_H`` does);
  then :math:`\ell_W` is either ``sq``, the mean squared error of the unit-norm columns, or
  ``sad``, the mean spectral angle in radians.
- :math:`\ell_H` is ``sq``, the mean squared error of ``H``, or ``sum-to-one``, that of ``H``
  and ``H^*`` with every column divided by its sum (the proportions of each pixel, as
  abundances are compared in unmixing; it ignores the scale that the NMF form leaves free).

Training problems come from any registered dataset with ground truth: ``split=seeds`` loads
one problem per dataset seed (``first_seed``, ``first_seed + 1``, ...: by default 1000 on, so
``proxmf-bench run --seeds N``, which uses seeds 0..N-1, evaluates on unseen problems);
``split=pixels`` loads one problem and cuts its pixels (columns) into consecutive patches, for
a real scene. A fraction of the problems is held out for validation; the weights with the
lowest validation loss are kept (the untrained all-ones weights, i.e. MU, count as epoch 0,
so the result is never worse than MU on the validation set). Initial factors (``init``) are
those the benchmark harness would use for the same problem
(:func:`~proxmf_bench.problem.start.initial_factors`), or, with ``init=ones``, the same ``W0`` and
an all-ones ``H0`` as in the chapter's toy example. The multiplicative step on ``H`` forgets
the scale of each column of ``H0`` but not its direction, and weights trained from one start
need not help from another: ``nalmu[weights=FILE]`` in ``proxmf-bench run`` starts from the
harness's factors like every solver, so train with ``init=harness`` for those comparisons.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from proxmf_bench.errors import UserError
from proxmf_bench.nalmu.model import NALMU, NALMUConfig, save_weights
from proxmf_bench.plugin.registry import Registry
from proxmf_bench.plugin.selection import select
from proxmf_bench.problem.problem import Problem
from proxmf_bench.problem.start import initial_factors

NU_SCHEDULES = ("logspace", "last", "uniform")
W_LOSSES = ("sq", "sad")
H_LOSSES = ("sq", "sum-to-one")
OPTIMIZERS = ("adamw", "adam")
SPLITS = ("seeds", "pixels")
INITS = ("harness", "ones")


@dataclass(frozen=True)
class Example:
    """One training problem with its ground truth and the initial factors it starts from."""

    Y: torch.Tensor
    W_true: torch.Tensor
    H_true: torch.Tensor
    W0: torch.Tensor
    H0: torch.Tensor
    source: str


@dataclass(frozen=True)
class Batch:
    """Examples of one shape stacked along a leading axis."""

    Y: torch.Tensor
    W_true: torch.Tensor
    H_true: torch.Tensor
    W0: torch.Tensor
    H0: torch.Tensor

    @classmethod
    def of(cls, examples: Sequence[Example]) -> Batch:
        shapes = {tuple(e.Y.shape) for e in examples}
        if len(shapes) != 1:
            raise UserError(f"training problems must share one shape, got {sorted(shapes)}")
        return cls(*(torch.stack([getattr(e, f) for e in examples]) for f in ("Y", "W_true", "H_true", "W0", "H0")))


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings of :func:`fit` (all recorded in the weights file)."""

    epochs: int = 300
    batch_size: int = 8
    lr: float = 1e-2
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    nu: str = "logspace"
    loss_W: str = "sq"
    loss_H: str = "sq"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise UserError(f"--epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise UserError(f"--batch must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise UserError(f"--lr must be > 0, got {self.lr}")
        if not self.weight_decay >= 0:
            raise UserError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        for name, value, allowed in (("--nu", self.nu, NU_SCHEDULES), ("--loss-W", self.loss_W, W_LOSSES),
                                     ("--loss-H", self.loss_H, H_LOSSES), ("--optimizer", self.optimizer, OPTIMIZERS)):
            if value not in allowed:
                raise UserError(f"{name} {value!r} is not one of {', '.join(allowed)}")


def nu_schedule(name: str, layers: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Layer weights ``nu_1..nu_K``: ``logspace(-7, 0, K)``, last layer only, or all ones."""
    if name == "logspace":
        return torch.logspace(-7, 0, layers, dtype=dtype)
    if name == "last":
        nu = torch.zeros(layers, dtype=dtype)
        nu[-1] = 1.0
        return nu
    if name == "uniform":
        return torch.ones(layers, dtype=dtype)
    raise UserError(f"unknown nu schedule {name!r} (use {', '.join(NU_SCHEDULES)})")


def _unit_columns(W: torch.Tensor) -> torch.Tensor:
    return W / torch.linalg.vector_norm(W, dim=-2, keepdim=True).clamp_min(1e-300)


def match_batch(W: torch.Tensor, W_true: torch.Tensor) -> torch.Tensor:
    """``perm`` (``B x r``) with ``W[b][:, perm[b, k]]`` matched to ``W_true[b][:, k]``.

    Minimises the sum of spectral angles (Hungarian algorithm), like the ``sad_deg`` metric.
    """
    cos = (_unit_columns(W.detach()).mT @ _unit_columns(W_true)).clamp(-1.0, 1.0)
    angles = torch.arccos(cos).double().cpu().numpy()
    perm = np.empty(angles.shape[:2], dtype=np.int64)
    for b, cost in enumerate(angles):
        rows, cols = linear_sum_assignment(cost)
        perm[b, cols] = rows
    return torch.from_numpy(perm).to(W.device)


def aligned(W: torch.Tensor, H: torch.Tensor, W_true: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``W`` and ``H`` with components matched to ``W_true`` and ``H`` on its scale."""
    perm = match_batch(W, W_true)
    Wp = torch.take_along_dim(W, perm[:, None, :], dim=2)
    Hp = torch.take_along_dim(H, perm[:, :, None], dim=1)
    scale = torch.linalg.vector_norm(Wp, dim=-2) / torch.linalg.vector_norm(W_true, dim=-2).clamp_min(1e-300)
    return Wp, Hp * scale[..., None]


def _sum_to_one(H: torch.Tensor) -> torch.Tensor:
    return H / H.sum(dim=-2, keepdim=True).clamp_min(1e-300)


def _loss_H(H: torch.Tensor, H_true: torch.Tensor, loss_H: str) -> torch.Tensor:
    if loss_H == "sum-to-one":
        H, H_true = _sum_to_one(H), _sum_to_one(H_true)
    return ((H - H_true) ** 2).mean(dim=(-2, -1))


def layer_losses(
    W: torch.Tensor, H: torch.Tensor, batch: Batch, fixed_W: bool, loss_W: str, loss_H: str = "sq"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-problem ``(l_W, l_H)`` of one layer's iterates (vectors of length ``B``)."""
    if fixed_W:
        return torch.zeros(H.shape[0], dtype=H.dtype, device=H.device), _loss_H(H, batch.H_true, loss_H)
    Wp, Hs = aligned(W, H, batch.W_true)
    l_H = _loss_H(Hs, batch.H_true, loss_H)
    if loss_W == "sad":
        cos = (_unit_columns(Wp) * _unit_columns(batch.W_true)).sum(dim=-2)
        l_W = torch.arccos(cos.clamp(-1.0 + 1e-7, 1.0 - 1e-7)).mean(dim=-1)
    else:
        l_W = ((_unit_columns(Wp) - _unit_columns(batch.W_true)) ** 2).mean(dim=(-2, -1))
    return l_W, l_H


def supervised_loss(model: NALMU, batch: Batch, nu: torch.Tensor, loss_W: str, loss_H: str = "sq") -> torch.Tensor:
    """The training objective (module docstring), averaged over the batch."""
    Ws, Hs = model(batch.Y, batch.W0, batch.H0)
    return _weighted_loss(Ws, Hs, batch, nu, model.config.fixed_W, loss_W, loss_H)


def _weighted_loss(
    Ws: list[torch.Tensor], Hs: list[torch.Tensor], batch: Batch, nu: torch.Tensor, fixed_W: bool,
    loss_W: str, loss_H: str,
) -> torch.Tensor:
    total = torch.zeros((), dtype=batch.Y.dtype, device=batch.Y.device)
    for k, (W, H) in enumerate(zip(Ws, Hs)):
        if nu[k] == 0:
            continue
        l_W, l_H = layer_losses(W, H, batch, fixed_W, loss_W, loss_H)
        total = total + nu[k] * (l_W + l_H).mean()
    return total


@torch.no_grad()
def evaluate(
    model: NALMU, examples: Sequence[Example], nu: torch.Tensor, loss_W: str, loss_H: str = "sq"
) -> dict[str, float]:
    """Supervised loss and the errors after the last layer, averaged over ``examples``.

    ``sq_err_H`` is ``||H^K - H^*||_F^2`` per problem (after matching and scaling in the NMF
    form); ``sad_deg`` (NMF form) the mean spectral angle of ``W^K`` in degrees.
    """
    batch = Batch.of(examples)
    Ws, Hs = model(batch.Y, batch.W0, batch.H0)
    out = {"loss": float(_weighted_loss(Ws, Hs, batch, nu, model.config.fixed_W, loss_W, loss_H))}
    W, H = Ws[-1], Hs[-1]
    if model.config.fixed_W:
        out["sq_err_H"] = float(((H - batch.H_true) ** 2).sum(dim=(-2, -1)).mean())
    else:
        Wp, Hs_ = aligned(W, H, batch.W_true)
        out["sq_err_H"] = float(((Hs_ - batch.H_true) ** 2).sum(dim=(-2, -1)).mean())
        cos = (_unit_columns(Wp) * _unit_columns(batch.W_true)).sum(dim=-2).clamp(-1.0, 1.0)
        out["sad_deg"] = float(torch.rad2deg(torch.arccos(cos)).mean())
    return out


@dataclass
class FitResult:
    """What :func:`fit` did: the loss history and which epoch's weights were kept."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = math.inf
    interrupted: bool = False
    seconds: float = 0.0

    @property
    def epochs_run(self) -> int:
        return len(self.train_loss)


def fit(
    model: NALMU,
    train: Sequence[Example],
    val: Sequence[Example],
    settings: TrainSettings,
    progress: bool = False,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> FitResult:
    """Train ``model`` in place; on return it holds the weights with the lowest validation loss.

    Epoch 0 is the starting point (all ones: MU). Ctrl-C stops training and keeps the best
    weights so far (``interrupted`` is then set). A tqdm bar with the training and validation
    losses is shown when ``progress`` is true.
    """
    if not train or not val:
        raise UserError("training needs at least one training and one held-out problem")
    from tqdm import tqdm

    dtype = train[0].Y.dtype
    nu = nu_schedule(settings.nu, model.config.layers, dtype).to(train[0].Y.device)
    opt_class = torch.optim.AdamW if settings.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_class(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    gen = torch.Generator().manual_seed(settings.seed)
    result = FitResult()
    val_batch = Batch.of(val)

    def val_loss() -> float:
        with torch.no_grad():
            return float(supervised_loss(model, val_batch, nu, settings.loss_W, settings.loss_H))

    result.best_val_loss = val_loss()
    best_state = copy.deepcopy(model.state_dict())
    start = time.perf_counter()
    bar = tqdm(total=settings.epochs, desc="train nalmu", unit="epoch", disable=not progress, leave=True)
    bar.set_postfix(val=f"{result.best_val_loss:.4g}")
    try:
        for epoch in range(1, settings.epochs + 1):
            order = torch.randperm(len(train), generator=gen).tolist()
            seen, running = 0, 0.0
            for first in range(0, len(order), settings.batch_size):
                chunk = [train[i] for i in order[first:first + settings.batch_size]]
                optimizer.zero_grad(set_to_none=True)
                loss = supervised_loss(model, Batch.of(chunk), nu, settings.loss_W, settings.loss_H)
                loss.backward()
                optimizer.step()
                model.project_()
                running += float(loss.detach()) * len(chunk)
                seen += len(chunk)
            current = val_loss()
            result.train_loss.append(running / seen)
            result.val_loss.append(current)
            if current < result.best_val_loss:
                result.best_val_loss, result.best_epoch = current, epoch
                best_state = copy.deepcopy(model.state_dict())
            bar.update(1)
            bar.set_postfix(train=f"{running / seen:.4g}", val=f"{current:.4g}", best=f"{result.best_val_loss:.4g}")
            if on_epoch is not None:
                on_epoch(epoch, running / seen, current)
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        bar.close()
        result.seconds = time.perf_counter() - start
        model.load_state_dict(best_state)
    return result


@dataclass(frozen=True)
class TrainingData:
    """Training and held-out examples with a plain-value description of where they came from."""

    train: list[Example]
    val: list[Example]
    description: dict[str, Any]
    rank: int
    m: int
    fixed_W: bool


def make_example(
    problem: Problem, init_seed: int, source: str, dtype: torch.dtype = torch.float64, init: str = "harness",
) -> Example:
    """A training example: ``problem`` with the initial factors the harness would give it for
    seed ``init_seed`` (or an all-ones ``H0`` with ``init="ones"``)."""
    if not problem.has_ground_truth:
        raise UserError(f"dataset {problem.name!r} has no ground truth (W_true, H_true): it cannot train NALMU")
    W0, H0 = initial_factors(problem, init_seed)
    if init == "ones":
        H0 = torch.ones_like(H0)
    return Example(*(X.to(dtype) for X in (problem.Y, problem.W_true, problem.H_true, W0, H0)), source=source)


def pixel_patches(problem: Problem, patch_size: int) -> list[tuple[Problem, str]]:
    """Consecutive column blocks of ``patch_size`` pixels (a remainder shorter than that is dropped)."""
    m, n = problem.shape
    if patch_size < problem.rank:
        raise UserError(f"--patch-size {patch_size} is smaller than the rank {problem.rank}")
    out = []
    for start in range(0, n - patch_size + 1, patch_size):
        cols = slice(start, start + patch_size)
        patch = Problem(
            Y=problem.Y[:, cols], rank=problem.rank, W_true=problem.W_true, H_true=problem.H_true[:, cols],
            nonneg=problem.nonneg, fixed_W=problem.fixed_W, name=problem.name,
        )
        out.append((patch, f"pixels {start}-{start + patch_size - 1}"))
    return out


def _dense(problem: Problem, label: str) -> Problem:
    """``problem``, if its data is dense: training stacks problems into dense batches."""
    if problem.is_sparse:
        raise UserError(f"training NALMU needs dense data; dataset {label!r} is sparse (train on a dense dataset: "
                        "trained weights run on sparse data with nalmu[weights=FILE])")
    return problem


def _held_out_count(total: int, val_fraction: float) -> int:
    if not 0 < val_fraction < 1:
        raise UserError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if total < 2:
        raise UserError(f"need at least 2 problems to hold some out, got {total}")
    return min(total - 1, max(1, round(total * val_fraction)))


def training_data(
    dataset: str,
    registry: Registry,
    split: str = "seeds",
    problems: int = 20,
    val_fraction: float = 0.2,
    patch_size: int = 500,
    first_seed: int = 1000,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    init: str = "harness",
) -> TrainingData:
    """Training and held-out examples from one registered dataset (module docstring)."""
    if init not in INITS:
        raise UserError(f"--init {init!r} is not one of {', '.join(INITS)}")

    variants = select(dataset, registry.datasets, registry, "dataset")
    if len(variants) != 1:
        raise UserError(f"training needs exactly one dataset variant, {dataset!r} gives {len(variants)}")
    variant = variants[0]
    spec = registry.get_dataset(variant.name)
    cpu = torch.device("cpu")
    description: dict[str, Any] = {
        "dataset": variant.label, "dataset_params": variant.params_json(), "split": split, "init": init,
    }
    if split == "seeds":
        if problems < 2:
            raise UserError(f"--problems must be >= 2 with --split seeds, got {problems}")
        n_val = _held_out_count(problems, val_fraction)
        seeds = list(range(first_seed, first_seed + problems))
        loaded = [_dense(spec.load(variant.params, s, cpu, torch.float64), variant.label) for s in seeds]
        if torch.equal(loaded[0].Y, loaded[1].Y):
            raise UserError(
                f"dataset {variant.label!r} gives the same data for every seed: use --split pixels to train on patches"
            )
        examples = [make_example(p, s, f"seed {s}", dtype, init) for p, s in zip(loaded, seeds)]
        train, val = examples[:-n_val], examples[-n_val:]
        description.update(train_seeds=seeds[:-n_val], val_seeds=seeds[-n_val:])
        first = loaded[0]
    elif split == "pixels":
        first = _dense(spec.load(variant.params, first_seed, cpu, torch.float64), variant.label)
        patches = pixel_patches(first, patch_size)
        n_val = _held_out_count(len(patches), val_fraction)
        order = torch.randperm(len(patches), generator=torch.Generator().manual_seed(seed)).tolist()
        examples = [make_example(patches[i][0], i, patches[i][1], dtype, init) for i in order]
        train, val = examples[n_val:], examples[:n_val]
        description.update(seed=first_seed, patch_size=patch_size,
                           train_patches=[e.source for e in train], val_patches=[e.source for e in val])
    else:
        raise UserError(f"--split {split!r} is not one of {', '.join(SPLITS)}")
    m, _ = first.shape
    return TrainingData(train, val, description, rank=first.rank, m=m, fixed_W=first.fixed_W)


@dataclass
class TrainReport:
    """Outcome of :func:`train_nalmu`: where the weights went and how they did on held-out data."""

    path: Path
    config: NALMUConfig
    fit: FitResult
    untrained: dict[str, float]
    trained: dict[str, float]
    data: TrainingData


def train_nalmu(
    registry: Registry,
    dataset: str,
    out: str | os.PathLike,
    layers: int = 25,
    shape: str = "full",
    tied: bool = False,
    normalize: bool = False,
    eps: float = 1e-12,
    settings: TrainSettings = TrainSettings(),
    split: str = "seeds",
    problems: int = 20,
    val_fraction: float = 0.2,
    patch_size: int = 500,
    first_seed: int = 1000,
    dtype: torch.dtype = torch.float64,
    init: str = "harness",
    force: bool = False,
    progress: bool = False,
    command: Sequence[str] = (),
) -> TrainReport:
    """Build the training data, train a NALMU model and save it to ``out`` with its configuration.

    The weights are written even when training is interrupted (the best so far); the report's
    ``fit.interrupted`` says so.
    """
    from proxmf_bench.run import environment

    target = Path(out)
    if target.exists() and not force:
        raise UserError(f"{target} exists; pass --force to overwrite it")
    if not target.parent.is_dir():
        raise UserError(f"directory {target.parent} does not exist")
    data = training_data(dataset, registry, split, problems, val_fraction, patch_size, first_seed, settings.seed, dtype, init)
    config = NALMUConfig(layers=layers, rank=data.rank, m=data.m, shape=shape, tied=tied,
                         fixed_W=data.fixed_W, normalize=normalize, eps=eps)
    model = NALMU(config, dtype=dtype)
    nu = nu_schedule(settings.nu, layers, dtype)
    untrained = evaluate(model, data.val, nu, settings.loss_W, settings.loss_H)
    result = fit(model, data.train, data.val, settings, progress=progress)
    trained = evaluate(model, data.val, nu, settings.loss_W, settings.loss_H)
    info = {
        "created": datetime.now(timezone.utc).isoformat(),
        "command": list(command),
        "versions": environment.versions(),
        "git_commit": environment.git_commit(),
        "dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "training": asdict(settings),
        "data": data.description,
        "result": {
            "epochs_run": result.epochs_run, "best_epoch": result.best_epoch, "interrupted": result.interrupted,
            "seconds": result.seconds, "val_untrained": untrained, "val_trained": trained,
        },
    }
    save_weights(target, model, info)
    return TrainReport(target, config, result, untrained, trained, data)
