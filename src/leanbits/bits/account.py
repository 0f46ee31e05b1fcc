"""The bit account: every bit of a ``.lbits`` file, per layer and per purpose.

This module owns the account's data model and its table; it encodes nothing. An
:class:`Account` is not an estimate: :func:`leanbits.bits.container.count_bits` encodes the
model exactly as :func:`leanbits.bits.pack` writes it and adds up the bits each part of the
encoder wrote, so ``Account.total_bytes`` equals the size of the packed file, and reading a
file back tallies the same numbers again.

Columns per layer (a layer is a module, e.g. ``fc1`` holding ``fc1.weight`` and ``fc1.bias``):

* ``values``: the value codes of the stored weights, with the frequency table an
  entropy coder needs;
* ``positions``: where the nonzeros are (nonzero count, gap width, coded words, ...);
* ``codebook``: codebook entries or quantization scales;
* ``nonweight``: biases and other non-weight tensors at their storage precision.

``header`` holds the magic number, version, plan, head, per-tensor tags and settings,
the checksum, and (for a model without a plan) tensor names and shapes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from leanbits.bits.stream import HEADER, Key
from leanbits.results import compression


@dataclass
class LayerAccount:
    """Bits of one layer (module).

    Attributes:
        name: module name (``fc1``).
        params: elements of all the layer's float tensors.
        weights: ``n``, elements of its quantized weight (0 if it has none).
        nonzero: ``k``, nonzero weights.
        quant, bits, index, values: how the weight was stored (None without a weight).
        values_bits, position_bits, codebook_bits, nonweight_bits: exact bits written.
        position_bound_bits: ``log2 C(n, k)``, the least a code needs when every placement
            of the k nonzeros is equally likely; a structured mask (dead rows or columns)
            can be coded below it by the adaptive `coded` index.
        value_entropy_bits: ``k * H`` of the empirical distribution of the nonzero codes.
    """

    name: str
    params: int = 0
    weights: int = 0
    nonzero: int = 0
    quant: str | None = None
    bits: int | None = None
    index: str | None = None
    values: str | None = None
    values_bits: int = 0
    position_bits: int = 0
    codebook_bits: int = 0
    nonweight_bits: int = 0
    position_bound_bits: float = 0.0
    value_entropy_bits: float = 0.0

    @property
    def total_bits(self) -> int:
        return self.values_bits + self.position_bits + self.codebook_bits + self.nonweight_bits

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["total_bits"] = self.total_bits
        return d


@dataclass
class Account:
    """Bits of a whole packed model.

    Attributes:
        layers: one :class:`LayerAccount` per module, in state-dict order.
        header_bits: magic, version, plan, head, per-tensor tags, checksum (see module doc).
        dense_float32_bits: ``32 *`` elements of all float tensors (the uncompressed model).
        settings: how the model was encoded (bits, quant, index, values, nonweight_dtype, ...).
        dense_params: parameters of the original dense model when the packed model has
            fewer (a pruned model's compact rebuild, dead units removed); None: the packed
            model's own parameters are the dense model's. :attr:`compression` divides by it.

    Example:
        >>> acc = count_bits(model, bits=4)  # doctest: +SKIP
        >>> acc.total_bytes == Path("model.lbits").stat().st_size  # after pack()  # doctest: +SKIP
        True
    """

    layers: list[LayerAccount]
    header_bits: int
    dense_float32_bits: int
    settings: dict[str, Any] = field(default_factory=dict)
    dense_params: int | None = None

    @classmethod
    def from_tally(
        cls,
        tally: Mapping[Key, int],
        layers: Mapping[str, Mapping[str, Any]],
        settings: dict[str, Any],
        frame_bits: int,
    ) -> Account:
        """The account of a bit stream.

        Args:
            tally: bits per ``(layer, purpose)`` as a BitWriter or BitReader counted them.
            layers: per layer, the :class:`LayerAccount` fields other than bit counts
                (``params`` always; ``quant``, ``bits``, ``weights``, ... for a weight).
            settings: how the model was encoded.
            frame_bits: the byte-aligned frame around the stream (magic, version, CRC).

        Returns:
            The :class:`Account`.
        """
        rows = []
        for name, info in layers.items():
            row = LayerAccount(name=name, **info)
            row.values_bits = tally.get((name, "values"), 0)
            row.position_bits = tally.get((name, "positions"), 0)
            row.codebook_bits = tally.get((name, "codebook"), 0)
            row.nonweight_bits = tally.get((name, "nonweight"), 0)
            rows.append(row)
        dense = 32 * sum(info["params"] for info in layers.values())
        return cls(rows, tally.get(HEADER, 0) + frame_bits, dense, settings)

    def _sum(self, attr: str) -> Any:
        return sum(getattr(layer, attr) for layer in self.layers)

    @property
    def values_bits(self) -> int:
        return self._sum("values_bits")

    @property
    def position_bits(self) -> int:
        return self._sum("position_bits")

    @property
    def codebook_bits(self) -> int:
        return self._sum("codebook_bits")

    @property
    def nonweight_bits(self) -> int:
        return self._sum("nonweight_bits")

    @property
    def total_bits(self) -> int:
        """Every bit written, the final byte's padding excepted."""
        return self.header_bits + self._sum("total_bits")

    @property
    def total_bytes(self) -> int:
        """File size: ``ceil(total_bits / 8)``."""
        return (self.total_bits + 7) // 8

    @property
    def padding_bits(self) -> int:
        return 8 * self.total_bytes - self.total_bits

    @property
    def compression(self) -> float:
        """32 x parameters of the original dense model over the total bits: the one
        definition (:func:`leanbits.results.compression`) every report uses; inf for no
        bits."""
        ratio = compression(self.dense_model_params, self.total_bits)
        return math.inf if ratio is None else ratio

    @property
    def dense_model_params(self) -> int:
        """Parameters of the original dense model (:attr:`dense_params`, else the packed
        model's own)."""
        return self.dense_params if self.dense_params is not None else self.params

    @property
    def position_bound_bits(self) -> float:
        """Sum over layers of ``log2 C(n, k)``."""
        return self._sum("position_bound_bits")

    @property
    def value_entropy_bits(self) -> float:
        return self._sum("value_entropy_bits")

    @property
    def params(self) -> int:
        return self._sum("params")

    @property
    def weights(self) -> int:
        return self._sum("weights")

    @property
    def nonzero(self) -> int:
        return self._sum("nonzero")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict: settings, per-layer rows and totals."""
        return {
            "settings": dict(self.settings),
            "layers": [layer.to_dict() for layer in self.layers],
            "header_bits": self.header_bits,
            "values_bits": self.values_bits,
            "position_bits": self.position_bits,
            "codebook_bits": self.codebook_bits,
            "nonweight_bits": self.nonweight_bits,
            "total_bits": self.total_bits,
            "total_bytes": self.total_bytes,
            "padding_bits": self.padding_bits,
            "params": self.params,
            "weights": self.weights,
            "nonzero": self.nonzero,
            "dense_float32_bits": self.dense_float32_bits,
            "dense_params": self.dense_model_params,
            "compression": self.compression,
            "position_bound_bits": self.position_bound_bits,
            "value_entropy_bits": self.value_entropy_bits,
            "bits_per_nonzero": self.total_bits / self.nonzero if self.nonzero else math.inf,
        }

    def format_table(self) -> str:
        """Human-readable per-layer table with totals (what ``leanbits bits`` prints)."""
        head = (
            f"{'layer':<10} {'params':>9} {'nonzero':>9} {'values':>9} {'positions':>10} "
            f"{'(bound)':>10} {'codebook':>9} {'nonweight':>10} {'total':>10}"
        )
        lines = [head, "-" * len(head)]
        for r in self.layers:
            lines.append(
                f"{r.name:<10} {r.params:>9} {r.nonzero:>9} {r.values_bits:>9} "
                f"{r.position_bits:>10} {r.position_bound_bits:>10.0f} {r.codebook_bits:>9} "
                f"{r.nonweight_bits:>10} {r.total_bits:>10}"
            )
        lines.append(f"{'header':<10} {'':>9} {'':>9} {'':>9} {'':>10} {'':>10} {'':>9} "
                     f"{'':>10} {self.header_bits:>10}")
        lines.append("-" * len(head))
        lines.append(
            f"{'total':<10} {self.params:>9} {self.nonzero:>9} {self.values_bits:>9} "
            f"{self.position_bits:>10} {self.position_bound_bits:>10.0f} "
            f"{self.codebook_bits:>9} {self.nonweight_bits:>10} {self.total_bits:>10}"
        )
        s = self.settings
        lines.append("")
        lines.append(
            f"total {self.total_bits} bits = {self.total_bytes} bytes; compression "
            f"{self.compression:.1f}x = 32 x {self.dense_model_params} parameters of the "
            f"dense model / total bits ({4 * self.dense_model_params} bytes as float32)"
        )
        lines.append(
            f"positions {self.position_bits} bits vs information bound log2 C(n,k) = "
            f"{self.position_bound_bits:.0f}; values {self.values_bits} bits vs empirical "
            f"entropy {self.value_entropy_bits:.0f}"
        )
        if s:
            lines.append("settings: " + ", ".join(f"{k}={v}" for k, v in s.items()))
        return "\n".join(lines)


def common_settings(layers: Iterable[Mapping[str, Any]], dtype: str) -> dict[str, Any]:
    """Settings of a decoded file: each weight setting if all layers share it, else "mixed"."""
    out: dict[str, Any] = {}
    rows = [info for info in layers if "quant" in info]
    for key in ("bits", "quant", "index", "values"):
        seen = {info[key] for info in rows}
        out[key] = seen.pop() if len(seen) == 1 else ("mixed" if seen else None)
    out["nonweight_dtype"] = dtype
    return out
