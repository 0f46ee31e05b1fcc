"""Atomic file writes and directory locks: an output file is either complete or absent,
never half-written, only ever replaces a regular file (never a device, FIFO, socket or
directory), and one directory has one writer at a time."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from leanbits.errors import BusyError, LeanbitsError, OutputError, os_error_message

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def check_output_file(path: str | os.PathLike[str]) -> Path:
    """Check that ``path`` may be written as a file: absent, or a regular file.

    A symbolic link is followed (its target is what gets replaced), so a link to a device
    is refused like the device itself. Call it before long work, so a bad output path
    fails at once; :func:`atomic_path` checks again just before it renames.

    Args:
        path: the output file.

    Returns:
        the path to replace: ``path``, or the target when ``path`` is a symbolic link.

    Raises:
        OutputError: ``path`` exists and is a directory, device, FIFO or socket, a part
            of its parent is not a directory, or it lies on a read-only file system.
    """
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    st = _stat_output(path, "write", "choose an output path inside a directory")
    if st is None:
        _check_read_only(path)
        return path
    if not stat.S_ISREG(st.st_mode):
        what = _kind(st.st_mode)
        fix = ("give a file path inside it" if stat.S_ISDIR(st.st_mode)
               else "leanbits only replaces regular files; choose a file path")
        raise OutputError(f"{path} exists and is {what}; {fix}")
    _check_read_only(path)
    return path


def _stat_output(path: Path, action: str, fix: str) -> os.stat_result | None:
    """What stands at an output path (None: nothing); a parent that is not a directory is
    refused with ``fix``."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise OutputError(f"cannot {action} {path}: a part of its parent {path.parent} is not "
                          f"a directory; {fix}") from None


def check_output_dir(path: str | os.PathLike[str]) -> Path:
    """Check that ``path`` may be used as an output directory: absent, or a directory.

    Args:
        path: the output directory.

    Returns:
        ``path``.

    Raises:
        OutputError: ``path`` exists and is not a directory (a file, device, ...), or it
            lies on a read-only file system.
    """
    path = Path(path)
    st = _stat_output(path, "make directory", "choose another output directory")
    if st is None:
        _check_read_only(path)
        return path
    if not stat.S_ISDIR(st.st_mode):
        what = "a file" if stat.S_ISREG(st.st_mode) else _kind(st.st_mode)
        raise OutputError(f"{path} exists and is {what}, not a directory; choose another "
                          "output directory")
    _check_read_only(path)
    return path


def _check_read_only(path: Path) -> None:
    """Refuse an output on a read-only file system now: its first write may come only
    after minutes of work (training)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        read_only = os.statvfs(probe).f_flag & os.ST_RDONLY
    except OSError:  # not a directory we can look at: the write will say what is wrong
        return
    if read_only:
        raise OutputError(f"cannot write {path}: the file system is read-only; write to a "
                          "writable location")


def current_umask() -> int:
    """The process' umask (reading it means setting it; it is put back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left as it was. Only a
    regular file is ever replaced (see :func:`check_output_file`); a symbolic link is
    followed, so the link stays and its target is replaced.

    Raises:
        OutputError: ``path`` is a directory, device, FIFO or socket (checked before and
            again just before the rename), or the file system refuses the write (read-only,
            full, permission denied): the message names ``path``, not the temporary file.

    Example:
        >>> with atomic_path("out.bin") as tmp:  # doctest: +SKIP
        ...     tmp.write_bytes(b"...")
    """
    path = check_output_file(path)
    try:
        check_output_dir(path.parent).mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                        dir=path.parent)
    except OSError as exc:
        raise OutputError(os_error_message(exc, path)) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file owner-only, and a writer that recreates the file (such as
        # safetensors) may too: give outputs the usual umask-based mode, after writing.
        os.chmod(tmp, 0o666 & ~current_umask())
        check_output_file(path)  # something may have appeared there meanwhile
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.filename in (None, str(tmp), str(path)):
            raise OutputError(os_error_message(exc, path)) from None
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
    try:  # POSIX only: imported here so that elsewhere only locking fails, with a message
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
