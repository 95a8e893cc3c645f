"""Exceptions that carry a message meant for the user (printed as one line by the CLI), and
the helpers that word such messages."""

from __future__ import annotations

import difflib
import traceback
from collections.abc import Iterable


class UserError(Exception):
    """Bad input: an unknown name, a malformed option, invalid data. Exit status 2."""


class PluginError(UserError):
    """A plugin failed to import or register, reported as fatal under ``--strict-plugins``."""


class DataError(UserError):
    """A dataset is missing, corrupt, or not valid for the requested problem."""


class ExecutionError(UserError):
    """The cells could not go on running: the dask cluster or the worker processes failed.

    Raised after the run directory is written (every finished cell is kept and ``--resume``
    continues); the CLI prints it as one line and exits with status 75.
    """


class PluginUnavailable(Exception):
    """Raised by a plugin module whose optional dependency is missing.

    The plugin is skipped and listed with this message by ``proxmf-bench plugins`` and
    ``list``; it is not a failure (no warning, and ``--strict-plugins`` does not stop on it).
    """


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def describe_exception(exc: BaseException) -> str:
    """``"TypeError: message at file.py:12"``: an exception in one line, with where it was raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
    message = str(exc)
    return f"{type(exc).__name__}{': ' + message if message else ''}{where}"
