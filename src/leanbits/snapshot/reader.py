"""Reading a snapshot: :func:`load` checks every file against the schema before it builds
anything - ``model.json`` types and ranges (the plan's ceilings), tensor names, dtypes and
shapes from the safetensors headers, finite weights, 0/1 masks of the right shapes,
``config.toml`` sections - and returns a :class:`Snapshot`; :func:`check_fits_data` refuses
data a loaded model cannot read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from leanbits import paths
from leanbits.errors import ConfigError, FormatError
from leanbits.heads import Head
from leanbits.models import Plan, build
from leanbits.snapshot.files import load_tensors, read_json, read_toml

#: safetensors dtypes a snapshot's weights may have (all load into float32 models)
WEIGHT_DTYPES = ("F16", "BF16", "F32", "F64")
#: safetensors dtypes a snapshot's masks may have
MASK_DTYPES = ("U8", "BOOL")
#: config.toml sections that must be tables when present
CONFIG_SECTIONS = ("data", "train", "prune", "bits")


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
    meta = read_json(path)
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
    metrics = read_json(paths.metrics(d)) if paths.metrics(d).is_file() else {}
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
