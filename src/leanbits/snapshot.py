"""Snapshots: a trained model saved so that it describes itself, written and read as a unit.

A snapshot directory holds

* ``weights.safetensors`` - the state dict (no pickles),
* ``masks.safetensors`` - optional 0/1 masks of pruned weights, same keys as the weights,
* ``model.json`` - the width plan and the output head, enough to rebuild the network,
* ``config.toml`` - the full configuration that produced it,
* ``metrics.json`` - final metrics (and ``metrics.jsonl``, per epoch, when trained here),
* ``weights_early.safetensors`` - weights early in training (for rewinding), when trained.

Writing: a :class:`SnapshotWriter` builds the snapshot in ``DIR.partial`` (locked, so two
processes never share it) and renames it to ``DIR`` only when it is complete, replacing an
old ``DIR`` whole; an interrupted write leaves ``DIR`` as it was. An existing snapshot made
from other settings is replaced only when asked (``force``, the CLI's ``--force``).

Reading: :func:`load` checks everything against a schema before it builds anything -
``model.json`` types and ranges (the plan's ceilings, :mod:`leanbits.models.plan`), the
tensor names, dtypes and shapes from the safetensors headers, finite values, 0/1 masks of
the right shapes, ``config.toml`` sections - so an edited or forged snapshot is refused with
one line (:class:`leanbits.errors.FormatError`), quickly and without allocating for it.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as serialize_tensors
from torch import nn

from leanbits import paths
from leanbits.errors import ConfigError, FormatError, OutputError, os_error_message
from leanbits.fileio import (
    check_output_dir,
    current_umask,
    write_bytes_atomic,
    write_text_atomic,
)
from leanbits.heads import Head
from leanbits.models import Plan, build

#: largest model.json, config.toml or metrics.json read (a custom llr-code matrix is the
#: only big part; real ones are a few KB)
MAX_META_BYTES = 16 << 20
#: safetensors dtypes a snapshot's weights may have (all load into float32 models)
WEIGHT_DTYPES = ("F16", "BF16", "F32", "F64")
#: safetensors dtypes a snapshot's masks may have
MASK_DTYPES = ("U8", "BOOL")
#: config.toml sections that must be tables when present
CONFIG_SECTIONS = ("data", "train", "prune", "bits")
#: suffix of the directory a snapshot is built in
PARTIAL_SUFFIX = ".partial"
_LOCK = paths.lock(Path()).name


@dataclass
class Snapshot:
    """A model with its plan, head, config, metrics and (optional) pruning masks."""

    model: nn.Sequential
    plan: Plan
    head: Head
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    masks: dict[str, torch.Tensor] | None = None
    path: Path | None = None


# ----------------------------------------------------------------------------- files


def _toml_safe(obj: Any) -> Any:
    """TOML has no null: drop None values, turn tuples into lists."""
    if isinstance(obj, dict):
        return {str(k): _toml_safe(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list | tuple):
        return [_toml_safe(v) for v in obj if v is not None]
    return obj


def write_toml(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, tomli_w.dumps(_toml_safe(data)))


def _read_text(path: Path) -> str:
    """A small UTF-8 file's text, refusing a huge or undecodable one before reading it all."""
    try:
        size = path.stat().st_size
        if size > MAX_META_BYTES:
            raise FormatError(
                f"{path}: {size:,} bytes, above the ceiling of {MAX_META_BYTES:,} for a "
                "snapshot's metadata file; it is not a leanbits file"
            )
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                          "it is not a leanbits file") from None
    except OSError as exc:
        raise FormatError(f"{path}: cannot read ({exc.strerror})") from None


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(_read_text(Path(path)))
    except tomllib.TOMLDecodeError as exc:
        raise FormatError(f"{path}: not a valid TOML file ({exc})") from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(_read_text(path))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise FormatError(f"{path}: malformed JSON ({exc})") from None


def save_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor],
                 metadata: dict[str, str] | None = None) -> None:
    """Write tensors as a safetensors file, atomically.

    Args:
        path: the file (only ever replaces a regular file, see
            :func:`leanbits.fileio.atomic_path`).
        tensors: name -> tensor (detached, made contiguous and moved to the CPU here).
        metadata: string key/values stored in the file's header.

    Raises:
        OutputError: the path is taken by a directory, device, ... or the file system
            refuses the write (read-only, full).
    """
    # Serialised in memory and written by Python, so a full or read-only disk is an
    # OSError naming the file (safetensors' own writer reports it as a SafetensorError).
    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    write_bytes_atomic(path, serialize_tensors(flat, metadata))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise FormatError(f"{path}: cannot read safetensors file ({exc})") from None


def write(
    directory: str | Path,
    model: nn.Module,
    plan: Plan,
    head: Head,
    config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    masks: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Write the files of a snapshot into ``directory`` (normally a writer's partial one).

    ``model.json`` is written last, so even a directory written in place is complete only
    once it exists. Use :func:`save` or :class:`SnapshotWriter` for a whole snapshot.

    Returns:
        ``directory`` as a Path.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths.model_json(d).unlink(missing_ok=True)
    save_tensors(paths.weights(d), model.state_dict())
    if masks:
        save_tensors(paths.masks(d), {k: v.to(torch.uint8) for k, v in masks.items()})
    else:
        paths.masks(d).unlink(missing_ok=True)
    write_toml(paths.config(d), config or {})
    write_text_atomic(paths.metrics(d), json.dumps(metrics or {}, indent=2, sort_keys=True))
    write_text_atomic(
        paths.model_json(d),
        json.dumps({"plan": plan.to_dict(), "head": head.to_dict()}, indent=2),
    )
    return d


# ----------------------------------------------------------------------------- writer


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
                _toml_safe(config), tomli_w.dumps, tomllib.loads):
            return False
        if metrics is not None:
            return _read_json(paths.metrics(directory)) == _as_stored(
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
        self.path = self._real.with_name(self._real.name + PARTIAL_SUFFIX)
        try:
            self._fd = self._claim()
        except OSError as exc:  # read-only or full disk: name the output, not a temp dir
            raise OutputError(os_error_message(exc, self.target)) from None

    def _claim(self) -> int:
        parent = self.path.parent
        parent.mkdir(parents=True, exist_ok=True)
        for _ in range(8):
            fresh = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=parent))
            fd = os.open(fresh / _LOCK, os.O_CREAT | os.O_RDWR, 0o666 & ~current_umask())
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
            fd = os.open(p / _LOCK, os.O_RDWR)
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
            trash = Path(tempfile.mkdtemp(prefix=f".{p.name}.stale.", dir=p.parent))
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
            trash = Path(tempfile.mkdtemp(prefix=f".{real.name}.replaced.", dir=real.parent))
            os.rename(real, trash)
            os.rename(self.path, real)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(self.path, real)
        (real / _LOCK).unlink(missing_ok=True)
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


# ----------------------------------------------------------------------------- reading


def _tensor_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (safetensors dtype, shape) from the file's header, without reading tensors."""
    try:
        with safe_open(str(path), framework="pt") as f:
            out = {}
            for k in f.keys():
                s = f.get_slice(k)
                out[k] = (s.get_dtype(), tuple(s.get_shape()))
            return out
    except (SafetensorError, OSError, ValueError) as exc:
        raise FormatError(f"{path}: cannot read safetensors file ({exc})") from None


def _check_weights(path: Path, plan: Plan) -> dict[str, torch.Tensor]:
    """The weights in ``path``, if they are exactly the finite float tensors ``plan`` implies."""
    if not path.is_file():
        raise FormatError(f"{path} is missing; the snapshot is incomplete")
    header = _tensor_header(path)
    expected = plan.state_shapes()
    if set(header) != set(expected):
        raise FormatError(
            f"{path}: tensors {sorted(set(header) ^ set(expected))} do not match the plan in "
            "model.json; the snapshot was edited or mixed with another"
        )
    for k, (dtype, shape) in header.items():
        if dtype not in WEIGHT_DTYPES:
            raise FormatError(f"{path}: {k} is {dtype}, not a float tensor "
                              f"({', '.join(WEIGHT_DTYPES)}); the snapshot is not a model")
        if shape != expected[k]:
            raise FormatError(f"{path}: {k} has shape {shape}, the plan in model.json says "
                              f"{expected[k]}")
    state = load_tensors(path)
    for k, v in state.items():
        if not torch.isfinite(v).all():
            raise FormatError(f"{path}: {k} holds NaN or infinite values; use a snapshot "
                              "saved before training diverged")
    return state


def _check_masks(path: Path, plan: Plan) -> dict[str, torch.Tensor]:
    """The 0/1 masks in ``path``, each named and shaped like one of the plan's weights."""
    header = _tensor_header(path)
    weights = {k: s for k, s in plan.state_shapes().items() if k.endswith(".weight")}
    for k, (dtype, shape) in header.items():
        if k not in weights:
            raise FormatError(f"{path}: mask {k!r} names no weight of the plan; valid: "
                              f"{', '.join(weights)}")
        if dtype not in MASK_DTYPES:
            raise FormatError(f"{path}: mask {k} is {dtype}, not 0/1 (U8 or BOOL)")
        if shape != weights[k]:
            raise FormatError(f"{path}: mask {k} has shape {shape}, its weight has "
                              f"{weights[k]}")
    masks = load_tensors(path)
    for k, v in masks.items():
        if v.dtype != torch.bool and not bool(((v == 0) | (v == 1)).all()):
            raise FormatError(f"{path}: mask {k} holds values other than 0 and 1")
    return {k: v.to(torch.bool) for k, v in masks.items()}


def _check_meta(path: Path) -> tuple[Plan, Head]:
    meta = _read_json(path)
    fix = "fix it or re-create the snapshot (leanbits train, prune or unpack)"
    if not isinstance(meta, dict) or set(meta) != {"plan", "head"}:
        raise FormatError(f"{path}: must be a JSON object with the keys plan and head; {fix}")
    try:
        plan = Plan.from_dict(meta["plan"])
        head = Head.from_dict(meta["head"])
    except ConfigError as exc:
        raise FormatError(f"{path}: {exc}; {fix}") from None
    if plan.out != head.out_features:
        raise FormatError(
            f"{path}: the plan's output layer has {plan.out} units but the {head.kind} head "
            f"over {head.num_classes} classes reads {head.out_features}; {fix}"
        )
    return plan, head


def _check_config(path: Path) -> dict[str, Any]:
    config = read_toml(path)
    for section in CONFIG_SECTIONS:
        if section in config and not isinstance(config[section], dict):
            raise FormatError(
                f"{path}: {section} = {config[section]!r} must be a [{section}] table of "
                f"settings, e.g. [{section}] followed by key = value lines"
            )
    return config


def load(directory: str | Path) -> Snapshot:
    """Read a snapshot directory written by :func:`save`, checking it before building it.

    Raises:
        FormatError: the directory is not a complete snapshot, or a file is corrupt, of the
            wrong type or shape, or disagrees with ``model.json``.
    """
    d = Path(directory)
    if not paths.model_json(d).is_file():
        raise FormatError(
            f"{d} is not a leanbits snapshot (no {paths.model_json(d).name}); "
            "pass a directory written by `leanbits train` or `leanbits prune`"
        )
    plan, head = _check_meta(paths.model_json(d))
    state = _check_weights(paths.weights(d), plan)
    masks = _check_masks(paths.masks(d), plan) if paths.masks(d).is_file() else None
    config = _check_config(paths.config(d)) if paths.config(d).is_file() else {}
    metrics = _read_json(paths.metrics(d)) if paths.metrics(d).is_file() else {}
    if not isinstance(metrics, dict):
        raise FormatError(f"{paths.metrics(d)}: must be a JSON object of metrics")
    model = build(plan)
    model.load_state_dict(state)
    return Snapshot(model, plan, head, config, metrics, masks, d)


def check_fits_data(plan: Plan, head: Head, splits: Any, source: str | Path) -> None:
    """Refuse to evaluate a model on data it cannot read.

    Args:
        plan, head: the model's.
        splits: data with ``val`` / ``test`` parts (``.x`` images, ``.y`` labels), or a
            mapping of them; missing parts are skipped.
        source: the snapshot or file, for the message.

    Raises:
        FormatError: the examples' shape is not the plan's input shape, or a label is not
            one of the head's classes.
    """
    for name in ("val", "test", "train"):
        part = splits.get(name) if isinstance(splits, Mapping) else getattr(splits, name, None)
        if part is None or len(part.y) == 0:
            continue
        shape = tuple(part.x.shape[1:])
        if shape != plan.in_shape:
            raise FormatError(
                f"{source}: the model reads inputs of shape {'x'.join(map(str, plan.in_shape))}"
                f" but the {name} examples are {'x'.join(map(str, shape))}; evaluate it on "
                "the data set it was made for"
            )
        top = int(part.y.max())
        if top >= head.num_classes:
            raise FormatError(
                f"{source}: the model predicts {head.num_classes} classes but the {name} "
                f"labels go up to {top}; evaluate it on the data set it was made for"
            )
