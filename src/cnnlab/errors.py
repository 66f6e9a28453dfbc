"""What a user can do wrong, said in one line.

Every error a user can cause (a mistyped name, a missing file, an input that is too small, a broken
dataset) raises a `CnnlabError`; the CLI prints its message and exits with status 2. Any other
exception is a bug in cnnlab and keeps its traceback.
"""

from __future__ import annotations


class CnnlabError(Exception):
    """A user-facing error: its message is one line that says what is wrong and what to do."""


class UnknownNameError(CnnlabError, KeyError):
    """A model or dataset name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DataError(CnnlabError):
    """A dataset that is missing, unreadable or malformed."""


class InputSizeError(CnnlabError):
    """An input smaller than a model's minimum, or of the wrong number of channels."""


class RunDirError(CnnlabError):
    """A run directory that is missing, incomplete or from an incompatible version."""
