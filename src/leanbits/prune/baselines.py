"""Pruning methods on the same footing: the snapshot method and the usual baselines.

======== ===================================================================================
method   what happens after the magnitude masks are chosen
======== ===================================================================================
none     nothing (with or without bias compensation): the pruned snapshot as it is
refit    only non-weight parameters are re-fitted (the paper's way), optionally after bias
         compensation
finetune kept weights and biases are retrained with the mask fixed
iterative prune-retrain rounds on a geometric schedule of sparsities (Han et al. 2015):
         ``rounds`` x ``round_epochs`` epochs
rewind   kept weights reset to their values after epoch ``rewind_epoch`` of the snapshot's
         training, then the rest of that training's schedule is run with the mask
         (lottery-ticket rewinding, Frankle et al. 2020, Renda et al. 2020): the original
         optimizer, learning-rate schedule (resumed at the rewind epoch), regularizers and
         batch size, for ``epochs - rewind_epoch`` epochs
======== ===================================================================================

Every method returns the pruned model, its masks and a record of the backprop epochs and
the wall time of the method itself (copying, scoring, training; no data loading, no
evaluation), so that methods are compared at stated, equal cost accounting. This module
also holds what every method shares: :class:`PruneConfig` (all methods' settings, with
their budgets and learning rates), :class:`RewindPoint`, :class:`MethodResult` and masked
retraining (:func:`train_masked`). The registry of all methods, these and the ones that
train for sparsity, is :mod:`leanbits.prune.methods`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from leanbits.errors import PruneError, TrainingError
from leanbits.loop import OPTIMIZERS, NonFiniteLoss, epoch_batches, fit, make_optimizer
from leanbits.prune.magnitude import geometric_schedule, prune
from leanbits.prune.masks import MaskHook, Masks, apply_masks, check_amount, check_examples
from leanbits.prune.refit import bias_compensate, refit_nonweights
from leanbits.regularize import Regularizer, RegularizerHook
from leanbits.settings.prune import BASELINES, METHODS, PruneConfig
from leanbits.train import TrainConfig, make_scheduler, parse_per_layer

#: methods whose sparsity is their outcome, not a setting (``sparsity`` is unused)
OWN_SPARSITY = ("sparse-vd",)


@dataclass
class MethodResult:
    """A pruned model, its masks and what it cost."""

    model: nn.Module
    masks: Masks
    record: dict[str, Any]


@dataclass(frozen=True)
class RewindPoint:
    """Where rewinding goes back to, and the training schedule it then finishes.

    Attributes:
        state: the model's state dict after epoch ``train.rewind_epoch`` of its training
            (a snapshot's ``weights_early.safetensors``).
        train: the settings the snapshot was trained with; rewinding retrains epochs
            ``rewind_epoch + 1 .. epochs`` of that run: its optimizer, momentum, learning
            rate and schedule, regularizers and batch size.
    """

    state: Mapping[str, Tensor]
    train: TrainConfig

    @property
    def remaining_epochs(self) -> int:
        """Epochs of the original schedule after the rewind point."""
        return max(0, self.train.epochs - self.train.rewind_epoch)


def train_masked(
    model: nn.Module,
    masks: Mapping[str, Tensor] | None,
    data: tuple[Tensor, Tensor],
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    epochs: int,
    lr: float = 5e-4,
    batch_size: int = 128,
    seed: int = 0,
    optimizer: str = "adam",
) -> dict[str, Any]:
    """Train every parameter of ``model`` in place while pruned weights stay exactly zero.

    Gradients of pruned weights are zeroed before each step and the masks re-applied after
    it (:class:`~leanbits.prune.masks.MaskHook`), so neither momentum nor Adam state can
    revive a weight. Deterministic on CPU for a fixed ``seed``.

    Args:
        model: the model, trained in place.
        masks: weight name -> keep mask (None: train without masks).
        data: ``(x, y)`` training tensors, shuffled each epoch.
        loss_fn: ``loss_fn(model(x), y) -> scalar``, e.g. ``head.loss``.
        epochs: passes over ``data``.
        lr: learning rate.
        batch_size: minibatch size.
        seed: seed of the shuffling.
        optimizer: ``"adam"`` or ``"sgd"`` (momentum :data:`leanbits.loop.SGD_MOMENTUM`),
            built by :func:`leanbits.loop.make_optimizer`.

    Returns:
        ``{"epochs", "steps", "wall_time_s"}``.

    Raises:
        TrainingError: the loss became NaN or infinite.

    Example:
        >>> train_masked(model, masks, (x, y), head.loss, epochs=2)  # doctest: +SKIP
    """
    if optimizer not in OPTIMIZERS:
        raise PruneError(f"unknown optimizer {optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
    t0 = time.perf_counter()
    opt = make_optimizer(optimizer, model.parameters(), lr)
    try:
        result = fit(model, model.parameters(), epoch_batches(data, batch_size, seed), loss_fn,
                     opt, [MaskHook(masks)] if masks else [], epochs=epochs, seed=seed)
    except NonFiniteLoss as exc:
        raise TrainingError(
            f"masked retraining loss became {exc.value} at epoch {exc.epoch}, step "
            f"{exc.step}; lower finetune_lr"
        ) from None
    return {"epochs": epochs, "steps": result.steps, "wall_time_s": time.perf_counter() - t0}


def choose_masks(model: nn.Module, sparsity: float, cfg: PruneConfig,
                 previous: Mapping[str, Tensor] | None = None) -> Masks:
    """Magnitude masks of ``model`` as ``cfg`` asks (scope, criterion, granularity...)."""
    return prune(
        model, sparsity=sparsity, scope=cfg.scope, criterion=cfg.criterion,
        threshold=cfg.threshold, q=cfg.std_q, granularity=cfg.granularity,
        exclude=cfg.exclude, masks=previous,
    )


def run_baseline(
    model: nn.Module,
    method: str,
    sparsity: float,
    train: tuple[Tensor, Tensor],
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    config: PruneConfig | None = None,
    rewind: RewindPoint | None = None,
    masks: Mapping[str, Tensor] | None = None,
) -> MethodResult:
    """Prune a copy of ``model`` to ``sparsity`` with ``method`` (see the module docstring).

    Args:
        model: the trained (snapshot) model; not modified.
        method: one of :data:`BASELINES`.
        sparsity: target fraction of pruned weights (ignored by criteria threshold/std).
        train: ``(x, y)`` training tensors used for compensation and (re)training.
        loss_fn: the model's loss, e.g. ``head.loss``.
        config: other settings (defaults: :class:`PruneConfig`).
        rewind: early weights and the original training settings (method ``rewind``).
        masks: masks the snapshot already has; the result is a subset of them.

    Returns:
        A :class:`MethodResult`; ``record`` has ``method``, ``backprop_epochs``, ``lr``
        (the rate it trained with; None without training), ``wall_time_s`` (the method
        alone) and method details.

    Raises:
        PruneError: unknown method, bad amount, missing early weights, ...

    Example:
        >>> r = run_baseline(snap.model, "refit", 0.95, (x, y), snap.head.loss)
        ... # doctest: +SKIP
        >>> r.record["backprop_epochs"]  # doctest: +SKIP
        2
    """
    cfg = config or PruneConfig()
    if method not in BASELINES:
        raise PruneError(f"unknown baseline {method!r}; valid: {', '.join(BASELINES)}")
    sparsity = check_amount(sparsity)
    x, y = check_examples(train)
    if method == "rewind":
        _check_rewind(rewind)
    t0 = time.perf_counter()
    net = copy.deepcopy(model)
    record: dict[str, Any] = {"method": method, "backprop_epochs": 0, "lr": None}
    comp_x = x[: cfg.compensation_examples]

    def common(kw: dict[str, Any]) -> dict[str, Any]:
        return dict(kw, batch_size=cfg.batch_size, seed=cfg.seed)

    if method == "iterative":
        if cfg.criterion != "sparsity":
            raise PruneError("method 'iterative' needs criterion='sparsity' (a schedule)")
        schedule = geometric_schedule(sparsity, cfg.rounds)
        current = dict(masks) if masks else None
        for level in schedule:
            current = choose_masks(net, level, cfg, current)
            train_masked(net, current, (x, y), loss_fn, cfg.round_epochs,
                         **common({"lr": cfg.iterative_lr, "optimizer": cfg.optimizer}))
            record["backprop_epochs"] += cfg.round_epochs
        record.update(schedule=schedule, rounds=cfg.rounds, round_epochs=cfg.round_epochs,
                      lr=cfg.iterative_lr)
        new_masks = current
    else:
        new_masks = choose_masks(net, sparsity, cfg, masks)
        if method in ("none", "refit"):
            if cfg.bias_compensation:
                bias_compensate(net, new_masks, comp_x)
            else:
                apply_masks(net, new_masks)
            record["bias_compensation"] = cfg.bias_compensation
        if method == "refit" and cfg.refit_epochs > 0:
            refit_nonweights(net, (x, y), loss_fn, cfg.refit_epochs, cfg.refit_lr, new_masks,
                             **common({}))
            record.update(backprop_epochs=cfg.refit_epochs, lr=cfg.refit_lr)
        elif method == "finetune":
            train_masked(net, new_masks, (x, y), loss_fn, cfg.finetune_epochs,
                         **common({"lr": cfg.finetune_lr, "optimizer": cfg.optimizer}))
            record.update(backprop_epochs=cfg.finetune_epochs, lr=cfg.finetune_lr)
        elif method == "rewind":
            assert rewind is not None  # _check_rewind
            _load_early(net, rewind.state)
            record.update(rewind_retrain(net, new_masks, (x, y), loss_fn, rewind,
                                         cfg.rewind_lr, cfg.seed))
    apply_masks(net, new_masks)
    record["wall_time_s"] = time.perf_counter() - t0
    return MethodResult(net, new_masks, record)


def _check_rewind(rewind: RewindPoint | None) -> None:
    if rewind is None:
        raise PruneError(
            "method 'rewind' needs weights saved early in training "
            "(weights_early.safetensors in the snapshot) and the snapshot's training "
            "settings; choose another method"
        )
    if rewind.train.rewind_epoch > rewind.train.epochs:
        raise PruneError(
            f"the early weights are from epoch {rewind.train.rewind_epoch}, after the "
            f"{rewind.train.epochs} epochs of training; there is no schedule left to rewind to"
        )


def rewind_retrain(
    model: nn.Module,
    masks: Mapping[str, Tensor],
    data: tuple[Tensor, Tensor],
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    rewind: RewindPoint,
    lr: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Finish the original training schedule from the rewind point, with masks fixed.

    ``model`` holds the rewound weights. It trains for
    :attr:`RewindPoint.remaining_epochs` epochs with the original run's optimizer (its
    state starts fresh), momentum, batch size and regularizers, and its learning-rate
    schedule resumed at epoch ``rewind_epoch`` - what the full run's remaining epochs
    were. Pruned weights stay exactly zero (:class:`~leanbits.prune.masks.MaskHook`, after
    the regularizer's proximal steps).

    Args:
        model: trained in place.
        masks: weight name -> keep mask.
        data: ``(x, y)`` training tensors, shuffled each epoch with ``seed``.
        loss_fn: the model's loss.
        rewind: the rewind point and the original settings.
        lr: peak learning rate of the schedule (default: the original ``lr``).
        seed: seed of the shuffling.

    Returns:
        ``{"backprop_epochs", "lr", "rewind_epoch", "steps"}``.

    Raises:
        TrainingError: the loss became NaN or infinite.
    """
    t = rewind.train
    rate = t.lr if lr is None else lr
    epochs = rewind.remaining_epochs
    reg = Regularizer(l2=t.l2, l1=t.l1, group=t.group, group_kind=t.group_kind,
                      per_layer=parse_per_layer(t.per_layer))
    reg.check_layers(model)
    opt = make_optimizer(t.optimizer, model.parameters(), rate, t.momentum)
    steps_per_epoch = math.ceil(data[0].shape[0] / t.batch_size)
    # The factor of the full run's schedule: total steps come from the full epoch count.
    sched = make_scheduler(t, opt, steps_per_epoch, start_epoch=t.rewind_epoch)
    hooks = ([RegularizerHook(reg)] if reg.active else []) + ([MaskHook(masks)] if masks else [])
    try:
        result = fit(model, model.parameters(), epoch_batches(data, t.batch_size, seed),
                     loss_fn, opt, hooks, epochs=epochs, scheduler=sched, seed=seed)
    except NonFiniteLoss as exc:
        raise TrainingError(
            f"rewound retraining loss became {exc.value} at epoch {exc.epoch}, step "
            f"{exc.step}; lower rewind_lr"
        ) from None
    return {"backprop_epochs": epochs, "lr": rate, "rewind_epoch": t.rewind_epoch,
            "steps": result.steps}


def _load_early(model: nn.Module, state: Mapping[str, Tensor]) -> None:
    own = model.state_dict()
    if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
        raise PruneError("the early weights do not match the model (different layers/shapes)")
    model.load_state_dict(dict(state))


__all__ = [
    "BASELINES",
    "METHODS",
    "OWN_SPARSITY",
    "MethodResult",
    "PruneConfig",
    "RewindPoint",
    "choose_masks",
    "rewind_retrain",
    "run_baseline",
    "train_masked",
]
