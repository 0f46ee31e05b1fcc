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
from leanbits.prune.masks import MaskHook, Masks, apply_masks
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


Loss = Callable[[Tensor, Tensor], Tensor]


def _begin(model: nn.Module, name: str) -> tuple[float, nn.Module, dict[str, Any]]:
    """The start of every baseline: its clock, the copy it prunes and its record."""
    return time.perf_counter(), copy.deepcopy(model), {"method": name, "backprop_epochs": 0,
                                                       "lr": None}


def _finish(net: nn.Module, masks: Masks, record: dict[str, Any], t0: float) -> MethodResult:
    """The end of every baseline: pruned weights exactly zero, the method's wall time."""
    apply_masks(net, masks)
    record["wall_time_s"] = time.perf_counter() - t0
    return MethodResult(net, masks, record)


def _prune_compensated(net: nn.Module, x: Tensor, cfg: PruneConfig,
                       masks: Mapping[str, Tensor] | None, record: dict[str, Any]) -> Masks:
    """Magnitude masks of ``net`` applied, with bias compensation if ``cfg`` asks for it."""
    new_masks = choose_masks(net, cfg.sparsity, cfg, masks)
    if cfg.bias_compensation:
        bias_compensate(net, new_masks, x[: cfg.compensation_examples])
    else:
        apply_masks(net, new_masks)
    record["bias_compensation"] = cfg.bias_compensation
    return new_masks


def prune_none(model: nn.Module, data: tuple[Tensor, Tensor], loss_fn: Loss,
               cfg: PruneConfig, masks: Mapping[str, Tensor] | None = None) -> MethodResult:
    """Method ``none``: prune a copy of ``model`` to ``cfg.sparsity`` and nothing else.

    Every baseline of this module takes the same arguments and returns the same kind of
    result; :func:`leanbits.prune.methods.run_method` validates them and dispatches.

    Args:
        model: the trained (snapshot) model; not modified.
        data: ``(x, y)`` training tensors (bias compensation measures on ``x``; the
            training methods train on them).
        loss_fn: the model's loss, e.g. ``head.loss`` (unused here).
        cfg: every setting (``sparsity``, scope, criterion, budgets, learning rates...).
        masks: masks the snapshot already has; the result is a subset of them.

    Returns:
        A :class:`MethodResult`; ``record`` has ``method``, ``backprop_epochs``, ``lr``
        (the rate it trained with; None without training), ``wall_time_s`` (the method
        alone) and method details.
    """
    t0, net, record = _begin(model, "none")
    new_masks = _prune_compensated(net, data[0], cfg, masks, record)
    return _finish(net, new_masks, record, t0)


def prune_refit(model: nn.Module, data: tuple[Tensor, Tensor], loss_fn: Loss,
                cfg: PruneConfig, masks: Mapping[str, Tensor] | None = None) -> MethodResult:
    """Method ``refit`` (the paper's way): prune, then re-fit only the non-weights for
    ``cfg.refit_epochs`` with Adam at ``cfg.refit_lr``. Arguments and result as
    :func:`prune_none`'s."""
    t0, net, record = _begin(model, "refit")
    new_masks = _prune_compensated(net, data[0], cfg, masks, record)
    if cfg.refit_epochs > 0:
        refit_nonweights(net, data, loss_fn, cfg.refit_epochs, cfg.refit_lr, new_masks,
                         batch_size=cfg.batch_size, seed=cfg.seed)
        record.update(backprop_epochs=cfg.refit_epochs, lr=cfg.refit_lr)
    return _finish(net, new_masks, record, t0)


def prune_finetune(model: nn.Module, data: tuple[Tensor, Tensor], loss_fn: Loss,
                   cfg: PruneConfig, masks: Mapping[str, Tensor] | None = None,
                   ) -> MethodResult:
    """Method ``finetune``: prune, then retrain the kept weights and biases with the mask
    fixed for ``cfg.finetune_epochs`` (``cfg.optimizer`` at ``cfg.finetune_lr``).
    Arguments and result as :func:`prune_none`'s."""
    t0, net, record = _begin(model, "finetune")
    new_masks = choose_masks(net, cfg.sparsity, cfg, masks)
    train_masked(net, new_masks, data, loss_fn, cfg.finetune_epochs, lr=cfg.finetune_lr,
                 optimizer=cfg.optimizer, batch_size=cfg.batch_size, seed=cfg.seed)
    record.update(backprop_epochs=cfg.finetune_epochs, lr=cfg.finetune_lr)
    return _finish(net, new_masks, record, t0)


def prune_iterative(model: nn.Module, data: tuple[Tensor, Tensor], loss_fn: Loss,
                    cfg: PruneConfig, masks: Mapping[str, Tensor] | None = None,
                    ) -> MethodResult:
    """Method ``iterative`` (Han et al. 2015): ``cfg.rounds`` rounds on a geometric schedule
    of sparsities up to ``cfg.sparsity``, each pruning further and retraining
    ``cfg.round_epochs`` epochs with the mask fixed (``cfg.optimizer`` at
    ``cfg.iterative_lr``). Arguments and result as :func:`prune_none`'s.

    Raises:
        PruneError: ``cfg.criterion`` is not ``sparsity`` (a schedule needs levels).
    """
    if cfg.criterion != "sparsity":
        raise PruneError("method 'iterative' needs criterion='sparsity' (a schedule)")
    t0, net, record = _begin(model, "iterative")
    schedule = geometric_schedule(cfg.sparsity, cfg.rounds)
    current = dict(masks) if masks else None
    for level in schedule:
        current = choose_masks(net, level, cfg, current)
        train_masked(net, current, data, loss_fn, cfg.round_epochs, lr=cfg.iterative_lr,
                     optimizer=cfg.optimizer, batch_size=cfg.batch_size, seed=cfg.seed)
        record["backprop_epochs"] += cfg.round_epochs
    record.update(schedule=schedule, rounds=cfg.rounds, round_epochs=cfg.round_epochs,
                  lr=cfg.iterative_lr)
    return _finish(net, current, record, t0)


def prune_rewind(model: nn.Module, data: tuple[Tensor, Tensor], loss_fn: Loss,
                 cfg: PruneConfig, masks: Mapping[str, Tensor] | None,
                 rewind: RewindPoint | None) -> MethodResult:
    """Method ``rewind`` (lottery-ticket rewinding): prune, reset the kept weights to the
    rewind point's, then finish the snapshot's own training schedule with the mask fixed
    (:func:`rewind_retrain`, peak rate ``cfg.rewind_lr`` or the training's). Arguments and
    result as :func:`prune_none`'s, and:

    Args:
        rewind: the early weights and the snapshot's training settings.

    Raises:
        PruneError: no rewind point, or its epoch is after the end of training.
    """
    _check_rewind(rewind)
    assert rewind is not None  # _check_rewind
    t0, net, record = _begin(model, "rewind")
    new_masks = choose_masks(net, cfg.sparsity, cfg, masks)
    _load_early(net, rewind.state)
    record.update(rewind_retrain(net, new_masks, data, loss_fn, rewind, cfg.rewind_lr,
                                 cfg.seed))
    return _finish(net, new_masks, record, t0)


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
    "prune_finetune",
    "prune_iterative",
    "prune_none",
    "prune_refit",
    "prune_rewind",
    "rewind_retrain",
    "train_masked",
]
