"""The ``.lbits`` container: a quantized, sparse model in one file whose size is its bit count.

Layout (``docs/FORMAT.md`` has it field by field)::

    "LBIT"  version(1 byte)  BODY (one bit stream, zero-padded to a byte)  CRC32 (4 bytes)

This module owns the frame and the order of records: :func:`encode` quantizes a model and
writes the header (flags, plan, head) and then each state-dict tensor's record
(:mod:`leanbits.bits.records`) into one :class:`~leanbits.bits.stream.BitWriter`, which
tallies bits per (layer, purpose); that tally is the
:class:`~leanbits.bits.account.Account`, so :func:`count_bits` is :func:`encode` without
the file and the file size equals ``ceil(account.total_bits / 8)`` by construction.
:func:`decode` reads the same records and tallies the same way. The file API (``pack``,
``unpack``, ``load``) is :mod:`leanbits.bits.files`.

Reading is defensive: magic, version and checksum are verified before anything is parsed,
every declared size is checked against the bits left and against the ceilings of
:mod:`leanbits.bits.records` (elements, tensors, plan layers, coded rows) before anything is
allocated or looped over, and every failure is reported as
:class:`~leanbits.errors.FormatError` in one line.
"""

from __future__ import annotations

import math
import zlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from leanbits.bits.account import Account, common_settings
from leanbits.bits.entropy import empirical_entropy_bits
from leanbits.bits.index import info_bound_bits
from leanbits.bits.quantize import check_bits, check_quant_options, quantize
from leanbits.bits.records import (
    INDEX_CODES,
    MAX_CODED_ROWS,
    MAX_ELEMENTS,
    MAX_TENSORS,
    TAG_FLOAT,
    TAG_INT,
    TAG_SPARSE,
    TAG_WEIGHT,
    VALUE_CODES,
    Budget,
    check_writable,
    decode_nonweight,
    decode_weight,
    encode_nonweight,
    encode_weight,
    plan_shapes,
    read_head,
    read_name_shape,
    read_plan,
    write_head,
    write_name_shape,
    write_plan,
)
from leanbits.bits.stream import HEADER, BitReader, BitWriter
from leanbits.errors import ConfigError, FormatError
from leanbits.heads import Head
from leanbits.models import Plan
from leanbits.models.layers import weight_layers
from leanbits.settings.bits import DTYPES, INDEX_CHOICES, QUANT_CODES

MAGIC = b"LBIT"
#: the newest version written: 3 adds sparse non-weights (:data:`TAG_SPARSE`). A file
#: without one is written as version 2, which leanbits has read since int8 non-weights,
#: so older readers still read it; version 1 (a 1-bit quantizer field, no row counts in
#: coded positions, no int8 non-weights) is still read
VERSION = 3
#: the version of a file with no sparse non-weight
PLAIN_VERSION = 2
READABLE_VERSIONS = (1, 2, 3)
#: magic + version + CRC32, the byte-aligned frame around the body
FRAME_BITS = 8 * (len(MAGIC) + 1 + 4)

#: A file may declare at most this many tensor elements per body bit (plus a slack), which
#: is ~8000x smaller than float32: no sane model comes close, while a forged header cannot
#: make the reader allocate gigabytes.
MAX_ELEMENTS_PER_BIT = 256
ELEMENT_SLACK = 1 << 20


# ------------------------------------------------------------------------- model


class Unpacked(NamedTuple):
    """What a ``.lbits`` file holds.

    Attributes:
        state: state dict (float32 weights exactly as quantized, non-weights as stored).
        plan: the width plan, or None for a model packed without one.
        head: the output head, or None.
        masks: ``{weight name: bool tensor}``, True where a weight is stored as nonzero.
        account: the bit account, tallied while reading.
    """

    state: OrderedDict[str, Tensor]
    plan: Plan | None
    head: Head | None
    masks: dict[str, Tensor]
    account: Account


@dataclass
class Encoded:
    """Result of :func:`encode`: the file's bytes, its account and the model it holds."""

    data: bytes
    account: Account
    state: OrderedDict[str, Tensor]
    masks: dict[str, Tensor]


def weight_names(model: nn.Module) -> list[str]:
    """State-dict names of the weights that get quantized: Linear and Conv weights."""
    return [f"{name}.weight" if name else "weight" for name, _ in weight_layers(model)]


def _layer_of(name: str) -> str:
    return name.rpartition(".")[0] or name


def _check_choice(what: str, value: Any, choices: Iterable[Any]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{what} must be one of {', '.join(map(str, choices))}; got {value!r}")


def encode(
    model: nn.Module,
    plan: Plan | None = None,
    head: Head | None = None,
    *,
    bits: int = 4,
    quant: str = "kmeans",
    index: str = "coded",
    values: str = "entropy",
    nonweight_dtype: str = "float16",
    masks: dict[str, Tensor] | None = None,
    per_channel: bool = False,
    rate_lambda: float | None = None,
    kmeans_iters: int = 100,
) -> Encoded:
    """Quantize and encode ``model`` into ``.lbits`` bytes (see :func:`pack` for the args).

    Returns:
        :class:`Encoded` with the bytes, the account, and the state dict the file holds
        (what :func:`unpack` will return, bit for bit).
    """
    bits = check_bits(bits)
    _check_choice("quant", quant, QUANT_CODES)  # the quantizers a file can name
    check_quant_options(quant, per_channel=per_channel, rate_lambda=rate_lambda)
    _check_choice("index", index, INDEX_CHOICES)
    _check_choice("values", values, VALUE_CODES)
    _check_choice("nonweight_dtype", nonweight_dtype, DTYPES)
    if plan is not None and not isinstance(plan, Plan):
        raise TypeError(f"plan must be a leanbits Plan or None, got {type(plan).__name__}")
    if head is not None and not isinstance(head, Head):
        raise TypeError(f"head must be a leanbits Head or None, got {type(head).__name__}")
    state = model.state_dict()
    weights = set(weight_names(model))
    masks = dict(masks or {})
    unknown = set(masks) - weights
    if unknown:
        raise ConfigError(
            f"masks for {sorted(unknown)} are not Linear/Conv weights of the model; "
            f"weights: {sorted(weights)}"
        )
    if plan is not None:
        expected = plan_shapes(plan)
        got = OrderedDict((k, tuple(v.shape)) for k, v in state.items())
        if list(expected.items()) != list(got.items()):
            raise ConfigError(
                "the model's state dict does not match its plan "
                f"(plan: {dict(expected)}, model: {dict(got)})"
            )
        if head is not None and head.out_features != plan.out:
            raise ConfigError(
                f"head reads {head.out_features} outputs but the plan has {plan.out}"
            )
    check_writable(state, plan)

    w = BitWriter()
    w.uint(plan is not None, 1, HEADER)
    w.uint(head is not None, 1, HEADER)
    w.uint(DTYPES.index(nonweight_dtype), 2, HEADER)
    if plan is not None:
        write_plan(w, plan)
    if head is not None:
        write_head(w, head)
    if plan is None:
        w.uv(len(state), HEADER)

    out_state: OrderedDict[str, Tensor] = OrderedDict()
    out_masks: dict[str, Tensor] = {}
    layers: dict[str, dict[str, Any]] = {}
    rows_left = MAX_CODED_ROWS
    sparse_nonweights = False
    for name, tensor in state.items():
        layer = _layer_of(name)
        info = layers.setdefault(layer, {"params": 0})
        if plan is None:
            write_name_shape(w, name, tuple(tensor.shape))
        tensor = tensor.detach().cpu()
        if name in weights:
            w.uint(TAG_WEIGHT, 2, HEADER)
            mask = masks.get(name)
            q = quantize(tensor, bits, quant, mask, per_channel=per_channel,
                         rate_lambda=rate_lambda, max_iter=kmeans_iters)
            options = INDEX_CODES if index == "auto" else (index,)
            trials = [(*encode_weight(q, opt, values, layer, rows_left), opt) for opt in options]
            trials = [t for t in trials if t[0] is not None]
            if not trials:
                raise ConfigError(
                    f"index coded cannot store {name}: the coded positions of a file scan at "
                    f"most {MAX_CODED_ROWS} matrix rows; use index auto or bitmask")
            record, scanned, chosen = min(trials, key=lambda t: t[0].nbits)
            rows_left -= scanned
            w.extend(record)
            out_state[name] = q.dequantized
            out_masks[name] = q.codes >= 0
            nz = q.codes[q.codes >= 0].numpy()
            info.update(
                quant=quant, bits=bits, index=chosen, values=values,
                weights=tensor.numel(), nonzero=int(nz.size),
                position_bound_bits=info_bound_bits(tensor.numel(), int(nz.size)),
                value_entropy_bits=empirical_entropy_bits(nz),
            )
            info["params"] += tensor.numel()
        else:
            out_state[name], tag = encode_nonweight(w, tensor, nonweight_dtype, layer)
            sparse_nonweights = sparse_nonweights or tag == TAG_SPARSE
            if tensor.is_floating_point():
                info["params"] += tensor.numel()

    version = VERSION if sparse_nonweights else PLAIN_VERSION
    body = MAGIC + bytes([version]) + w.to_bytes()
    data = body + zlib.crc32(body).to_bytes(4, "big")
    settings = {
        "bits": bits, "quant": quant, "index": index, "values": values,
        "nonweight_dtype": nonweight_dtype, "per_channel": per_channel,
    }
    if quant == "ecsq":
        settings["rate_lambda"] = rate_lambda
    account = Account.from_tally(w.tally, layers, settings, FRAME_BITS)
    if account.total_bytes != len(data):  # the account is the proof: never let them drift
        raise RuntimeError(f"bit account ({account.total_bytes} B) != file ({len(data)} B)")
    return Encoded(data, account, out_state, out_masks)


def count_bits(
    model: nn.Module,
    plan: Plan | None = None,
    head: Head | None = None,
    bits: int = 4,
    quant: str = "kmeans",
    index: str = "coded",
    values: str = "entropy",
    nonweight_dtype: str = "float16",
    masks: dict[str, torch.Tensor] | None = None,
    per_channel: bool = False,
    rate_lambda: float | None = None,
) -> Account:
    """Encode ``model`` as :func:`leanbits.bits.pack` would and account for every bit.

    Args:
        model: any ``nn.Module``; the weights of its Linear/Conv layers are quantized,
            every other tensor of its state dict is a non-weight.
        plan: width plan of a leanbits model (stored in the header; omit for other models,
            whose tensor names and shapes are stored instead).
        head: output head (stored in the header when given).
        bits: bits per nonzero weight, 1..16.
        quant: ``kmeans``, ``uniform`` or ``ecsq`` (:data:`leanbits.bits.quantize.QUANTIZERS`).
        index: ``dense``, ``bitmask``, ``relative``, ``coded`` or ``auto`` (smallest per layer).
        values: ``entropy`` (range-coded) or ``fixed`` (fixed-width codes).
        nonweight_dtype: ``float16``, ``bfloat16``, ``float32`` or ``int8`` (one float32
            scale per tensor, one byte per element).
        masks: optional ``{"fc1.weight": bool tensor}``; False entries count as zero.
        per_channel: uniform quantization with one scale per output channel.
        rate_lambda: ``ecsq`` only: relative squared error per coded bit (None: default).

    Returns:
        The :class:`Account`.

    Example:
        >>> from leanbits.models import build, preset
        >>> acc = count_bits(build(preset("lenet-300-100")), preset("lenet-300-100"), bits=4)
        >>> acc.total_bytes < 266610 * 4 / 7
        True
    """
    return encode(
        model, plan, head, bits=bits, quant=quant, index=index, values=values,
        nonweight_dtype=nonweight_dtype, masks=masks, per_channel=per_channel,
        rate_lambda=rate_lambda,
    ).account


def _first_line(exc: BaseException) -> str:
    """``Type: first line`` of an exception (torch errors can carry a C++ stack)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _decode(data: bytes, where: str) -> Unpacked:
    """Parse ``.lbits`` bytes (after the frame checks in :func:`decode`)."""
    version = data[len(MAGIC)]
    r = BitReader(data[len(MAGIC) + 1 : -4], where)
    has_plan, has_head = r.uint(1, HEADER), r.uint(1, HEADER)
    dtype_code = r.uint(2, HEADER)
    if dtype_code >= (3 if version == 1 else len(DTYPES)):
        raise r.fail(f"unknown non-weight dtype code {dtype_code}")
    dtype = DTYPES[dtype_code]
    plan = read_plan(r) if has_plan else None
    head = read_head(r) if has_head else None
    limit = min(MAX_ELEMENTS, MAX_ELEMENTS_PER_BIT * int(r.bits.size) + ELEMENT_SLACK)

    def refuse_elements(total: int) -> FormatError:
        return r.fail(
            f"declares {total} tensor elements; a file of {len(data)} bytes may hold at most "
            f"{limit} ({MAX_ELEMENTS_PER_BIT} per bit, never more than {MAX_ELEMENTS})"
        )

    if plan is not None:
        if head is not None and head.out_features != plan.out:
            raise r.fail(f"head reads {head.out_features} outputs, plan has {plan.out}")
        # Count the plan's elements on the meta device before building anything real.
        try:
            shapes: OrderedDict[str, tuple[int, ...]] | None = plan_shapes(plan)
        except (RuntimeError, ValueError) as exc:
            raise r.fail(f"plan cannot be built ({_first_line(exc)})") from None
        planned = sum(math.prod(shape) for shape in shapes.values())
        if planned > limit:
            raise refuse_elements(planned)
        count = len(shapes)
    else:
        shapes = None
        count = r.uv(HEADER)
        if count > min(MAX_TENSORS, r.remaining):  # each tensor takes at least a 2-bit tag
            raise r.fail(f"declares {count} tensors (at most {MAX_TENSORS})")

    state: OrderedDict[str, Tensor] = OrderedDict()
    masks: dict[str, Tensor] = {}
    layers: dict[str, dict[str, Any]] = {}
    budget = Budget(limit)
    names = list(shapes.items()) if shapes is not None else None
    for i in range(count):
        if names is not None:
            name, shape = names[i]
        else:
            name, shape = read_name_shape(r)
            if name in state:
                raise r.fail(f"tensor {name!r} appears twice")
        numel = math.prod(shape)
        if numel > budget.elements:
            raise refuse_elements(limit - budget.elements + numel)
        budget.elements -= numel
        layer = _layer_of(name)
        info = layers.setdefault(layer, {"params": 0})
        tag = r.uint(2, HEADER)
        if tag == TAG_WEIGHT:
            tensor, mask, winfo = decode_weight(r, shape, layer, budget, version)
            masks[name] = mask
            info.update(winfo)
            info["params"] += numel
        elif tag in (TAG_FLOAT, TAG_INT) or (tag == TAG_SPARSE and version >= 3):
            tensor = decode_nonweight(r, tag, shape, dtype, layer)
            if tag != TAG_INT:
                info["params"] += numel
        else:
            raise r.fail(f"unknown tensor tag {tag} for {name!r}")
        state[name] = tensor
    if r.remaining >= 8 or r.bits[r.pos :].any():
        raise r.fail(f"{r.remaining} unexpected bits after the last tensor")
    settings = common_settings(layers.values(), dtype)
    account = Account.from_tally(r.tally, layers, settings, FRAME_BITS)
    return Unpacked(state, plan, head, masks, account)


def decode(data: bytes, where: str = "<bytes>") -> Unpacked:
    """Parse the bytes of a ``.lbits`` file.

    Raises:
        FormatError: not a ``.lbits`` file, unsupported version, checksum mismatch
            (truncated or corrupted), or content that cannot be a valid model.
    """
    data = bytes(data)
    if len(data) < len(MAGIC) + 1 + 4:
        raise FormatError(f"{where}: too short to be a .lbits file ({len(data)} bytes)")
    if data[: len(MAGIC)] != MAGIC:
        raise FormatError(
            f"{where}: not a .lbits file (starts with {data[:4]!r}, expected {MAGIC!r})"
        )
    if data[len(MAGIC)] not in READABLE_VERSIONS:
        raise FormatError(
            f"{where}: .lbits version {data[len(MAGIC)]} is not supported (this leanbits "
            f"reads versions {', '.join(map(str, READABLE_VERSIONS))}); a newer leanbits "
            "wrote it"
        )
    stored = int.from_bytes(data[-4:], "big")
    if zlib.crc32(data[:-4]) != stored:
        raise FormatError(
            f"{where}: checksum mismatch: the file is truncated or corrupted; pack it again"
        )
    try:
        return _decode(data, where)
    except FormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - a forged file must never crash the reader
        raise FormatError(f"{where}: corrupt .lbits file ({_first_line(exc)})") from exc
