"""Test plugin: datasets that each break one property of the contract on purpose.

``cached`` hands out the same tensor on every load; ``unseeded`` draws from torch's global
generator instead of one seeded by ``seed``; ``float64_only`` ignores the requested dtype;
``no_truth`` declares ground truth and has none; ``bad_truth`` declares it and returns a
negative ``W_true`` for nonnegative data.
"""

import torch

from proxmf_bench import DatasetSpec, Problem, hookimpl

_CACHE = {}


def _seeded(seed):
    return torch.rand(8, 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def cached(params, seed, device, dtype):
    key = (seed, device, dtype)
    if key not in _CACHE:
        _CACHE[key] = _seeded(seed).to(device, dtype)
    return Problem(Y=_CACHE[key], rank=2, name="cached")


def unseeded(params, seed, device, dtype):
    return Problem(Y=torch.rand(8, 6, dtype=dtype, device=device), rank=2, name="unseeded")


def float64_only(params, seed, device, dtype):
    return Problem(Y=_seeded(seed).to(device), rank=2, name="float64_only")


def no_truth(params, seed, device, dtype):
    return Problem(Y=_seeded(seed).to(device, dtype), rank=2, name="no_truth")


def bad_truth(params, seed, device, dtype):
    Y = _seeded(seed)
    W, H = -torch.ones(8, 2, dtype=torch.float64), torch.ones(2, 6, dtype=torch.float64)
    return Problem(Y=Y, rank=2, W_true=W, H_true=H, name="bad_truth").to(device, dtype)


@hookimpl
def proxmf_register_datasets(register):
    for load in (cached, unseeded, float64_only):
        register(DatasetSpec(name=load.__name__, load=load))
    for load in (no_truth, bad_truth):
        register(DatasetSpec(name=load.__name__, load=load, ground_truth=True))
