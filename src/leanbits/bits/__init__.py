"""Count every bit: quantize, index and entropy-code a model into a ``.lbits`` file.

``count_bits`` reports, per layer, the exact bits of values, positions, codebooks and
non-weight parameters, plus header and totals; ``pack`` writes the same bits to a file
whose size is the total; ``unpack`` / ``load`` read it back bit for bit. The pipeline on
snapshots and files (``BitsConfig``, ``quantize_snapshot``, ``evaluate_lbits``) is in
:mod:`.pipeline`.

Example:
    >>> from leanbits.bits import count_bits, pack, load
    >>> acc = pack(model, "net.lbits", plan, head, bits=4)  # doctest: +SKIP
    >>> print(acc.format_table())  # doctest: +SKIP
    >>> net = load("net.lbits")  # doctest: +SKIP
"""

from leanbits.bits.account import Account, LayerAccount
from leanbits.bits.container import Unpacked, count_bits
from leanbits.bits.files import load, pack, unpack
from leanbits.bits.finetune import codebooks_of, finetune_codebook
from leanbits.bits.pipeline import (
    BitsConfig,
    evaluate_lbits,
    quantize_snapshot,
    snapshot_bits,
    unpack_to_snapshot,
)
from leanbits.bits.quantize import (
    QUANTIZERS,
    Quantized,
    dequantize,
    quantize,
    quantize_ecsq,
    quantize_kmeans,
    quantize_uniform,
)

__all__ = [
    "Account",
    "BitsConfig",
    "LayerAccount",
    "QUANTIZERS",
    "Quantized",
    "Unpacked",
    "codebooks_of",
    "count_bits",
    "dequantize",
    "evaluate_lbits",
    "finetune_codebook",
    "load",
    "pack",
    "quantize",
    "quantize_ecsq",
    "quantize_kmeans",
    "quantize_snapshot",
    "quantize_uniform",
    "snapshot_bits",
    "unpack",
    "unpack_to_snapshot",
]
