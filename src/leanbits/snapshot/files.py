"""The files of a snapshot and how each is written and read: TOML and JSON metadata (small,
UTF-8, size-capped before reading), safetensors tensors written atomically, and
:func:`write`, which puts a snapshot's files into a directory (``model.json`` last, so its
presence marks a complete one). Nothing here decides whether a directory may be replaced
(:mod:`.writer`) or checks a snapshot against its schema (:mod:`.reader`).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as serialize_tensors
from torch import nn

from leanbits import paths
from leanbits.errors import FormatError
from leanbits.fileio import write_bytes_atomic, write_text_atomic
from leanbits.heads import Head
from leanbits.models import Plan

#: largest model.json, config.toml or metrics.json read (a custom llr-code matrix is the
#: only big part; real ones are a few KB)
MAX_META_BYTES = 16 << 20


def toml_safe(obj: Any) -> Any:
    """TOML has no null: drop None values, turn tuples into lists."""
    if isinstance(obj, dict):
        return {str(k): toml_safe(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list | tuple):
        return [toml_safe(v) for v in obj if v is not None]
    return obj


def write_toml(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, tomli_w.dumps(toml_safe(data)))


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


def read_json(path: Path) -> Any:
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
