"""The ``.lbits`` container: a quantized, sparse model in one file whose size is its bit count.

Layout (``docs/FORMAT.md`` has it field by field)::

    "LBIT"  version(1 byte)  BODY (one bit stream, zero-padded to a byte)  CRC32 (4 bytes)

The body holds the header (flags, plan, head), then each state-dict tensor in order: a 2-bit
tag and, for a quantized weight, its settings, codebook/scales, positions and values. Every
write goes through a :class:`BitWriter` that tallies bits per (layer, purpose); the
:class:`~leanbits.bits.account.Account` is that tally, so the file size equals
``ceil(account.total_bits / 8)`` by construction. The reader tallies the same way.

Reading is defensive: magic, version and checksum are verified before anything is parsed,
every declared length is checked against the bits left before anything is allocated, and
every failure is reported as :class:`~leanbits.errors.FormatError`.
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections import OrderedDict, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from leanbits.bits.account import Account, LayerAccount
from leanbits.bits.entropy import decode_symbols, empirical_entropy_bits, encode_symbols
from leanbits.bits.index import (
    POSITION_ENCODINGS,
    choose_relative_r,
    coded_decode,
    coded_encode,
    fixed_width,
    info_bound_bits,
    relative_decode,
    relative_encode,
)
from leanbits.bits.quantize import (
    QUANTIZERS,
    Quantized,
    check_bits,
    dequantize,
    quantize_kmeans,
    quantize_uniform,
    uniform_codebook,
)
from leanbits.errors import ConfigError, FormatError
from leanbits.fileio import write_bytes_atomic
from leanbits.heads import HEADS, Head, binary_code
from leanbits.models import Plan, build

MAGIC = b"LBIT"
VERSION = 1
#: magic + version + CRC32, the byte-aligned frame around the body
FRAME_BITS = 8 * (len(MAGIC) + 1 + 4)

# Code tables: a field's stored number is the index into these tuples.
FAMILY_CODES = ("mlp", "lenet5", "convnet")
HEAD_CODES = HEADS  # ("softmax", "llr", "llr-code")
DTYPES = ("float32", "float16", "bfloat16")
QUANT_CODES = ("kmeans", "uniform")
INDEX_CODES = POSITION_ENCODINGS  # ("dense", "bitmask", "relative", "coded")
VALUE_CODES = ("fixed", "entropy")
INDEX_CHOICES = (*INDEX_CODES, "auto")
TAG_FLOAT, TAG_WEIGHT, TAG_INT = 0, 1, 2

#: A file may declare at most this many tensor elements per body bit (plus a slack), which
#: is ~8000x smaller than float32: no sane model comes close, while a forged header cannot
#: make the reader allocate gigabytes.
MAX_ELEMENTS_PER_BIT = 256
ELEMENT_SLACK = 1 << 20
MAX_NDIM = 16
MAX_CLASSES = 1 << 16

Key = tuple[str | None, str]
HEADER: Key = (None, "header")


# ------------------------------------------------------------------------ bit streams


def _uints_to_bits(values: np.ndarray, width: int) -> np.ndarray:
    """Unsigned ints -> MSB-first bits (uint8 0/1), ``width`` per value."""
    v = np.asarray(values).astype(np.uint64).ravel()
    out = np.empty((v.size, width), dtype=np.uint8)
    for j in range(width):
        out[:, j] = (v >> np.uint64(width - 1 - j)) & np.uint64(1)
    return out.ravel()


def _bits_to_uints(bits: np.ndarray, count: int, width: int) -> np.ndarray:
    m = bits.reshape(count, width)
    out = np.zeros(count, dtype=np.uint64)
    for j in range(width):
        out = (out << np.uint64(1)) | m[:, j].astype(np.uint64)
    return out


class BitWriter:
    """Append-only MSB-first bit stream that tallies every bit by ``(layer, purpose)``."""

    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []
        self.nbits = 0
        self.tally: dict[Key, int] = defaultdict(int)

    def _put(self, bits: np.ndarray, key: Key) -> None:
        self._chunks.append(bits)
        self.nbits += int(bits.size)
        self.tally[key] += int(bits.size)

    def uint(self, value: int, width: int, key: Key) -> None:
        """``value`` in exactly ``width`` bits."""
        value = int(value)
        if not 0 <= value < (1 << width):
            raise ValueError(f"{value} does not fit in {width} bits")
        self._put(_uints_to_bits(np.array([value]), width), key)

    def uv(self, value: int, key: Key) -> None:
        """Unsigned Exp-Golomb code: ``L-1`` zeros, then ``value + 1`` in its ``L`` bits."""
        value = int(value)
        if value < 0:
            raise ValueError(f"uv needs a non-negative value, got {value}")
        length = (value + 1).bit_length()
        self._put(np.zeros(length - 1, dtype=np.uint8), key)
        self.uint(value + 1, length, key)

    def array(self, values: np.ndarray, width: int, key: Key) -> None:
        """Each element as an unsigned ``width``-bit field."""
        values = np.asarray(values)
        if width == 0 or values.size == 0:
            return
        if values.size and (values.min() < 0 or int(values.max()) >= (1 << width)):
            raise ValueError(f"array values do not fit in {width} bits")
        self._put(_uints_to_bits(values, width), key)

    def extend(self, other: BitWriter) -> None:
        for chunk in other._chunks:
            self._chunks.append(chunk)
        self.nbits += other.nbits
        for k, v in other.tally.items():
            self.tally[k] += v

    def to_bytes(self) -> bytes:
        """The stream, zero-padded to whole bytes."""
        if not self._chunks:
            return b""
        return np.packbits(np.concatenate(self._chunks)).tobytes()


class BitReader:
    """Reads what :class:`BitWriter` wrote; refuses any read past the end (FormatError)."""

    def __init__(self, data: bytes, where: str) -> None:
        self.bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
        self.pos = 0
        self.where = where
        self.tally: dict[Key, int] = defaultdict(int)

    @property
    def remaining(self) -> int:
        return int(self.bits.size) - self.pos

    def fail(self, what: str) -> FormatError:
        return FormatError(f"{self.where}: corrupt .lbits file: {what} (at bit {self.pos})")

    def _take(self, count: int, key: Key) -> np.ndarray:
        if count < 0 or count > self.remaining:
            raise self.fail(f"needs {count} more bits but only {self.remaining} are left")
        out = self.bits[self.pos : self.pos + count]
        self.pos += count
        self.tally[key] += count
        return out

    def uint(self, width: int, key: Key) -> int:
        return int(_bits_to_uints(self._take(width, key), 1, width)[0]) if width else 0

    def uv(self, key: Key) -> int:
        window = self.bits[self.pos : self.pos + 64]
        ones = np.flatnonzero(window)
        if ones.size == 0:
            raise self.fail("unterminated or oversized variable-length integer")
        zeros = int(ones[0])
        self._take(zeros, key)
        return self.uint(zeros + 1, key) - 1

    def array(self, count: int, width: int, key: Key) -> np.ndarray:
        if count < 0:
            raise self.fail(f"negative count {count}")
        if width == 0:
            return np.zeros(count, dtype=np.uint64)
        if count > self.remaining // width:
            raise self.fail(f"declares {count} fields of {width} bits, only {self.remaining} left")
        return _bits_to_uints(self._take(count * width, key), count, width)


# -------------------------------------------------------------------------- floats


def _float_to_uints(t: Tensor, dtype: str) -> tuple[np.ndarray, int]:
    t = t.detach().cpu().reshape(-1)
    if dtype == "float32":
        return t.to(torch.float32).numpy().view(np.uint32), 32
    if dtype == "float16":
        return t.to(torch.float16).numpy().view(np.uint16), 16
    if dtype == "bfloat16":
        return t.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16), 16
    if dtype == "float64":
        return t.to(torch.float64).numpy().view(np.uint64), 64
    raise ValueError(dtype)


def _uints_to_float(u: np.ndarray, dtype: str) -> Tensor:
    """Bits of ``dtype`` floats -> float32 tensor (float64 stays float64)."""
    if dtype == "float32":
        return torch.from_numpy(u.astype(np.uint32).view(np.float32).copy())
    if dtype == "float16":
        return torch.from_numpy(u.astype(np.uint16).view(np.float16).copy()).to(torch.float32)
    if dtype == "bfloat16":
        raw = torch.from_numpy(u.astype(np.uint16).view(np.int16).copy())
        return raw.view(torch.bfloat16).to(torch.float32)
    return torch.from_numpy(u.astype(np.uint64).view(np.float64).copy())


def _round_trip(t: Tensor, dtype: str) -> Tensor:
    """``t`` as it comes back from storage at ``dtype`` (float32)."""
    u, _ = _float_to_uints(t, dtype)
    return _uints_to_float(u, dtype).reshape(t.shape)


# ----------------------------------------------------------------------- plan, head


def _write_plan(w: BitWriter, plan: Plan) -> None:
    w.uv(FAMILY_CODES.index(plan.family), HEADER)
    for v in plan.in_shape:
        w.uv(v, HEADER)
    for widths in (plan.conv, plan.fc):
        w.uv(len(widths), HEADER)
        for v in widths:
            w.uv(v, HEADER)
    w.uv(plan.out, HEADER)


def _read_plan(r: BitReader) -> Plan:
    family = r.uv(HEADER)
    if family >= len(FAMILY_CODES):
        raise r.fail(f"unknown model family code {family}")
    in_shape = tuple(r.uv(HEADER) for _ in range(3))
    lists = []
    for _ in range(2):
        count = r.uv(HEADER)
        if count > r.remaining:  # each width takes >= 1 bit
            raise r.fail(f"plan declares {count} layers")
        lists.append(tuple(r.uv(HEADER) for _ in range(count)))
    out = r.uv(HEADER)
    try:
        return Plan(FAMILY_CODES[family], in_shape, lists[0], lists[1], out)  # type: ignore[arg-type]
    except ConfigError as exc:
        raise r.fail(f"invalid plan ({exc})") from None


def _write_head(w: BitWriter, head: Head) -> None:
    w.uv(HEAD_CODES.index(head.kind), HEADER)
    w.uv(head.num_classes, HEADER)
    w.uint(head.llr_target is not None, 1, HEADER)
    if head.llr_target is not None:
        w.array(np.array([head.llr_target], dtype=np.float64).view(np.uint64), 64, HEADER)
    if head.kind == "llr-code":
        code = head.code.to(torch.int64)
        default = torch.equal(code, binary_code(head.num_classes).to(torch.int64))
        w.uint(default, 1, HEADER)
        if not default:
            w.uv(code.shape[1], HEADER)
            w.array(code.reshape(-1).numpy(), 1, HEADER)


def _read_head(r: BitReader) -> Head:
    kind = r.uv(HEADER)
    if kind >= len(HEAD_CODES):
        raise r.fail(f"unknown head code {kind}")
    num_classes = r.uv(HEADER)
    if not 2 <= num_classes <= MAX_CLASSES:
        raise r.fail(f"implausible number of classes {num_classes}")
    target = None
    if r.uint(1, HEADER):
        target = float(r.array(1, 64, HEADER).view(np.float64)[0])
    code = None
    if HEAD_CODES[kind] == "llr-code" and not r.uint(1, HEADER):
        m = r.uv(HEADER)
        if m < 1 or m > MAX_CLASSES:
            raise r.fail(f"implausible code length {m}")
        code = torch.from_numpy(r.array(num_classes * m, 1, HEADER).astype(np.float32))
        code = code.reshape(num_classes, m)
    try:
        return Head(HEAD_CODES[kind], num_classes, target, code)
    except ConfigError as exc:
        raise r.fail(f"invalid head ({exc})") from None


# ---------------------------------------------------------------------- weights


def _write_values(
    w: BitWriter, symbols: np.ndarray, alphabet: int, values: str, key: Key
) -> None:
    if symbols.size == 0 or alphabet <= 1:
        return  # nothing to say: a single possible symbol costs no bits
    if values == "fixed":
        w.array(symbols, fixed_width(alphabet), key)
        return
    coded = encode_symbols(symbols, alphabet)
    w.uint(coded.precision - 1, 4, key)
    w.array(coded.freqs, coded.precision, key)
    w.uv(coded.words.size, key)
    w.array(coded.words, 32, key)


def _read_values(r: BitReader, count: int, alphabet: int, values: str, key: Key) -> np.ndarray:
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if alphabet == 0:
        raise r.fail("values expected but the codebook is empty")
    if alphabet == 1:
        return np.zeros(count, dtype=np.int64)
    if values == "fixed":
        symbols = r.array(count, fixed_width(alphabet), key).astype(np.int64)
    else:
        precision = r.uint(4, key) + 1
        freqs = r.array(alphabet, precision, key).astype(np.int64)
        nwords = r.uv(key)
        words = r.array(nwords, 32, key).astype(np.uint32)
        if int(freqs.sum()) == 0:
            raise r.fail("all-zero frequency table")
        symbols = decode_symbols(words, freqs, count)
    if symbols.size and int(symbols.max()) >= alphabet:
        raise r.fail(f"value code {int(symbols.max())} outside alphabet of {alphabet}")
    return symbols


def _encode_weight(q: Quantized, index: str, values: str, layer: str) -> BitWriter:
    """One quantized weight's record: settings, codebook, positions, values."""
    w = BitWriter()
    kc, kp, kv = (layer, "codebook"), (layer, "positions"), (layer, "values")
    w.uint(QUANT_CODES.index(q.method), 1, HEADER)
    w.uint(q.bits - 1, 4, HEADER)
    w.uint(INDEX_CODES.index(index), 2, HEADER)
    w.uint(VALUE_CODES.index(values), 1, HEADER)
    if q.method == "uniform":
        w.uint(q.codebook.ndim == 2, 1, kc)
        w.array(q.scales.to(torch.float32).numpy().view(np.uint32), 32, kc)
    else:
        w.uv(q.num_levels, kc)
        w.array(q.codebook.to(torch.float32).numpy().view(np.uint32), 32, kc)

    codes = q.codes.reshape(-1).numpy()
    nonzero = codes >= 0
    positions = np.flatnonzero(nonzero)
    n, k, levels = codes.size, positions.size, q.num_levels
    w.uv(k, kp)
    if index == "dense":
        zero_symbol = k < n
        symbols, alphabet = codes + int(zero_symbol), levels + int(zero_symbol)
    elif index == "bitmask":
        w.array(nonzero.astype(np.uint8), 1, kp)
        symbols, alphabet = codes[positions], levels
    elif index == "relative":
        r = choose_relative_r(positions, levels)
        fields, filler = relative_encode(positions, r)
        w.uint(r - 1, 5, kp)
        w.uv(fields.size, kp)
        w.array(fields, r, kp)
        zero_symbol = bool(filler.any())
        symbols = np.zeros(fields.size, dtype=np.int64)
        symbols[~filler] = codes[positions] + int(zero_symbol)
        alphabet = levels + int(zero_symbol)
    else:  # coded
        coded = coded_encode(nonzero, q.codes.shape[0])
        if coded is not None:
            w.uint(coded.transpose, 1, kp)
            w.uint(coded.prior, 3, kp)
            w.uv(coded.words.size, kp)
            w.array(coded.words, 32, kp)
        symbols, alphabet = codes[positions], levels
    _write_values(w, symbols, alphabet, values, kv)
    return w


def _decode_weight(
    r: BitReader, shape: tuple[int, ...], layer: str
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """Read one weight record; returns (dequantized, nonzero mask, layer info)."""
    kc, kp, kv = (layer, "codebook"), (layer, "positions"), (layer, "values")
    quant = QUANT_CODES[r.uint(1, HEADER)]
    bits = r.uint(4, HEADER) + 1
    index = INDEX_CODES[r.uint(2, HEADER)]
    values = VALUE_CODES[r.uint(1, HEADER)]
    n = math.prod(shape)
    if len(shape) == 0:
        raise r.fail("a quantized tensor needs at least one dimension")
    rows = shape[0]
    if quant == "uniform":
        per_channel = bool(r.uint(1, kc))
        scales = r.array(rows if per_channel else 1, 32, kc).astype(np.uint32)
        codebook = uniform_codebook(torch.from_numpy(scales.view(np.float32).copy()), bits)
        if not per_channel:
            codebook = codebook.reshape(-1)
        levels = 1 << bits
    else:
        levels = r.uv(kc)
        if levels > (1 << bits):
            raise r.fail(f"codebook of {levels} entries for {bits}-bit codes")
        raw = r.array(levels, 32, kc).astype(np.uint32)
        codebook = torch.from_numpy(raw.view(np.float32).copy())

    k = r.uv(kp)
    if k > n:
        raise r.fail(f"{k} nonzeros in a tensor of {n}")
    if k and levels == 0:
        raise r.fail("nonzero weights but an empty codebook")
    codes = np.full(n, -1, dtype=np.int64)
    if index == "dense":
        zero_symbol = k < n
        symbols = _read_values(r, n, levels + int(zero_symbol), values, kv)
        codes = symbols - int(zero_symbol)
        if int((codes >= 0).sum()) != k:
            raise r.fail(f"dense values hold {int((codes >= 0).sum())} nonzeros, expected {k}")
    elif index == "relative":
        width = r.uint(5, kp) + 1
        entries = r.uv(kp)
        if not k <= entries <= n:
            raise r.fail(f"{entries} relative entries for {k} nonzeros of {n}")
        fields = r.array(entries, width, kp).astype(np.int64)
        zero_symbol = entries > k
        symbols = _read_values(r, entries, levels + int(zero_symbol), values, kv)
        filler = symbols == 0 if zero_symbol else np.zeros(entries, dtype=bool)
        if int((~filler).sum()) != k:
            raise r.fail(f"relative index holds {int((~filler).sum())} nonzeros, expected {k}")
        try:
            positions = relative_decode(fields, filler, n)
        except ValueError as exc:
            raise r.fail(str(exc)) from None
        codes[positions] = symbols[~filler] - int(zero_symbol)
    else:
        if index == "bitmask":
            mask = r.array(n, 1, kp).astype(bool)
            if int(mask.sum()) != k:
                raise r.fail(f"bitmask has {int(mask.sum())} nonzeros, expected {k}")
        elif 0 < k < n:
            transpose, prior = bool(r.uint(1, kp)), r.uint(3, kp)
            nwords = r.uv(kp)
            words = r.array(nwords, 32, kp).astype(np.uint32)
            mask = coded_decode(words, rows, n, k, transpose, prior)
        else:
            mask = np.full(n, k == n, dtype=bool)
        codes[mask] = _read_values(r, k, levels, values, kv)
    codes_t = torch.from_numpy(codes).reshape(shape)
    info = {
        "quant": quant, "bits": bits, "index": index, "values": values,
        "weights": n, "nonzero": k,
        "position_bound_bits": info_bound_bits(n, k),
        "value_entropy_bits": empirical_entropy_bits(codes[codes >= 0]),
    }
    return dequantize(codes_t, codebook), codes_t >= 0, info


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
    names = []
    for mod_name, mod in model.named_modules():
        if isinstance(mod, nn.Linear | nn.modules.conv._ConvNd) and mod.weight is not None:
            names.append(f"{mod_name}.weight" if mod_name else "weight")
    return names


def _layer_of(name: str) -> str:
    return name.rpartition(".")[0] or name


def _check_choice(what: str, value: Any, choices: Iterable[Any]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{what} must be one of {', '.join(map(str, choices))}; got {value!r}")


def _plan_shapes(plan: Plan) -> OrderedDict[str, tuple[int, ...]]:
    """State-dict names and shapes of ``build(plan)``, without allocating its weights."""
    with warnings.catch_warnings(), torch.device("meta"):
        # a forged plan may have zero-width layers; that is refused later, quietly here
        warnings.simplefilter("ignore")
        model = build(plan)
    return OrderedDict((k, tuple(v.shape)) for k, v in model.state_dict().items())


def _build_account(
    tally: dict[Key, int], layers: dict[str, dict[str, Any]], settings: dict[str, Any]
) -> Account:
    rows = []
    for name, info in layers.items():
        row = LayerAccount(name=name, **info)
        row.values_bits = tally.get((name, "values"), 0)
        row.position_bits = tally.get((name, "positions"), 0)
        row.codebook_bits = tally.get((name, "codebook"), 0)
        row.nonweight_bits = tally.get((name, "nonweight"), 0)
        rows.append(row)
    dense = 32 * sum(info["params"] for info in layers.values())
    return Account(rows, tally.get(HEADER, 0) + FRAME_BITS, dense, settings)


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
    kmeans_iters: int = 100,
) -> Encoded:
    """Quantize and encode ``model`` into ``.lbits`` bytes (see :func:`pack` for the args).

    Returns:
        :class:`Encoded` with the bytes, the account, and the state dict the file holds
        (what :func:`unpack` will return, bit for bit).
    """
    bits = check_bits(bits)
    _check_choice("quant", quant, QUANTIZERS)
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
        expected = _plan_shapes(plan)
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

    w = BitWriter()
    w.uint(plan is not None, 1, HEADER)
    w.uint(head is not None, 1, HEADER)
    w.uint(DTYPES.index(nonweight_dtype), 2, HEADER)
    if plan is not None:
        _write_plan(w, plan)
    if head is not None:
        _write_head(w, head)
    if plan is None:
        w.uv(len(state), HEADER)

    out_state: OrderedDict[str, Tensor] = OrderedDict()
    out_masks: dict[str, Tensor] = {}
    layers: dict[str, dict[str, Any]] = {}
    for name, tensor in state.items():
        layer = _layer_of(name)
        info = layers.setdefault(layer, {"params": 0})
        if plan is None:
            raw = name.encode("utf-8")
            w.uv(len(raw), HEADER)
            w.array(np.frombuffer(raw, dtype=np.uint8), 8, HEADER)
            w.uv(tensor.ndim, HEADER)
            for d in tensor.shape:
                w.uv(d, HEADER)
        tensor = tensor.detach().cpu()
        if name in weights:
            w.uint(TAG_WEIGHT, 2, HEADER)
            mask = masks.get(name)
            if quant == "kmeans":
                q = quantize_kmeans(tensor, bits, mask=mask, max_iter=kmeans_iters)
            else:
                q = quantize_uniform(tensor, bits, per_channel=per_channel, mask=mask)
            options = INDEX_CODES if index == "auto" else (index,)
            trials = [(_encode_weight(q, opt, values, layer), opt) for opt in options]
            record, chosen = min(trials, key=lambda t: t[0].nbits)
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
        elif tensor.is_floating_point():
            w.uint(TAG_FLOAT, 2, HEADER)
            u, width = _float_to_uints(tensor, nonweight_dtype)
            w.array(u, width, (layer, "nonweight"))
            out_state[name] = _uints_to_float(u, nonweight_dtype).reshape(tensor.shape)
            info["params"] += tensor.numel()
        else:
            w.uint(TAG_INT, 2, HEADER)
            ints = tensor.to(torch.int64).reshape(-1).numpy()
            w.array(ints.view(np.uint64), 64, (layer, "nonweight"))
            out_state[name] = tensor.to(torch.int64).clone()

    body = MAGIC + bytes([VERSION]) + w.to_bytes()
    data = body + zlib.crc32(body).to_bytes(4, "big")
    settings = {
        "bits": bits, "quant": quant, "index": index, "values": values,
        "nonweight_dtype": nonweight_dtype, "per_channel": per_channel,
    }
    account = _build_account(w.tally, layers, settings)
    if account.total_bytes != len(data):  # the account is the proof: never let them drift
        raise RuntimeError(f"bit account ({account.total_bytes} B) != file ({len(data)} B)")
    return Encoded(data, account, out_state, out_masks)


def _decode(data: bytes, where: str) -> Unpacked:
    """Parse ``.lbits`` bytes (after the frame checks in :func:`decode`)."""
    r = BitReader(data[len(MAGIC) + 1 : -4], where)
    has_plan, has_head = r.uint(1, HEADER), r.uint(1, HEADER)
    dtype_code = r.uint(2, HEADER)
    if dtype_code >= len(DTYPES):
        raise r.fail(f"unknown non-weight dtype code {dtype_code}")
    dtype = DTYPES[dtype_code]
    plan = _read_plan(r) if has_plan else None
    head = _read_head(r) if has_head else None
    limit = MAX_ELEMENTS_PER_BIT * r.bits.size + ELEMENT_SLACK
    if plan is not None:
        if head is not None and head.out_features != plan.out:
            raise r.fail(f"head reads {head.out_features} outputs, plan has {plan.out}")
        # Count the plan's elements on the meta device before building anything real.
        try:
            shapes: OrderedDict[str, tuple[int, ...]] | None = _plan_shapes(plan)
        except (RuntimeError, ValueError) as exc:
            raise r.fail(f"plan cannot be built ({exc})") from None
        count = len(shapes)
    else:
        shapes = None
        count = r.uv(HEADER)
        if count > r.remaining:  # every tensor takes at least its 2-bit tag
            raise r.fail(f"declares {count} tensors")

    state: OrderedDict[str, Tensor] = OrderedDict()
    masks: dict[str, Tensor] = {}
    layers: dict[str, dict[str, Any]] = {}
    total = 0
    names = list(shapes.items()) if shapes is not None else None
    for i in range(count):
        if names is not None:
            name, shape = names[i]
        else:
            length = r.uv(HEADER)
            raw = r.array(length, 8, HEADER).astype(np.uint8).tobytes()
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise r.fail("tensor name is not UTF-8") from None
            if name in state:
                raise r.fail(f"tensor {name!r} appears twice")
            ndim = r.uv(HEADER)
            if ndim > MAX_NDIM:
                raise r.fail(f"tensor {name!r} has {ndim} dimensions")
            shape = tuple(r.uv(HEADER) for _ in range(ndim))
        numel = math.prod(shape)
        total += numel
        if total > limit:
            raise r.fail(
                f"declares {total} elements, more than a file of {len(data)} bytes can hold "
                f"(at most {MAX_ELEMENTS_PER_BIT} per bit)"
            )
        layer = _layer_of(name)
        info = layers.setdefault(layer, {"params": 0})
        tag = r.uint(2, HEADER)
        if tag == TAG_WEIGHT:
            tensor, mask, winfo = _decode_weight(r, shape, layer)
            masks[name] = mask
            info.update(winfo)
            info["params"] += numel
        elif tag == TAG_FLOAT:
            width = 32 if dtype == "float32" else 16
            tensor = _uints_to_float(r.array(numel, width, (layer, "nonweight")), dtype)
            tensor = tensor.reshape(shape)
            info["params"] += numel
        elif tag == TAG_INT:
            raw64 = r.array(numel, 64, (layer, "nonweight"))
            tensor = torch.from_numpy(raw64.view(np.int64).copy()).reshape(shape)
        else:
            raise r.fail(f"unknown tensor tag {tag} for {name!r}")
        state[name] = tensor
    if r.remaining >= 8 or r.bits[r.pos :].any():
        raise r.fail(f"{r.remaining} unexpected bits after the last tensor")
    settings = _common_settings(layers.values(), dtype)
    account = _build_account(r.tally, layers, settings)
    return Unpacked(state, plan, head, masks, account)


def _common_settings(layers: Iterable[dict[str, Any]], dtype: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rows = [info for info in layers if "quant" in info]
    for key in ("bits", "quant", "index", "values"):
        seen = {info[key] for info in rows}
        out[key] = seen.pop() if len(seen) == 1 else ("mixed" if seen else None)
    out["nonweight_dtype"] = dtype
    return out


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
    if data[len(MAGIC)] != VERSION:
        raise FormatError(
            f"{where}: .lbits version {data[len(MAGIC)]} is not supported (this leanbits "
            f"reads version {VERSION})"
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
        raise FormatError(f"{where}: corrupt .lbits file ({type(exc).__name__}: {exc})") from exc


# --------------------------------------------------------------------------- API

#: BitsConfig fields that drive the CLI's re-fit, not the encoding
_REFIT_FIELDS = ("refit", "refit_lr", "refit_batch_size", "seed")


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
            ``masks``, ``per_channel`` (see :func:`count_bits`), ``kmeans_iters``. The
            re-fit fields of a ``BitsConfig`` are accepted too, so ``**to_dict(cfg)`` works,
            but a re-fit needs data: with ``refit > 0`` use
            :func:`leanbits.bits.cli.quantize_snapshot` instead.

    Returns:
        The :class:`Account`; ``account.total_bytes`` is the file size.

    Example:
        >>> acc = pack(model, "lenet.lbits", plan, head, bits=4)  # doctest: +SKIP
        >>> Path("lenet.lbits").stat().st_size == acc.total_bytes  # doctest: +SKIP
        True
    """
    for key in _REFIT_FIELDS:
        value = settings.pop(key, None)
        if key == "refit" and value:
            raise ConfigError(
                f"pack does not re-fit (refit={value}); call "
                "leanbits.bits.cli.quantize_snapshot(snapshot, cfg) and write its .data"
            )
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
