"""Atomic file writes and directory locks: an output file is either complete or absent,
never half-written, and one directory has one writer at a time."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from leanbits.errors import BusyError, LeanbitsError


def current_umask() -> int:
    """The process' umask (reading it means setting it; it is put back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left as it was.

    Example:
        >>> with atomic_path("out.bin") as tmp:  # doctest: +SKIP
        ...     tmp.write_bytes(b"...")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file owner-only, and a writer that recreates the file (such as
        # safetensors) may too: give outputs the usual umask-based mode, after writing.
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def _holder_pid(fd: int) -> int | None:
    # The holder writes its PID right after taking the lock; give it a moment to do so.
    for _ in range(20):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return int(text)
        time.sleep(0.01)
    return None


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike[str], wait: bool = False) -> Iterator[None]:
    """Hold an OS lock (``flock``, POSIX) on the file ``path`` for the duration of the block.

    The lock belongs to this process: the system drops it when the process ends, however it
    ends (kill -9 included), so a crashed holder never leaves a stale lock. The file holds
    the holder's PID while locked and is removed on release.

    Args:
        path: the lock file (created, with its parent directories, if missing).
        wait: block until the lock is free; otherwise fail at once.

    Raises:
        BusyError: ``wait`` is False and another process holds the lock (the error's
            ``pid`` is the holder's, when known).
        LeanbitsError: the system has no ``flock`` (not POSIX).
        OSError: the lock file cannot be created.

    Example:
        >>> with exclusive_lock("runs/x/.lock"):  # doctest: +SKIP
        ...     ...  # this process is the only writer of runs/x
    """
    try:
        import fcntl
    except ImportError:
        raise LeanbitsError("directory locks need a POSIX system (Linux, macOS); this one "
                            "has no fcntl module") from None

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            pid = _holder_pid(fd)
            os.close(fd)
            raise BusyError(f"{path} is held by process {pid if pid else '(PID unknown)'}",
                            str(path), pid) from None
        except BaseException:
            os.close(fd)
            raise
        # A holder removes the file as it releases it; if that happened while we waited,
        # our lock is on a file nobody else can see: start over on the one now at ``path``.
        try:
            st, now = os.fstat(fd), os.stat(path)
            current = (st.st_dev, st.st_ino) == (now.st_dev, now.st_ino)
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # while still locked, so no one can take the old file meanwhile
        os.close(fd)
