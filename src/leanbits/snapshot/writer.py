"""Writing a snapshot as a unit: :class:`SnapshotWriter` builds it in ``DIR.partial`` (a
fresh directory under an OS lock, so two processes never share it; one left by a killed
writer is cleared) and renames it to ``DIR`` only when complete, replacing an old ``DIR``
whole. :func:`check_output` decides what may be replaced (nothing, a rerun of the same
settings, or another snapshot with ``force``); :func:`save` is the one-call form.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w
import torch
from torch import nn

from leanbits import paths
from leanbits.errors import ConfigError, FormatError, OutputError, os_error_message
from leanbits.fileio import check_output_dir, current_umask
from leanbits.heads import Head
from leanbits.models import Plan
from leanbits.snapshot.files import read_json, read_toml, toml_safe, write


def _as_stored(obj: Any, dump: Any, parse: Any) -> Any:
    """``obj`` as it reads back from its file (so an old file and a new value compare)."""
    try:
        return parse(dump(obj))
    except (TypeError, ValueError):
        return obj


def _same_contents(directory: Path, config: dict[str, Any] | None,
                   metrics: dict[str, Any] | None) -> bool:
    """Whether the snapshot in ``directory`` came from ``config`` (and has ``metrics``)."""
    if config is None:
        return False
    try:
        if read_toml(paths.config(directory)) != _as_stored(
                toml_safe(config), tomli_w.dumps, tomllib.loads):
            return False
        if metrics is not None:
            return read_json(paths.metrics(directory)) == _as_stored(
                metrics, lambda m: json.dumps(m, sort_keys=True), json.loads)
    except FormatError:
        return False
    return True


def check_output(directory: str | Path, *, config: dict[str, Any] | None = None,
                 metrics: dict[str, Any] | None = None, force: bool = False) -> None:
    """Refuse to write a snapshot over something that must not be replaced.

    Replacing is fine when ``directory`` does not exist, is empty, or holds a snapshot made
    from the same ``config`` (and, when given, with the same ``metrics``): that is a rerun.
    Another snapshot is replaced only with ``force``. Anything else - a file, a directory
    that is not a snapshot - is never replaced.

    Raises:
        ConfigError: the output is taken (the message names it and the way out).
        OutputError: a file stands where one of its parent directories should be.
    """
    d = Path(directory)
    if not os.path.lexists(d):
        check_output_dir(d)  # a file where one of its parents should be
        return
    if not d.is_dir():
        raise ConfigError(f"{d} exists and is not a directory; choose another output directory")
    with os.scandir(d) as entries:
        if next(entries, None) is None:
            return
    if not (paths.model_json(d).exists() or paths.config(d).exists()):
        raise ConfigError(
            f"{d} is a non-empty directory that is not a leanbits snapshot; choose another "
            "output directory (--force replaces only snapshots)"
        )
    if force or _same_contents(d, config, metrics):
        return
    raise ConfigError(
        f"{d} already holds a snapshot made from other settings or inputs; pass --force to "
        "replace it whole, or choose another output directory"
    )


class SnapshotWriter:
    """Build a snapshot in ``DIR.partial`` and make it ``DIR`` in one rename.

    Opening checks the output (:func:`check_output`) and claims ``DIR.partial``: a fresh,
    locked directory (one left by a killed writer is cleared; one held by a live process is
    refused). Write into :attr:`path` (:func:`write`, per-epoch logs, extra files), then
    :meth:`commit` - an old ``DIR`` is replaced whole, never mixed with the new files - or
    :meth:`abort`. As a context manager it commits on success and aborts on an exception.

    Args:
        directory: the snapshot directory to produce.
        config: the configuration the snapshot is made from (decides whether an existing
            snapshot is the same output, see :func:`check_output`).
        metrics: its metrics when known in advance (unpack), for the same purpose.
        force: replace an existing snapshot made from other settings.

    Raises:
        ConfigError: the output is taken, or another process is writing it.
        OutputError: the file system refuses the partial directory (read-only, full).

    Example:
        >>> with SnapshotWriter("runs/a", config=cfg) as w:  # doctest: +SKIP
        ...     write(w.path, model, plan, head, cfg, metrics)
    """

    def __init__(self, directory: str | Path, *, config: dict[str, Any] | None = None,
                 metrics: dict[str, Any] | None = None, force: bool = False) -> None:
        self._fd: int | None = None
        self.target = Path(directory)
        self._real = Path(os.path.realpath(directory))
        if not self._real.name or self._real == self._real.parent:
            raise ConfigError(f"{directory} cannot be a snapshot directory; name a new one")
        self._identity = (config, metrics, force)
        check_output(self.target, config=config, metrics=metrics, force=force)
        self.path = paths.partial(self._real)
        try:
            self._fd = self._claim()
        except OSError as exc:  # read-only or full disk: name the output, not a temp dir
            raise OutputError(os_error_message(exc, self.target)) from None

    def _claim(self) -> int:
        parent = self.path.parent
        parent.mkdir(parents=True, exist_ok=True)
        for _ in range(8):
            fresh = Path(tempfile.mkdtemp(prefix=paths.temp_prefix(self.path), dir=parent))
            fd = os.open(paths.lock(fresh), os.O_CREAT | os.O_RDWR, 0o666 & ~current_umask())
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fresh: nobody else has it
            os.write(fd, f"{os.getpid()}\n".encode())
            try:
                os.rename(fresh, self.path)  # atomic; fails while a non-empty one exists
            except OSError as exc:
                os.close(fd)
                shutil.rmtree(fresh, ignore_errors=True)
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                    raise
                self._clear_stale()
                continue
            os.chmod(self.path, 0o777 & ~current_umask())  # mkdtemp made it owner-only
            return fd
        raise ConfigError(f"{self.path} keeps reappearing; is another program writing it?")

    def _clear_stale(self) -> None:
        """Remove ``DIR.partial`` left by a dead writer; refuse one a live writer holds."""
        p = self.path
        if p.is_symlink() or not p.is_dir():
            raise ConfigError(f"{p} is in the way and is not a leanbits partial directory; "
                              "remove it or choose another output directory")
        try:
            fd = os.open(paths.lock(p), os.O_RDWR)
        except FileNotFoundError:
            raise ConfigError(f"{p} exists but was not left by leanbits; remove it or choose "
                              "another output directory") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise ConfigError(
                    f"{self.target} is being written by another leanbits process (pid {pid}); "
                    "wait for it to finish or choose another output directory"
                ) from None
            trash = Path(tempfile.mkdtemp(prefix=paths.temp_prefix(p, "stale"), dir=p.parent))
            try:
                os.rename(p, trash)
            except FileNotFoundError:
                pass
            shutil.rmtree(trash, ignore_errors=True)
        finally:
            os.close(fd)

    def commit(self) -> Path:
        """Make the partial directory the snapshot (replacing an old one whole).

        Returns:
            The snapshot directory (as given).

        Raises:
            ConfigError: the output was taken meanwhile; the new snapshot stays in
                :attr:`path`.
        """
        if self._fd is None:
            raise RuntimeError("this snapshot writer is already closed")
        config, metrics, force = self._identity
        try:
            check_output(self.target, config=config, metrics=metrics, force=force)
        except ConfigError as exc:
            self._release()
            raise ConfigError(f"{exc} (the new snapshot is left in {self.path})") from None
        real = self._real
        if os.path.lexists(real):
            trash = Path(tempfile.mkdtemp(prefix=paths.temp_prefix(real, "replaced"),
                                          dir=real.parent))
            os.rename(real, trash)
            os.rename(self.path, real)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(self.path, real)
        paths.lock(real).unlink(missing_ok=True)
        self._release()
        return self.target

    def abort(self) -> None:
        """Drop the partial directory; the output is left as it was."""
        if self._fd is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self._release()

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(self, exc_type: Any, _exc: Any, _tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def __del__(self) -> None:
        # A writer dropped after an exception must not keep its lock for the process' life.
        self._release()


def save(
    directory: str | Path,
    model: nn.Module,
    plan: Plan,
    head: Head,
    config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    masks: Mapping[str, torch.Tensor] | None = None,
    *,
    force: bool = False,
) -> Path:
    """Write a whole snapshot directory (see module docstring) and return its path.

    An existing snapshot with the same config and metrics is replaced; another one only with
    ``force`` (see :func:`check_output`).

    Raises:
        ConfigError: the output is taken.
    """
    with SnapshotWriter(directory, config=config or {}, metrics=metrics or {},
                        force=force) as w:
        write(w.path, model, plan, head, config, metrics, masks)
    return Path(directory)
