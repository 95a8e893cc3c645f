"""Exceptions that carry a message meant for the user (printed as one line by the CLI)."""


class UserError(Exception):
    """Bad input: an unknown name, a malformed option, invalid data. Exit status 2."""


class PluginError(UserError):
    """A plugin failed to import or register, reported as fatal under ``--strict-plugins``."""


class DataError(UserError):
    """A dataset is missing, corrupt, or not valid for the requested problem."""


class PluginUnavailable(Exception):
    """Raised by a plugin module whose optional dependency is missing.

    The plugin is skipped and listed with this message by ``proxmf-bench plugins`` and
    ``list``; it is not a failure (no warning, and ``--strict-plugins`` does not stop on it).
    """
