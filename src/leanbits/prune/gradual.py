"""Gradual magnitude pruning (Zhu & Gupta 2017): masks that tighten on a cubic schedule.

Sparsity rises from ``s_i`` at step ``t0`` to ``s_f`` at step ``t0 + span`` as

    s(t) = s_f + (s_i - s_f) * (1 - (t - t0) / span) ** 3

and is applied every ``frequency`` optimizer steps (plus once exactly at ``t0 + span``), so
pruning is fast early, when many weights are redundant, and slow near the end. Between
pruning events the masks stay as they are and are re-applied after every optimizer step;
a mask never grows back (each event ranks the weights and ANDs with the old mask).

The pure parts - :func:`cubic_sparsity`, :func:`pruning_steps`, :func:`schedule_at` - are
plain numbers in, numbers out. :class:`GradualPruning` is the training hook that applies
them; :func:`gradual_prune` is the method: it trains (from scratch, or fine-tunes a
snapshot) with the hook through :func:`leanbits.loop.fit`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from leanbits.errors import PruneError
from leanbits.loop import FitState, epoch_batches, fit, make_optimizer
from leanbits.prune.baselines import MethodResult
from leanbits.prune.magnitude import SCOPES, global_magnitude, layer_magnitude
from leanbits.prune.masks import (
    MaskHook,
    Masks,
    check_amount,
    check_examples,
    model_masks,
    prunable_weights,
)
from leanbits.prune.structure import remove_dead_units_if_chain
from leanbits.settings.prune import PruneConfig


def _check_schedule(initial: float, final: float, begin: int, span: int) -> None:
    check_amount(initial, "initial sparsity")
    check_amount(final, "final sparsity")
    if initial > final:
        raise PruneError(
            f"initial sparsity {initial} is above the final sparsity {final}; masks only shrink"
        )
    if begin < 0:
        raise PruneError(f"the pruning start step must be >= 0, got {begin}")
    if span < 0:
        raise PruneError(f"the pruning span must be >= 0 steps, got {span}")


def cubic_sparsity(step: int, initial: float, final: float, begin: int, span: int) -> float:
    """The Zhu & Gupta target sparsity at ``step`` (continuous in ``step``).

    Args:
        step: optimizer step (0 = before the first step).
        initial: ``s_i``, the sparsity of the first pruning event (at ``begin``).
        final: ``s_f``, reached at ``begin + span`` and kept afterwards.
        begin: ``t0``, the step of the first pruning event.
        span: ``n * dt``, steps from the first to the last event (0: prune once to ``final``).

    Returns:
        0.0 before ``begin``, then ``s_f + (s_i - s_f) (1 - (t - t0) / span) ** 3``, and
        ``final`` from ``begin + span`` on.

    Example:
        >>> cubic_sparsity(50, 0.0, 0.8, 0, 100)
        0.7
    """
    _check_schedule(initial, final, begin, span)
    if step < begin:
        return 0.0
    if span == 0 or step >= begin + span:
        return float(final)
    progress = (step - begin) / span
    return float(final + (initial - final) * (1.0 - progress) ** 3)


def pruning_steps(begin: int, span: int, frequency: int) -> list[int]:
    """The steps at which masks are recomputed: ``t0, t0 + dt, ...`` and ``t0 + span``.

    Example:
        >>> pruning_steps(10, 25, 10)
        [10, 20, 30, 35]
    """
    if frequency < 1:
        raise PruneError(f"the pruning frequency must be >= 1 step, got {frequency}")
    if begin < 0 or span < 0:
        raise PruneError(f"pruning start and span must be >= 0, got {begin} and {span}")
    steps = list(range(begin, begin + span + 1, frequency))
    if steps[-1] != begin + span:
        steps.append(begin + span)  # the last event lands exactly on s_f
    return steps


def schedule_at(step: int, initial: float, final: float, begin: int, span: int,
                frequency: int) -> float:
    """The sparsity the masks hold after ``step`` optimizer steps (piecewise constant).

    It is :func:`cubic_sparsity` at the latest pruning event not after ``step``, and 0.0
    before the first event.

    Example:
        >>> round(schedule_at(15, 0.0, 0.8, 0, 100, 10), 4)
        0.2168
    """
    events = [t for t in pruning_steps(begin, span, frequency) if t <= step]
    if not events:
        return 0.0
    return cubic_sparsity(events[-1], initial, final, begin, span)


def magnitude_step(
    weights: Mapping[str, Tensor], sparsity: float, scope: str,
    previous: Mapping[str, Tensor] | None,
) -> Masks:
    """One pruning event: masks at ``sparsity`` of ``weights`` (global or per layer)."""
    if scope not in SCOPES:
        raise PruneError(f"unknown scope {scope!r}; valid: {', '.join(SCOPES)}")
    rank = global_magnitude if scope == "global" else layer_magnitude
    return rank(weights, sparsity, previous)


class GradualPruning(MaskHook):
    """Training hook: prune on the cubic schedule, keep pruned weights at exactly zero.

    A :class:`~leanbits.prune.masks.MaskHook` whose masks tighten: when training starts
    (step 0) and after every optimizer step whose number is a pruning event, the weights
    in scope are ranked by magnitude (previous masks ANDed in) and the new masks applied.
    In between, the inherited behaviour zeroes pruned gradients and re-applies the masks
    after every step, so neither momentum nor Adam state revives a weight.

    Args:
        model: the model being trained (its Linear / Conv weights are pruned).
        final: ``s_f``.
        begin: first pruning step ``t0``.
        span: steps from the first event to the last.
        frequency: steps between events ``dt``.
        initial: ``s_i``.
        scope: ``"global"`` or ``"layer"``.
        exclude: layers never pruned.
        masks: masks the model already has; every later mask is a subset of them.

    Attributes:
        masks: the current masks (every prunable weight of ``model``).
        history: ``(step, sparsity)`` of every pruning event, sparsity as measured over
            the weights in scope.
    """

    def __init__(self, model: nn.Module, final: float, begin: int, span: int, frequency: int,
                 initial: float = 0.0, scope: str = "global", exclude: tuple[str, ...] = (),
                 masks: Mapping[str, Tensor] | None = None) -> None:
        _check_schedule(initial, final, begin, span)
        if scope not in SCOPES:
            raise PruneError(f"unknown scope {scope!r}; valid: {', '.join(SCOPES)}")
        super().__init__(model_masks(model, masks))
        self.model = model
        self.initial, self.final, self.begin, self.span = initial, final, begin, span
        self.frequency, self.scope = frequency, scope
        self.events = set(pruning_steps(begin, span, frequency))
        self.keys = list(prunable_weights(model, exclude=exclude))
        self.history: list[tuple[int, float]] = []

    def target(self, step: int) -> float:
        """The schedule's sparsity for an event at ``step``."""
        return cubic_sparsity(step, self.initial, self.final, self.begin, self.span)

    def prune_at(self, step: int) -> None:
        """Recompute the masks for an event at ``step`` and zero the pruned weights."""
        params = dict(self.model.named_parameters())
        weights = {k: params[k].detach() for k in self.keys}
        new = magnitude_step(weights, self.target(step), self.scope,
                             {k: self.masks[k] for k in self.keys})
        self.set_masks(self.model, {**self.masks, **new})
        kept = sum(int(self.masks[k].sum()) for k in self.keys)
        total = sum(self.masks[k].numel() for k in self.keys)
        self.history.append((step, 1.0 - kept / total))

    def on_start(self, state: FitState) -> None:
        super().on_start(state)
        if 0 in self.events:
            self.prune_at(0)

    def after_step(self, state: FitState) -> None:
        if state.step in self.events:
            self.prune_at(state.step)  # applies the new masks, which include the old ones
        else:
            super().after_step(state)

    def after_epoch(self, state: FitState) -> dict[str, Any]:
        return {"sparsity": self.history[-1][1] if self.history else 0.0}


def reinitialise(model: nn.Module, seed: int) -> None:
    """Fresh initial values for every module with ``reset_parameters`` (seeded, in place)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in model.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()


def gradual_prune(
    model: nn.Module,
    data: tuple[Tensor, Tensor],
    loss: Callable[[Tensor, Tensor], Tensor],
    cfg: PruneConfig,
    masks: Mapping[str, Tensor] | None = None,
) -> MethodResult:
    """Train a copy of ``model`` while its sparsity rises to ``cfg.sparsity`` (Zhu & Gupta).

    The run lasts ``cfg.gradual_epochs``; pruning events start at fraction
    ``cfg.gradual_begin`` of the steps, end at ``cfg.gradual_end`` and come every
    ``cfg.gradual_frequency`` steps. The learning rate ``cfg.gradual_lr`` follows a cosine
    to 0. With ``cfg.gradual_reinit`` the weights are re-initialised first, so the network
    is trained from scratch; otherwise the snapshot is fine-tuned.

    Args:
        model: a trained snapshot's model (or any model with Linear / Conv layers); not
            modified.
        data: ``(x, y)`` training tensors.
        loss: ``loss(output, y) -> scalar``, e.g. ``head.loss``.
        cfg: the prune settings (``sparsity``, ``scope``, ``exclude``, ``optimizer``,
            ``batch_size``, ``seed`` and the ``gradual_*`` fields).
        masks: masks the model already has; the result is a subset of them.

    Returns:
        A :class:`MethodResult`: the pruned model, its masks (dead units removed when
        ``cfg.remove_dead`` and the model is a chain) and a record with
        ``backprop_epochs``, ``schedule`` (``[step, sparsity]`` per event) and the epochs'
        history.

    Raises:
        PruneError: a bad schedule or sparsity, or no training data.
        TrainingError: the loss became NaN or infinite.

    Example:
        >>> r = gradual_prune(snap.model, (x, y), snap.head.loss, PruneConfig(sparsity=0.98))
        ... # doctest: +SKIP
    """
    x, y = check_examples(data)
    if not cfg.gradual_begin <= cfg.gradual_end:
        raise PruneError(
            f"gradual_begin {cfg.gradual_begin} is after gradual_end {cfg.gradual_end}"
        )
    t0 = time.perf_counter()
    net = copy.deepcopy(model)
    if cfg.gradual_reinit:
        reinitialise(net, cfg.seed)
    total = cfg.gradual_epochs * math.ceil(x.shape[0] / cfg.batch_size)
    begin = round(cfg.gradual_begin * total)
    span = round(cfg.gradual_end * total) - begin
    hook = GradualPruning(net, cfg.sparsity, begin, span, cfg.gradual_frequency,
                          initial=cfg.gradual_initial, scope=cfg.scope, exclude=cfg.exclude,
                          masks=masks)
    opt = make_optimizer(cfg.optimizer, net.parameters(), cfg.gradual_lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total, 1))
    result = fit(net, net.parameters(), epoch_batches((x, y), cfg.batch_size, cfg.seed), loss,
                 opt, [hook], epochs=cfg.gradual_epochs, scheduler=sched, seed=cfg.seed)
    final = remove_dead_units_if_chain(net, hook.masks) if cfg.remove_dead else hook.masks
    record: dict[str, Any] = {
        "method": "gradual",
        "backprop_epochs": cfg.gradual_epochs,
        "steps": result.steps,
        "schedule": [[s, v] for s, v in hook.history],
        "history": result.history,
        "wall_time_s": time.perf_counter() - t0,
    }
    return MethodResult(net, final, record)


__all__ = [
    "GradualPruning",
    "cubic_sparsity",
    "gradual_prune",
    "magnitude_step",
    "pruning_steps",
    "reinitialise",
    "schedule_at",
]
