"""The pruning-method registry: every method by name, one signature, one runner.

=========== ===========================================================================
method      module and what it does
=========== ===========================================================================
none        :mod:`.baselines`: magnitude masks, nothing else
refit       :mod:`.baselines`: masks, then only the non-weights re-fitted (the paper's way)
finetune    :mod:`.baselines`: masks, then kept weights retrained
iterative   :mod:`.baselines`: prune-retrain rounds (Han et al. 2015)
rewind      :mod:`.baselines`: masks, kept weights rewound to early training, retrained
gradual     :mod:`.gradual`: training while the sparsity rises on a cubic schedule
            (Zhu & Gupta 2017)
sparse-vd   :mod:`.variational`: sparse variational dropout (Molchanov et al. 2017)
structured  :mod:`.structured`: whole units removed to a weight budget, then retrained
=========== ===========================================================================

Every entry is called as ``fn(model, data, loss, cfg, masks, early_state)`` on the
caller's model (each works on a copy) and returns a
:class:`~leanbits.prune.baselines.MethodResult`: an ordinary model (Linear / Conv layers,
pruned weights exactly zero), its masks and a record with ``method``,
``backprop_epochs`` and ``wall_time_s``. The CLI (``leanbits prune --method``), experiment
files (``[prune] method``) and :func:`run_method` all go through :data:`REGISTRY`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from torch import Tensor, nn

from leanbits.errors import PruneError
from leanbits.prune.baselines import (
    BASELINES,
    METHODS,
    MethodResult,
    PruneConfig,
    run_baseline,
)
from leanbits.prune.gradual import gradual_prune
from leanbits.prune.masks import check_amount
from leanbits.prune.structured import structured_prune
from leanbits.prune.variational import sparse_vd

Loss = Callable[[Tensor, Tensor], Tensor]
Method = Callable[
    [nn.Module, tuple[Tensor, Tensor], Loss, PruneConfig, Mapping[str, Tensor] | None,
     Mapping[str, Tensor] | None],
    MethodResult,
]


def _baseline(name: str) -> Method:
    def run(model: nn.Module, data: tuple[Tensor, Tensor], loss: Loss, cfg: PruneConfig,
            masks: Mapping[str, Tensor] | None,
            early_state: Mapping[str, Tensor] | None) -> MethodResult:
        return run_baseline(model, name, cfg.sparsity, data, loss, cfg, early_state, masks)

    return run


def _without_early(fn: Callable[..., MethodResult]) -> Method:
    """A method that starts from the snapshot as it is: early weights are not used."""

    def run(model: nn.Module, data: tuple[Tensor, Tensor], loss: Loss, cfg: PruneConfig,
            masks: Mapping[str, Tensor] | None,
            early_state: Mapping[str, Tensor] | None) -> MethodResult:
        return fn(model, data, loss, cfg, masks)

    return run


REGISTRY: dict[str, Method] = {
    **{name: _baseline(name) for name in BASELINES},
    "gradual": _without_early(gradual_prune),
    "sparse-vd": _without_early(sparse_vd),
    "structured": _without_early(structured_prune),
}


def run_method(
    model: nn.Module,
    method: str,
    sparsity: float,
    train: tuple[Tensor, Tensor],
    loss_fn: Loss,
    config: PruneConfig | None = None,
    early_state: Mapping[str, Tensor] | None = None,
    masks: Mapping[str, Tensor] | None = None,
) -> MethodResult:
    """Prune a copy of ``model`` with ``method`` (any of :data:`METHODS`).

    Args:
        model: the trained (snapshot) model, or any module with Linear / Conv layers; not
            modified.
        method: a name of :data:`REGISTRY`.
        sparsity: target fraction of pruned weights (``config.sparsity`` is replaced by
            it; unused by methods in :data:`~leanbits.prune.baselines.OWN_SPARSITY` and by
            the criteria threshold / std).
        train: ``(x, y)`` training tensors.
        loss_fn: the model's loss, e.g. ``head.loss``.
        config: all other settings, budgets included (default :class:`PruneConfig`).
        early_state: state dict from early in training (method ``rewind``).
        masks: masks the model already has; the result is a subset of them.

    Returns:
        A :class:`MethodResult`; ``record`` has ``method``, ``backprop_epochs``,
        ``wall_time_s`` and method details.

    Raises:
        PruneError: unknown method, bad amount, missing early weights, ...
        TrainingError: a method's loss became NaN or infinite.

    Example:
        >>> r = run_method(snap.model, "gradual", 0.98, (x, y), snap.head.loss)
        ... # doctest: +SKIP
        >>> r.record["backprop_epochs"]  # doctest: +SKIP
        10
    """
    if method not in REGISTRY:
        raise PruneError(f"unknown method {method!r}; valid: {', '.join(REGISTRY)}")
    cfg = dataclasses.replace(config or PruneConfig(), sparsity=check_amount(sparsity))
    if train[0].shape[0] == 0:
        raise PruneError("no training examples to prune with")
    return REGISTRY[method](model, train, loss_fn, cfg, masks, early_state)


__all__ = ["METHODS", "REGISTRY", "Method", "run_method"]
