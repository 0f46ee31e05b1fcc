"""Snapshot pruning: prune a trained model once, re-fit only its non-weight parameters.

Scoring is pure (:mod:`.magnitude`), masks only shrink (:mod:`.masks`), structure lives
in :mod:`.structure` and compaction in :mod:`.compaction`, the non-weight re-fit and bias
compensation in :mod:`.refit`, the baselines in :mod:`.baselines`, the methods that train
for sparsity in :mod:`.gradual` (Zhu & Gupta), :mod:`.variational` (sparse VD) and
:mod:`.structured` (whole units to a weight budget), reporting and the sparsity search in
:mod:`.search`, and what pruning writes to disk in :mod:`.store` (the ``prune`` /
``profile`` commands are in :mod:`leanbits.cli.prune`).

Example:
    >>> from leanbits.prune import prune, apply_masks, bias_compensate, refit_nonweights, compact
    >>> masks = prune(model, sparsity=0.95)  # doctest: +SKIP
    >>> bias_compensate(model, masks, x_train[:5000])  # doctest: +SKIP
    >>> refit_nonweights(model, (x_train, y_train), head.loss, epochs=2)  # doctest: +SKIP
    >>> small, small_plan = compact(model, plan, masks)  # doctest: +SKIP
"""

import sys as _sys
import types as _types

from leanbits.prune.baselines import MethodResult, train_masked
from leanbits.prune.compaction import compact, compact_sequential, macs
from leanbits.prune.gradual import GradualPruning, cubic_sparsity, gradual_prune
from leanbits.prune.magnitude import (
    geometric_schedule,
    global_magnitude,
    layer_magnitude,
    prune,
    std_masks,
    threshold_masks,
    unit_masks,
    unit_scores,
)
from leanbits.prune.masks import Masks, apply_masks, combine, masked_fraction, prunable_weights
from leanbits.prune.methods import REGISTRY, run_method
from leanbits.prune.refit import bias_compensate, nonweight_parameters, refit_nonweights
from leanbits.prune.search import (
    PruneResult,
    SearchResult,
    measure,
    profile,
    prune_snapshot,
    prune_to_target,
    search_sparsity,
)
from leanbits.prune.store import load_saved, save_profile, save_result
from leanbits.prune.structure import (
    Structure,
    analyse,
    effective_connections,
    find_dead_units,
    remove_dead_units,
    unread_units,
)
from leanbits.prune.structured import structured_masks, structured_prune
from leanbits.prune.variational import SparseVD, from_variational, sparse_vd, to_variational
from leanbits.settings.prune import METHODS, ProfileConfig, PruneConfig

__all__ = [
    "METHODS",
    "GradualPruning",
    "Masks",
    "MethodResult",
    "ProfileConfig",
    "PruneConfig",
    "PruneResult",
    "REGISTRY",
    "SearchResult",
    "SparseVD",
    "Structure",
    "analyse",
    "apply_masks",
    "bias_compensate",
    "combine",
    "compact",
    "compact_sequential",
    "cubic_sparsity",
    "effective_connections",
    "find_dead_units",
    "from_variational",
    "geometric_schedule",
    "global_magnitude",
    "gradual_prune",
    "layer_magnitude",
    "load_saved",
    "macs",
    "masked_fraction",
    "measure",
    "nonweight_parameters",
    "profile",
    "prunable_weights",
    "prune",
    "prune_snapshot",
    "prune_to_target",
    "refit_nonweights",
    "remove_dead_units",
    "run_method",
    "save_profile",
    "save_result",
    "search_sparsity",
    "sparse_vd",
    "std_masks",
    "structured_masks",
    "structured_prune",
    "threshold_masks",
    "to_variational",
    "train_masked",
    "unit_masks",
    "unit_scores",
    "unread_units",
]


class _CallablePackage(_types.ModuleType):
    """``leanbits.prune`` is this package *and* callable as :func:`prune`.

    ``leanbits.prune(model, sparsity=0.9)`` is the short form promised by the public API,
    while ``leanbits.prune.search`` and ``import leanbits.prune.store`` keep working.
    """

    def __call__(self, *args, **kwargs):
        return prune(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallablePackage
