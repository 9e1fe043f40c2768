"""User-facing errors: one line that names the file or value and the problem.

The CLI catches `UserError` and prints its message without a traceback; anything else is a bug.
"""


class UserError(Exception):
    """Bad input from the user (file, flag, task or module name)."""


class DataError(UserError):
    """A dataset file that cannot be used as a task."""


class ModuleError(UserError):
    """An unknown module name or a module directory that cannot be loaded."""


class ResumeError(UserError):
    """An experiment directory whose settings do not match the ones asked for."""


class StoreError(UserError):
    """A trial store that cannot be read or written: damaged, read-only, or on a full disk."""
