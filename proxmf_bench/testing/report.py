"""The outcome of a contract check: one row per property, a counterexample for each failure.

A check (:func:`~proxmf_bench.testing.check_prox` and its siblings) returns a
:class:`CheckReport`. ``proxmf-bench check`` prints it as a table (:meth:`CheckReport.format`);
in a plugin's own tests, :meth:`CheckReport.raise_for_failures` turns it into an
``AssertionError`` that carries the counterexamples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from proxmf_bench.errors import describe_exception

OK, FAILED, SKIPPED = "ok", "FAILED", "skipped"

# What plugin code may raise that is a finding rather than a reason to stop checking: any
# error, and an attempt to end the process (sys.exit). Ctrl-C still stops the checks.
PLUGIN_FAILURES = (Exception, SystemExit)


@dataclass(frozen=True)
class Counterexample:
    """What was given, what the contract expects, what came back (each one readable line)."""

    input: str
    expected: str
    got: str


@dataclass
class PropertyResult:
    """One property of the contract: checked on ``cases`` inputs, the first failure kept."""

    name: str
    status: str = OK
    cases: int = 0
    detail: str = ""
    counterexample: Counterexample | None = None

    @property
    def passed(self) -> bool:
        return self.status != FAILED


@dataclass
class CheckReport:
    """Every property checked for one plugin spec (``kind`` is prox, solver or dataset)."""

    kind: str
    name: str
    results: list[PropertyResult] = field(default_factory=list)
    note: str = ""

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[PropertyResult]:
        return [r for r in self.results if not r.passed]

    def result(self, name: str) -> PropertyResult:
        """The row of property ``name`` (a ``KeyError`` if it was not checked)."""
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(f"{self.kind} {self.name}: no property {name!r} (has: {', '.join(r.name for r in self.results)})")

    def format(self, header: str = "") -> str:
        """The table ``proxmf-bench check`` prints: ``status  property``, counterexamples below."""
        lines = [header or f"{self.kind} {self.name}"]
        if self.note:
            lines.append(f"  note: {self.note}")
        for r in self.results:
            detail = f"  ({r.detail})" if r.detail else ""
            lines.append(f"  {r.status:<8} {r.name}{detail}")
            if r.counterexample is not None:
                for label in ("input", "expected", "got"):
                    lines.append(f"           {label + ':':<9} {getattr(r.counterexample, label)}")
        return "\n".join(lines)

    def raise_for_failures(self) -> None:
        """Raise ``AssertionError`` with the failed properties and their counterexamples."""
        if not self.ok:
            failed = CheckReport(self.kind, self.name, self.failures, self.note)
            raise AssertionError(f"{len(self.failures)} contract properties failed\n{failed.format()}")


class Recorder:
    """Builds a :class:`CheckReport` property by property, keeping the first failure of each."""

    def __init__(self, kind: str, name: str, order: Sequence[str] = ()) -> None:
        self.report = CheckReport(kind, name)
        self._rows: dict[str, PropertyResult] = {}
        self._order = {name: i for i, name in enumerate(order)}

    def row(self, name: str) -> PropertyResult:
        if name not in self._rows:
            self._rows[name] = PropertyResult(name)
            self.report.results.append(self._rows[name])
        return self._rows[name]

    def check(self, name: str, holds: bool, counterexample: Callable[[], Counterexample]) -> bool:
        """Count one case of property ``name``; on the first failure build its counterexample."""
        row = self.row(name)
        if row.status == SKIPPED:
            row.status, row.detail = OK, ""
        row.cases += 1
        if not holds and row.status != FAILED:
            row.status, row.counterexample = FAILED, counterexample()
        return holds

    def fail(self, name: str, counterexample: Counterexample) -> None:
        self.check(name, False, lambda: counterexample)

    def skip(self, name: str, reason: str) -> None:
        """Mark ``name`` as not applicable, unless some case of it was checked."""
        row = self.row(name)
        if row.cases == 0:
            row.status, row.detail = SKIPPED, reason

    def attempt(self, name: str, call: Callable[[], Any], what: Callable[[], str],
                expected: str = "no exception") -> tuple[bool, Any]:
        """``(True, call())``, or ``(False, None)`` with the exception recorded against ``name``."""
        try:
            return True, call()
        except PLUGIN_FAILURES as exc:  # a plugin may raise anything, or try to exit: that is the finding
            self.fail(name, Counterexample(what(), expected, describe_error(exc)))
            return False, None

    def finish(self) -> CheckReport:
        """The report, its rows in the declared order (checked ones before skipped ones)."""
        self.report.results.sort(key=lambda r: (r.status == SKIPPED, self._order.get(r.name, len(self._order))))
        for row in self.report.results:
            if row.status == OK and row.cases:
                row.detail = row.detail or f"{row.cases} case{'s' if row.cases != 1 else ''}"
        return self.report


def needs_parameters(rec: Recorder, spec: Any, given: Any, row: str) -> bool:
    """Whether ``spec`` has parameters that must be given (``Param.required``, a data file's
    path) and none were: the report then says how to check it, and ``row`` is skipped."""
    required = [p.name for p in spec.params if getattr(p, "required", False)]
    if given is not None or not required:
        return False
    rec.report.note = (f"parameter {', '.join(required)} must be given: check it with values, "
                       f"e.g. proxmf-bench check '{spec.name}[{required[0]}=...]'")
    rec.skip(row, "required parameters not given")
    return True


def describe_error(exc: BaseException) -> str:
    return f"raised {describe_exception(exc)}"


def fmt_value(value: Any, limit: int = 12) -> str:
    """A short, exact-enough rendering of a tensor or number for a counterexample."""
    if isinstance(value, torch.Tensor):
        dtype = str(value.dtype).removeprefix("torch.")
        where = "" if value.device.type == "cpu" else f", {value.device}"
        if value.numel() <= limit:
            body = _nested(value.detach().cpu().double().tolist())
            return f"{body} ({dtype}{where})"
        flat = value.detach().cpu().double().reshape(-1)
        finite = flat[torch.isfinite(flat)]
        span = f"values in [{_num(float(finite.min()))}, {_num(float(finite.max()))}]" if finite.numel() else "no finite values"
        return f"tensor of shape {tuple(value.shape)} ({dtype}{where}), {span}"
    if isinstance(value, float):
        return _num(value)
    return repr(value)


def _num(x: float) -> str:
    if math.isnan(x) or math.isinf(x):
        return str(x)
    return f"{x:.9g}"


def _nested(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_nested(v) for v in value) + "]"
    return _num(float(value))
