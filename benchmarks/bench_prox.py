"""asv: throughput of every built-in prox operator on 10^4 to 10^6 elements."""

from __future__ import annotations

import torch

from benchmarks.common import (
    DEVICES,
    DTYPES,
    builtin_registry,
    device_or_skip,
    prox_operators,
    synchronize,
    timing_conditions,
)

ROWS = 20  # a 20 x N/20 matrix, shaped like H (column-wise operators see N/20 columns)


class TimeProx:
    """One call ``prox(X, 0.1, **defaults)`` on ``size`` elements; throughput is size / time."""

    params = (prox_operators(), [10**4, 10**5, 10**6], list(DTYPES), list(DEVICES))
    param_names = ("prox", "size", "dtype", "device")

    def setup(self, prox, size, dtype, device):
        dev = device_or_skip(device)
        timing_conditions()
        spec = builtin_registry().get_prox(prox)
        self.kwargs = spec.resolve({})
        self.fn = spec.fn
        gen = torch.Generator().manual_seed(0)
        self.X = torch.randn(ROWS, size // ROWS, generator=gen, dtype=torch.float64).to(dev, DTYPES[dtype])
        self.device = dev

    def time_prox(self, prox, size, dtype, device):
        self.fn(self.X, 0.1, **self.kwargs)
        synchronize(self.device)
