"""The ``.lbits`` file API: :func:`pack` quantizes a model and writes its file atomically,
:func:`unpack` reads a file back to its state, plan, head, masks and account, and
:func:`load` returns the runnable model. The bytes themselves are made and read by
:mod:`leanbits.bits.container`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from leanbits.bits.account import Account
from leanbits.bits.container import Unpacked, decode, encode
from leanbits.errors import ConfigError, FormatError
from leanbits.fileio import write_bytes_atomic
from leanbits.heads import Head
from leanbits.models import Plan, build

#: BitsConfig fields that drive training on data (re-fit, codebook fine-tuning), not the
#: encoding
_REFIT_FIELDS = ("refit", "refit_lr", "refit_batch_size", "seed", "codebook_epochs",
                 "codebook_lr")


def pack(
    model: nn.Module,
    path: str | Path,
    plan: Plan | None = None,
    head: Head | None = None,
    **settings: Any,
) -> Account:
    """Quantize ``model`` and write it as a ``.lbits`` file (atomically).

    Args:
        model: the model (a leanbits model with ``plan``, or any ``nn.Module``).
        path: output file.
        plan: width plan, stored so that :func:`load` can rebuild the network.
        head: output head, stored beside the plan.
        **settings: ``bits``, ``quant``, ``index``, ``values``, ``nonweight_dtype``,
            ``masks``, ``per_channel``, ``rate_lambda`` (see :func:`count_bits`),
            ``kmeans_iters``. The training fields of a ``BitsConfig`` are accepted too, so
            ``**to_dict(cfg)`` works, but training needs data: with ``refit > 0``,
            ``codebook_epochs > 0`` or ``nonweight_dtype="auto"`` use
            :func:`leanbits.bits.quantize_snapshot` instead.

    Returns:
        The :class:`Account`; ``account.total_bytes`` is the file size.

    Example:
        >>> acc = pack(model, "lenet.lbits", plan, head, bits=4)  # doctest: +SKIP
        >>> Path("lenet.lbits").stat().st_size == acc.total_bytes  # doctest: +SKIP
        True
    """
    for key in _REFIT_FIELDS:
        value = settings.pop(key, None)
        if key in ("refit", "codebook_epochs") and value:
            raise ConfigError(
                f"pack does not re-fit or fine-tune ({key}={value}); call "
                "leanbits.bits.quantize_snapshot(snapshot, cfg) and write its .data"
            )
    if settings.get("nonweight_dtype") == "auto":
        raise ConfigError("pack cannot choose nonweight_dtype auto (it needs validation "
                          "data); call leanbits.bits.quantize_snapshot(snapshot, cfg)")
    encoded = encode(model, plan, head, **settings)
    write_bytes_atomic(path, encoded.data)
    return encoded.account


def unpack(path: str | Path) -> Unpacked:
    """Read a ``.lbits`` file: ``(state, plan, head, masks, account)``.

    Raises:
        FormatError: the file is missing, truncated, corrupted or not a ``.lbits`` file.

    Example:
        >>> state, plan, head, masks, account = unpack("lenet.lbits")  # doctest: +SKIP
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise FormatError(f"{p}: cannot read ({exc.strerror or exc})") from None
    return decode(data, str(p))


def load(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """The model a ``.lbits`` file holds, ready to run.

    Args:
        path: the file.
        model: a template whose state dict is filled (needed for a file packed without a
            plan); by default the network is rebuilt from the plan in the file.

    Returns:
        The model (the template itself when one is given).

    Example:
        >>> net = load("lenet.lbits")  # doctest: +SKIP
    """
    unpacked = unpack(path)
    if model is None:
        if unpacked.plan is None:
            raise FormatError(
                f"{path}: packed without a plan; pass the network as load(path, model=template)"
            )
        model = build(unpacked.plan)
    try:
        model.load_state_dict(unpacked.state, strict=True)
    except RuntimeError as exc:
        raise FormatError(f"{path}: does not fit the given model: {exc}") from None
    return model
