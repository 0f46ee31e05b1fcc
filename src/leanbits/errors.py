"""Errors that mean "the user asked for something that cannot be done".

The CLI prints these, and any :class:`OSError` (read-only or full disk, a directory where
a file should be; see :func:`os_error_message`), as one line (no traceback) and exits with
status 2.
Anything else that escapes is a bug in leanbits and keeps its traceback.
"""

from __future__ import annotations

import errno
import os


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


class OutputError(LeanbitsError):
    """An output cannot be written: a directory, device, FIFO or socket is where a file
    should go (or a file where a directory should), or the file system refuses the write."""


#: errno -> (what happened, what to do about it); see :func:`os_error_message`
_OS_ERRORS: dict[int, tuple[str, str]] = {
    errno.EROFS: ("the file system is read-only", "write to a writable location"),
    errno.ENOSPC: ("no space left on the device", "free some space or write elsewhere"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or write elsewhere"),
    errno.EFBIG: ("the file is too large for the file system", "write elsewhere"),
    errno.EACCES: ("permission denied", "check its permissions or choose another path"),
    errno.EPERM: ("operation not permitted", "check its permissions or choose another path"),
    errno.EISDIR: ("it is a directory", "give a file path"),
    errno.ENOTDIR: ("a part of the path is not a directory", "check the path"),
    errno.ENOENT: ("no such file or directory", "check the path"),
    errno.EEXIST: ("it already exists", "remove it or choose another path"),
    errno.ENAMETOOLONG: ("the name is too long", "choose a shorter path"),
    errno.ELOOP: ("too many levels of symbolic links", "check the path"),
    errno.EMFILE: ("too many open files", "raise the limit (ulimit -n) and try again"),
    errno.ENOMEM: ("out of memory", "free memory and try again"),
}


def os_error_message(exc: OSError, path: str | os.PathLike[str] | None = None) -> str:
    """One line for an operating-system error: the path, what happened, what to do.

    Args:
        exc: the error.
        path: the path to name (default: the one the error carries).

    Returns:
        e.g. ``"cannot write out/model.lbits: no space left on the device; free some
        space or write elsewhere"``.

    Example:
        >>> os_error_message(OSError(errno.EROFS, "Read-only file system", "/mnt/x"))
        '/mnt/x: the file system is read-only; write to a writable location'
    """
    name = path if path is not None else exc.filename
    what, fix = _OS_ERRORS.get(exc.errno or 0, (exc.strerror or str(exc) or type(exc).__name__,
                                                "check the path and try again"))
    if path is not None:
        head = f"cannot write {name}"
    elif name is not None:
        head = str(name)
        if exc.filename2 is not None:
            head += f" -> {exc.filename2}"
    else:
        head = "system error"
    return f"{head}: {what}; {fix}"


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
