"""Geometric record schedule: which iterations get their loss and metrics recorded."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RecordSchedule:
    """Record every iteration up to ``dense``, then about ``per_decade`` points per decade.

    The first (0) and the last iteration of a run are recorded by the harness regardless.
    A schedule is a value: it is part of the identity of a cell (what it records).

    >>> s = RecordSchedule(dense=3, per_decade=4)
    >>> [k for k in range(40) if s.is_record(k)]
    [0, 1, 2, 3, 6, 11, 20, 36]
    """

    dense: int = 10
    per_decade: int = 20
    ratio: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.dense < 1 or self.per_decade < 1:
            raise ValueError("dense and per_decade must be positive")
        object.__setattr__(self, "ratio", 10.0 ** (1.0 / self.per_decade))

    def to_dict(self) -> dict[str, Any]:
        return {"dense": self.dense, "per_decade": self.per_decade}

    def next_after(self, k: int) -> int:
        """The first recorded iteration strictly after ``k``."""
        if k < self.dense:
            return k + 1
        return max(k + 1, int(math.ceil(k * self.ratio)))

    def is_record(self, k: int) -> bool:
        j = 0
        while j < k:
            j = self.next_after(j)
        return j == k
