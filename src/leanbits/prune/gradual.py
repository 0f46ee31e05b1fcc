"""Gradual magnitude pruning (Zhu & Gupta 2017): masks that tighten on a cubic schedule.

Sparsity rises from ``s_i`` at step ``t0`` to ``s_f`` at step ``t0 + span`` as

    s(t) = s_f + (s_i - s_f) * (1 - (t - t0) / span) ** 3

and is applied every ``frequency`` optimizer steps (plus once exactly at ``t0 + span``), so
pruning is fast early, when many weights are redundant, and slow near the end. Between
pruning events the masks stay as they are and are re-applied after every optimizer step;
a mask never grows back (each event ranks the weights and ANDs with the old mask).

The pure parts - :func:`cubic_sparsity`, :func:`pruning_steps`, :func:`schedule_at` - are
plain numbers in, numbers out. :class:`GradualPruning` is the training hook that applies
them; :func:`gradual_prune` is the method (train or fine-tune with the hook).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from leanbits.errors import PruneError
from leanbits.prune.magnitude import SCOPES, global_magnitude, layer_magnitude
from leanbits.prune.masks import Masks, apply_masks, check_amount, model_masks, prunable_weights


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


class GradualPruning:
    """Training hook: prune on the cubic schedule, keep pruned weights at exactly zero.

    ``on_start`` prunes when the schedule has an event at step 0; after every optimizer
    step the hook counts the step, prunes at the scheduled events and re-applies the masks
    (so neither momentum nor Adam state revives a weight). ``after_backward`` zeroes the
    gradients of pruned weights so optimizer state does not build up behind the mask.

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
        history: ``(step, sparsity)`` of every pruning event, sparsity as measured.
    """

    def __init__(self, model: nn.Module, final: float, begin: int, span: int, frequency: int,
                 initial: float = 0.0, scope: str = "global", exclude: tuple[str, ...] = (),
                 masks: Mapping[str, Tensor] | None = None) -> None:
        _check_schedule(initial, final, begin, span)
        if scope not in SCOPES:
            raise PruneError(f"unknown scope {scope!r}; valid: {', '.join(SCOPES)}")
        self.model = model
        self.initial, self.final, self.begin, self.span = initial, final, begin, span
        self.frequency, self.scope = frequency, scope
        self.events = set(pruning_steps(begin, span, frequency))
        self.keys = list(prunable_weights(model, exclude=exclude))
        self.masks: Masks = model_masks(model, masks)
        self.step = 0
        self.history: list[tuple[int, float]] = []
        self._params = dict(model.named_parameters())

    def target(self, step: int) -> float:
        """The schedule's sparsity for an event at ``step``."""
        return cubic_sparsity(step, self.initial, self.final, self.begin, self.span)

    def prune_now(self) -> None:
        """Recompute the masks for the current step and zero the pruned weights."""
        weights = {k: self._params[k].detach() for k in self.keys}
        previous = {k: self.masks[k] for k in self.keys}
        new = magnitude_step(weights, self.target(self.step), self.scope, previous)
        self.masks.update(new)
        apply_masks(self.model, self.masks)
        scoped = [self.masks[k] for k in self.keys]
        kept = sum(int(m.sum()) for m in scoped)
        total = sum(m.numel() for m in scoped)
        self.history.append((self.step, 1.0 - kept / total))

    def on_start(self, state: object = None) -> None:
        apply_masks(self.model, self.masks)
        if 0 in self.events:
            self.prune_now()

    def after_backward(self, state: object = None) -> None:
        for k, m in self.masks.items():
            p = self._params[k]
            if p.grad is not None:
                p.grad.mul_(m.to(p.grad.dtype))

    def after_step(self, state: object = None) -> None:
        self.step += 1
        if self.step in self.events:
            self.prune_now()
        else:
            apply_masks(self.model, self.masks)

    def after_epoch(self, state: object = None) -> dict[str, float]:
        last = self.history[-1][1] if self.history else 0.0
        return {"sparsity": last}


__all__ = [
    "GradualPruning",
    "cubic_sparsity",
    "magnitude_step",
    "pruning_steps",
    "schedule_at",
]
