"""Errors that mean "the user asked for something that cannot be done".

The CLI prints these as one line (no traceback) and exits with status 2.
Anything else that escapes is a bug in leanbits and keeps its traceback.
"""

from __future__ import annotations


class LeanbitsError(Exception):
    """Base class of every user-facing error: the message says what is wrong and what to do."""


class ConfigError(LeanbitsError, ValueError):
    """A bad configuration key or value."""


class DataError(LeanbitsError):
    """A data file is missing, corrupt, truncated or fails its checksum."""


class FormatError(LeanbitsError):
    """A model file (.lbits) or snapshot is truncated, corrupted or foreign."""


class PruneError(LeanbitsError, ValueError):
    """An impossible pruning request (amount out of range, unknown layer, ...)."""


class TrainingError(LeanbitsError):
    """Training cannot go on (e.g. the loss became NaN or infinite)."""


class BusyError(LeanbitsError):
    """Another process holds the lock on a directory this one would write (see
    :func:`leanbits.fileio.exclusive_lock`).

    Attributes:
        path: the lock file.
        pid: the holder's process id, when it could be read.
    """

    def __init__(self, message: str, path: str, pid: int | None) -> None:
        super().__init__(message)
        self.path = path
        self.pid = pid
