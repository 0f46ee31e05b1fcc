"""A compression recipe and its checks: :class:`CompressConfig` (the pruning methods, the
quantizer grid, the sparsity bracket, the requirement and the epoch budget; defined in
:mod:`leanbits.settings.compress`, torch-free for the command line), the checks of a
requirement and of a recipe done at the door (:func:`check_target`, :func:`check_recipe`),
and the expansion of the recipe's quantizer settings into the grid the search scores
(:func:`quantizer_grid`). Nothing here trains or encodes.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from leanbits.errors import ConfigError
from leanbits.prune import REGISTRY
from leanbits.settings.compress import CompressConfig


# ------------------------------------------------------------------------- checks
def check_target(max_drop: Any = None, target_accuracy: Any = None) -> tuple[str, float]:
    """Validate the requirement: exactly one of ``max_drop`` and ``target_accuracy``.

    Returns:
        ``("max_drop", value)`` or ``("target_accuracy", value)``.

    Raises:
        ConfigError: both or neither given, not a number, a drop outside [0, 1] or an
            accuracy outside [0, 1].

    Example:
        >>> check_target(max_drop=0.002)
        ('max_drop', 0.002)
    """
    if (max_drop is None) == (target_accuracy is None):
        raise ConfigError("give exactly one of --max-drop (allowed loss of validation "
                          "accuracy) or --target-accuracy (required validation accuracy)")
    name, value = (("max_drop", max_drop) if max_drop is not None
                   else ("target_accuracy", target_accuracy))
    flag = "--" + name.replace("_", "-")
    try:
        if isinstance(value, bool):
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{flag} must be a number, got {value!r}") from None
    if not (math.isfinite(number) and 0.0 <= number <= 1.0):
        what = "an accuracy drop" if name == "max_drop" else "an accuracy"
        raise ConfigError(f"{flag} is {what} from 0 to 1 (a fraction, not a percentage), "
                          f"got {value}")
    return name, number


def check_recipe(cfg: CompressConfig, require_target: bool = False) -> None:
    """Checks of a recipe beyond one field's value (done up front, e.g. when an experiment
    file is loaded).

    Args:
        cfg: the recipe.
        require_target: the recipe itself must hold the requirement (``max_drop`` or
            ``target_accuracy``), as in an experiment file's ``[compress]`` table.

    Raises:
        ConfigError: an empty grid, an unknown method, a bad bracket, method / sparsity
            set, or (with ``require_target``) not exactly one requirement.
    """
    cfg.prune_config()
    if require_target:
        check_target(cfg.max_drop, cfg.target_accuracy)
    if cfg.search_lo > cfg.search_hi:
        raise ConfigError(f"search_lo {cfg.search_lo} is above search_hi {cfg.search_hi}")
    for what, values in (("methods", cfg.methods), ("bits", cfg.bits), ("quants", cfg.quants),
                         ("nonweight_dtypes", cfg.nonweight_dtypes),
                         ("codebook_epochs", cfg.codebook_epochs),
                         ("rate_lambdas", cfg.rate_lambdas if "ecsq" in cfg.quants else (1,))):
        if not values:
            raise ConfigError(f"compress {what} is empty; give at least one")
    unknown = [m for m in cfg.methods if m not in REGISTRY]
    if unknown:
        raise ConfigError(f"unknown pruning method(s) {', '.join(unknown)}; valid: "
                          + ", ".join(REGISTRY))


#: keys of a quantizer setting that :func:`leanbits.bits.pack` takes (and ``rate_lambda``
#: for ``ecsq``)
ENCODE_KEYS = ("bits", "quant", "nonweight_dtype", "index")


def quantizer_grid(cfg: CompressConfig) -> list[dict[str, Any]]:
    """Every quantizer setting of the recipe, gentlest first (most bits, first quantizer,
    first non-weight precision, first codebook fine-tuning): the keyword arguments of
    :func:`leanbits.bits.pack` plus ``codebook_epochs`` (``ecsq`` once per rate weight)."""
    quants: list[tuple[str, float | None]] = []
    for q in dict.fromkeys(cfg.quants):
        lams = list(dict.fromkeys(cfg.rate_lambdas)) if q == "ecsq" else [None]
        quants += [(q, lam) for lam in lams]
    grid = []
    for b, (q, lam), d, e in itertools.product(sorted(set(cfg.bits), reverse=True), quants,
                                               dict.fromkeys(cfg.nonweight_dtypes),
                                               dict.fromkeys(cfg.codebook_epochs)):
        setting = {"bits": b, "quant": q, "nonweight_dtype": d, "index": cfg.index,
                   "codebook_epochs": e}
        if lam is not None:
            setting["rate_lambda"] = lam
        grid.append(setting)
    return grid
