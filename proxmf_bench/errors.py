"""Exceptions that carry a message meant for the user (printed as one line by the CLI)."""


class UserError(Exception):
    """Bad input: an unknown name, a malformed option, invalid data. Exit status 2."""


class PluginError(UserError):
    """A plugin failed to import or register, reported as fatal under ``--strict-plugins``."""


class DataError(UserError):
    """A dataset is missing, corrupt, or not valid for the requested problem."""
