"""Snapshots: a trained model saved so that it describes itself.

A snapshot directory holds

* ``weights.safetensors`` - the state dict (no pickles),
* ``masks.safetensors`` - optional 0/1 masks of pruned weights, same keys as the weights,
* ``model.json`` - the width plan and the output head, enough to rebuild the network,
* ``config.toml`` - the full configuration that produced it,
* ``metrics.json`` - final metrics (and ``metrics.jsonl``, per epoch, when trained here),
* ``weights_early.safetensors`` - weights early in training (for rewinding), when trained.

Every file is written atomically; the directory is complete once ``model.json`` exists,
which is written last.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from leanbits import paths
from leanbits.errors import FormatError
from leanbits.fileio import atomic_path, write_text_atomic
from leanbits.heads import Head
from leanbits.models import Plan, build


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


def _toml_safe(obj: Any) -> Any:
    """TOML has no null: drop None values, turn tuples into lists."""
    if isinstance(obj, dict):
        return {str(k): _toml_safe(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list | tuple):
        return [_toml_safe(v) for v in obj if v is not None]
    return obj


def write_toml(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, tomli_w.dumps(_toml_safe(data)))


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: not a valid TOML file ({exc})") from None


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))


def save(
    directory: str | Path,
    model: nn.Module,
    plan: Plan,
    head: Head,
    config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    masks: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a snapshot directory (see module docstring) and return its path."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    # model.json marks a complete snapshot: remove it first so a crash mid-save never
    # leaves an old model.json beside new weights.
    paths.model_json(d).unlink(missing_ok=True)
    _save_tensors(paths.weights(d), model.state_dict())
    if masks:
        _save_tensors(paths.masks(d), {k: v.to(torch.uint8) for k, v in masks.items()})
    else:
        paths.masks(d).unlink(missing_ok=True)
    write_toml(paths.config(d), config or {})
    write_text_atomic(paths.metrics(d), json.dumps(metrics or {}, indent=2, sort_keys=True))
    write_text_atomic(
        paths.model_json(d),
        json.dumps({"plan": plan.to_dict(), "head": head.to_dict()}, indent=2),
    )
    return d


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise FormatError(f"{path}: cannot read safetensors file ({exc})") from None


def load(directory: str | Path) -> Snapshot:
    """Read a snapshot directory written by :func:`save`.

    Raises:
        FormatError: the directory is not a complete snapshot or a file is corrupt.
    """
    d = Path(directory)
    if not paths.model_json(d).is_file():
        raise FormatError(
            f"{d} is not a leanbits snapshot (no {paths.model_json(d).name}); "
            "pass a directory written by `leanbits train` or `leanbits prune`"
        )
    try:
        meta = json.loads(paths.model_json(d).read_text(encoding="utf-8"))
        plan = Plan.from_dict(meta["plan"])
        head = Head.from_dict(meta["head"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise FormatError(f"{paths.model_json(d)}: malformed ({exc})") from None
    model = build(plan)
    state = load_tensors(paths.weights(d))
    expected = model.state_dict()
    if set(state) != set(expected):
        raise FormatError(
            f"{paths.weights(d)}: tensors {sorted(set(state) ^ set(expected))} do not match "
            "the plan in model.json"
        )
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise FormatError(
                f"{paths.weights(d)}: {k} has shape {tuple(v.shape)}, plan says "
                f"{tuple(expected[k].shape)}"
            )
    model.load_state_dict(state)
    masks = None
    if paths.masks(d).is_file():
        masks = {k: v.to(torch.bool) for k, v in load_tensors(paths.masks(d)).items()}
    config = read_toml(paths.config(d)) if paths.config(d).is_file() else {}
    metrics = {}
    if paths.metrics(d).is_file():
        try:
            metrics = json.loads(paths.metrics(d).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise FormatError(f"{paths.metrics(d)}: malformed JSON ({exc})") from None
    return Snapshot(model, plan, head, config, metrics, masks, d)
