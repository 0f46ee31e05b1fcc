"""The pruning-method registry: every method by name, one signature, one runner.

=========== ===========================================================================
method      function and what it does
=========== ===========================================================================
none        :func:`.baselines.prune_none`: magnitude masks, nothing else
refit       :func:`.baselines.prune_refit`: masks, then only the non-weights re-fitted
            (the paper's way)
finetune    :func:`.baselines.prune_finetune`: masks, then kept weights retrained
iterative   :func:`.baselines.prune_iterative`: prune-retrain rounds (Han et al. 2015)
rewind      :func:`.baselines.prune_rewind`: masks, kept weights rewound to early
            training, the rest of the original schedule retrained (lottery-ticket
            rewinding)
gradual     :func:`.gradual.gradual_prune`: training while the sparsity rises on a cubic
            schedule (Zhu & Gupta 2017)
sparse-vd   :func:`.variational.sparse_vd`: sparse variational dropout (Molchanov et al.
            2017)
structured  :func:`.structured.structured_prune`: whole units removed to a weight budget,
            then retrained
=========== ===========================================================================

Every entry is called as ``fn(model, data, loss, cfg, masks, rewind)`` on the caller's
model (each works on a copy) and returns a :class:`~leanbits.prune.baselines.MethodResult`:
an ordinary model (Linear / Conv layers, pruned weights exactly zero), its masks and a
record with ``method``, ``backprop_epochs`` and ``wall_time_s`` (the method alone). The
CLI (``leanbits prune --method``), experiment files (``[prune] method``) and
:func:`run_method` all go through :data:`REGISTRY`. :func:`lr_field` names the setting
that holds each method's learning rate, which a validation grid
(``PruneConfig.lr_grid``, :func:`leanbits.prune.search.prune_snapshot`) scales.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from torch import Tensor, nn

from leanbits.errors import PruneError
from leanbits.prune.baselines import (
    MethodResult,
    RewindPoint,
    prune_finetune,
    prune_iterative,
    prune_none,
    prune_refit,
    prune_rewind,
)
from leanbits.prune.gradual import gradual_prune
from leanbits.prune.masks import check_amount, check_examples
from leanbits.prune.structured import structured_prune
from leanbits.prune.variational import sparse_vd
from leanbits.settings.prune import METHODS, PruneConfig
from leanbits.train import TrainConfig

Loss = Callable[[Tensor, Tensor], Tensor]
Method = Callable[
    [nn.Module, tuple[Tensor, Tensor], Loss, PruneConfig, Mapping[str, Tensor] | None,
     RewindPoint | None],
    MethodResult,
]


def _from_snapshot(fn: Callable[..., MethodResult]) -> Method:
    """A method that starts from the snapshot as it is: no rewind point is used."""

    def run(model: nn.Module, data: tuple[Tensor, Tensor], loss: Loss, cfg: PruneConfig,
            masks: Mapping[str, Tensor] | None, rewind: RewindPoint | None) -> MethodResult:
        return fn(model, data, loss, cfg, masks)

    return run


REGISTRY: dict[str, Method] = {
    "none": _from_snapshot(prune_none),
    "refit": _from_snapshot(prune_refit),
    "finetune": _from_snapshot(prune_finetune),
    "iterative": _from_snapshot(prune_iterative),
    "rewind": prune_rewind,
    "gradual": _from_snapshot(gradual_prune),
    "sparse-vd": _from_snapshot(sparse_vd),
    "structured": _from_snapshot(structured_prune),
}

#: the :class:`PruneConfig` field holding each method's learning rate (None: it trains
#: nothing); ``structured`` uses that of its ``structured_retrain``
LR_FIELDS: dict[str, str | None] = {
    "none": None, "refit": "refit_lr", "finetune": "finetune_lr",
    "iterative": "iterative_lr", "rewind": "rewind_lr", "gradual": "gradual_lr",
    "sparse-vd": "vd_lr", "structured": None,
}


def lr_field(method: str, cfg: PruneConfig) -> str | None:
    """The :class:`PruneConfig` field holding ``method``'s learning rate (None: none).

    Example:
        >>> lr_field("finetune", PruneConfig())
        'finetune_lr'
    """
    if method == "structured":
        return f"{cfg.structured_retrain}_lr"
    if method not in LR_FIELDS:
        raise PruneError(f"unknown method {method!r}; valid: {', '.join(REGISTRY)}")
    return LR_FIELDS[method]


def run_method(
    model: nn.Module,
    method: str,
    sparsity: float,
    train: tuple[Tensor, Tensor],
    loss_fn: Loss,
    config: PruneConfig | None = None,
    early_state: Mapping[str, Tensor] | None = None,
    masks: Mapping[str, Tensor] | None = None,
    train_config: TrainConfig | None = None,
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
        early_state: state dict after epoch ``train_config.rewind_epoch`` of training
            (method ``rewind``).
        masks: masks the model already has; the result is a subset of them.
        train_config: the settings the model was trained with (method ``rewind`` finishes
            their schedule).

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
    data = check_examples(train)
    rewind = (RewindPoint(early_state, train_config)
              if early_state is not None and train_config is not None else None)
    return REGISTRY[method](model, data, loss_fn, cfg, masks, rewind)


__all__ = ["LR_FIELDS", "METHODS", "REGISTRY", "Method", "lr_field", "run_method"]
