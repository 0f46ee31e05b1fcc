"""The ``[bits]`` settings, and the names they choose from: quantizers, position indexes,
storage precisions (:mod:`leanbits.bits` implements them; a ``.lbits`` file stores a
name as its index in these tuples, so their order is part of the format)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from leanbits.config import MAX_SEED, option

#: storage precisions of tensors in a ``.lbits`` file
DTYPES = ("float32", "float16", "bfloat16", "int8")
#: weight quantizers
QUANT_CODES = ("kmeans", "uniform", "ecsq")
#: how the positions of nonzero weights are stored (:mod:`leanbits.bits.index`)
POSITION_ENCODINGS = ("dense", "bitmask", "relative", "coded")
#: what a config may ask for: a position encoding, or the smallest per layer
INDEX_CHOICES = (*POSITION_ENCODINGS, "auto")
#: ``rate_lambda`` of ``ecsq`` when none is given (relative squared error per coded bit)
DEFAULT_RATE_LAMBDA = 0.02

#: BitsConfig fields that :func:`leanbits.bits.pack` takes; the others drive the re-fit
ENCODE_FIELDS = ("bits", "quant", "per_channel", "index", "values", "nonweight_dtype",
                 "rate_lambda")
#: ``nonweight_dtype`` value that picks int8 when it keeps float16's validation accuracy
AUTO_DTYPE = "auto"


@dataclass(frozen=True)
class BitsConfig:
    """How a snapshot is quantized, indexed, entropy-coded and (optionally) re-fitted."""

    bits: int = option(4, "bits per nonzero weight: a codebook of at most 2**bits values",
                       minimum=1, maximum=16)
    quant: str = option("kmeans", "weight quantizer: k-means codebook, symmetric uniform, or "
                        "ecsq (entropy-constrained: fewer coded bits for the same error)",
                        choices=QUANT_CODES)
    per_channel: bool = option(False, "uniform only: one scale per output channel, not per layer")
    rate_lambda: float | None = option(
        None, "ecsq only: relative squared error one coded bit is worth; larger gives fewer "
        f"bits (default {DEFAULT_RATE_LAMBDA})", minimum=0.0)
    index: str = option("coded", "how positions of nonzero weights are stored (auto: the "
                        "smallest per layer)", choices=INDEX_CHOICES)
    values: str = option("entropy", "value codes: range-coded with a stored frequency table, "
                         "or fixed width", choices=("entropy", "fixed"))
    nonweight_dtype: str = option("float16", "storage precision of biases and other "
                                  "non-weight tensors (int8: a float32 scale per tensor and a "
                                  "byte each; auto: int8 when it keeps float16's validation "
                                  "accuracy)", choices=(*DTYPES, AUTO_DTYPE))
    codebook_epochs: int = option(0, "kmeans / ecsq: after quantizing, train the codebook "
                                  "entries (codes fixed: same bits) and the non-weights for "
                                  "this many epochs; 0 = off", minimum=0)
    codebook_lr: float = option(1e-4, "Adam step size of the codebook fine-tuning",
                                minimum=0.0)
    refit: int = option(0, "after quantizing, re-fit the non-weight parameters (weights "
                        "frozen) for this many epochs with Adam; 0 = off", minimum=0)
    refit_lr: float = option(1e-3, "Adam learning rate of the re-fit", minimum=0.0)
    refit_batch_size: int = option(128, "minibatch size of the re-fit", minimum=1)
    seed: int = option(0, "seed of the re-fit's minibatch order", minimum=0, maximum=MAX_SEED)

    def encode_settings(self) -> dict[str, Any]:
        """The keyword arguments of :func:`leanbits.bits.pack` / ``count_bits`` (``auto``
        non-weights are encoded as float16 first; :func:`quantize_snapshot` chooses)."""
        out = {k: getattr(self, k) for k in ENCODE_FIELDS}
        if out["nonweight_dtype"] == AUTO_DTYPE:
            out["nonweight_dtype"] = "float16"
        return out

    def needs_data(self) -> bool:
        """Whether :func:`quantize_snapshot` trains or validates (and so needs the data)."""
        return self.refit > 0 or self.codebook_epochs > 0 or self.nonweight_dtype == AUTO_DTYPE
