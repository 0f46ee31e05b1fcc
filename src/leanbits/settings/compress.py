"""The ``[compress]`` settings: a compression recipe for :mod:`leanbits.compression` (the
search behind ``leanbits compress``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from leanbits.config import make, option, to_dict
from leanbits.errors import ConfigError
from leanbits.settings.bits import DTYPES, INDEX_CHOICES, QUANT_CODES
from leanbits.settings.prune import PruneConfig


@dataclass(frozen=True)
class CompressConfig(PruneConfig):
    """A compression recipe: pruning methods (with every :class:`~leanbits.prune.PruneConfig`
    setting they use: epochs, learning rates, seed, ...), the quantizer grid, the sparsity
    bracket, the requirement and the epoch budget. ``method`` and ``sparsity`` are chosen
    by the search, so they must stay at their defaults."""

    methods: tuple[str, ...] = option(("finetune",), "pruning methods searched, each a "
                                      "`leanbits prune --method` name")
    bits: tuple[int, ...] = option((2, 3, 4, 5), "bit widths tried for the weights",
                                   minimum=1, maximum=16)
    quants: tuple[str, ...] = option(("kmeans", "ecsq"), "weight quantizers tried",
                                     choices=QUANT_CODES)
    rate_lambdas: tuple[float, ...] = option(
        (0.02,), "quantizer ecsq: rate weights tried (relative squared error per coded bit)",
        minimum=0.0)
    nonweight_dtypes: tuple[str, ...] = option(("float16", "int8"), "storage precisions "
                                               "tried for biases and other non-weights",
                                               choices=DTYPES)
    index: str = option("auto", "position index of the file", choices=INDEX_CHOICES)
    codebook_epochs: tuple[int, ...] = option(
        (0, 1), "epochs of codebook fine-tuning tried for each quantizer setting (codes and "
        "masks fixed, codebook entries and non-weights trained; 0 = off)", minimum=0)
    codebook_lr: float = option(1e-4, "Adam learning rate of codebook fine-tuning",
                                minimum=0.0)
    search_lo: float = option(0.5, "lowest sparsity tried", minimum=0.0, maximum=0.999999)
    search_hi: float = option(0.995, "highest sparsity tried", minimum=0.0, maximum=0.999999)
    search_tol: float = option(0.005, "stop bisecting when the bracket is this narrow",
                               minimum=1e-6)
    levels: int = option(2, "sparsity levels (the sparsest that met the requirement) whose "
                         "whole quantizer grid is scored", minimum=1)
    budget: int = option(100, "backprop epochs at most for all method runs and codebook "
                         "fine-tuning together", minimum=0)
    vd_search: bool = option(False, "method sparse-vd: bisect its sparsity like the other "
                             "methods, from the threshold's level up to search_hi (one "
                             "variational training; each level keeps the weights of lowest "
                             "log alpha and is fine-tuned for vd_finetune_epochs) instead of "
                             "taking the threshold's level alone")

    def prune_config(self) -> PruneConfig:
        """The methods' shared settings as a :class:`~leanbits.prune.PruneConfig`.

        Raises:
            ConfigError: ``method`` or ``sparsity`` is set (the search chooses them).
        """
        values = to_dict(self)
        default = to_dict(CompressConfig())
        fixed = [k for k in ("method", "sparsity") if values[k] != default[k]]
        if fixed:
            raise ConfigError(f"compress chooses {' and '.join(fixed)} itself; give methods "
                              "(and search_lo / search_hi) instead")
        names = {f.name for f in dataclasses.fields(PruneConfig)}
        return make(PruneConfig, {k: v for k, v in values.items() if k in names})
