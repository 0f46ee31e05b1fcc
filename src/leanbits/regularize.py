"""Regularizers: L2 weight decay, proximal L1 and proximal group lasso.

L1 and group lasso are applied as *proximal* steps after each optimizer step rather than as
penalty gradients: the soft-threshold maps small weights (or whole groups) to exactly zero,
which a subgradient never does. The prox of ``lam * ||w||_1`` with step ``lr`` is
``sign(w) * max(|w| - lr*lam, 0)``; the prox of ``lam * sum_g ||w_g||_2`` shrinks each group's
norm by ``lr*lam`` and zeroes the group when its norm is below that.

Groups (``group="neurons"``): for a Linear layer, each row (a unit's incoming weights) and
each column (a unit's outgoing weights); for a Conv2d layer, each output filter and each input
channel slice. Rows and columns overlap, so both proxes are applied in turn, which is the
usual sparse-group heuristic. ``group="out"`` uses rows / filters only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from leanbits.errors import ConfigError
from leanbits.loop import FitState, Hook
from leanbits.models.layers import weight_layers

GROUPS = ("none", "neurons", "out")


def soft_threshold_(w: Tensor, t: float) -> Tensor:
    """In place ``w <- sign(w) * max(|w| - t, 0)``; returns ``w``."""
    if t > 0:
        w.copy_(torch.sign(w) * torch.clamp(w.abs() - t, min=0.0))
    return w


def group_shrink_(w: Tensor, t: float, dim: int) -> Tensor:
    """In place group soft-threshold: groups are slices along ``dim`` of ``w``.

    Each group ``g`` becomes ``g * max(0, 1 - t / ||g||_2)``, exactly zero when
    ``||g||_2 <= t``.
    """
    if t <= 0:
        return w
    reduce_dims = [d for d in range(w.ndim) if d != dim]
    norms = w.norm(p=2, dim=reduce_dims, keepdim=True)
    scale = torch.clamp(1.0 - t / norms.clamp_min(1e-30), min=0.0)
    w.mul_(scale)
    return w


@dataclass
class Regularizer:
    """Weight regularization with per-layer overrides.

    Args:
        l2: L2 weight decay coefficient (added to the loss as ``l2/2 * ||w||^2``).
        l1: L1 coefficient, applied as a proximal soft-threshold step.
        group: group-lasso coefficient, proximal.
        group_kind: ``neurons`` (rows and columns / filters and input channels) or ``out``.
        per_layer: ``{"fc1": {"l1": 1e-4}, ...}`` overrides by layer name.
        include_output: whether the output layer is regularized too.

    Example:
        >>> reg = Regularizer(l1=1e-4)
        >>> reg.prox_(model, lr=0.01)  # doctest: +SKIP
    """

    l2: float = 0.0
    l1: float = 0.0
    group: float = 0.0
    group_kind: str = "neurons"
    per_layer: dict[str, dict[str, float]] = field(default_factory=dict)
    include_output: bool = True

    def __post_init__(self) -> None:
        for name in ("l2", "l1", "group"):
            if getattr(self, name) < 0:
                raise ConfigError(f"regularizer {name} must be >= 0, got {getattr(self, name)}")
        if self.group_kind not in GROUPS[1:]:
            raise ConfigError(f"group_kind {self.group_kind!r}; valid: {', '.join(GROUPS[1:])}")
        for layer, over in self.per_layer.items():
            bad = set(over) - {"l1", "l2", "group"}
            if bad:
                raise ConfigError(
                    f"per-layer override for {layer!r} has unknown keys {sorted(bad)}; "
                    "valid: l1, l2, group"
                )

    def check_layers(self, model: nn.Module) -> None:
        names = {n for n, _ in weight_layers(model)}
        unknown = set(self.per_layer) - names
        if unknown:
            raise ConfigError(
                f"per-layer regularizer for unknown layer(s) {sorted(unknown)}; "
                f"layers: {', '.join(sorted(names))}"
            )

    def coeff(self, layer: str, kind: str) -> float:
        return float(self.per_layer.get(layer, {}).get(kind, getattr(self, kind)))

    def _layers(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        layers = weight_layers(model)
        return layers if self.include_output else layers[:-1]

    @property
    def active(self) -> bool:
        return bool(self.l2 or self.l1 or self.group or self.per_layer)

    @property
    def needs_prox(self) -> bool:
        """Whether any layer has an L1 or group coefficient (else :meth:`prox_` is a no-op)."""
        return bool(self.l1 or self.group or any(
            o.get("l1") or o.get("group") for o in self.per_layer.values()))

    def penalty(self, model: nn.Module) -> Tensor:
        """The differentiable part (L2) to add to the loss."""
        total = torch.zeros(())
        for name, m in self._layers(model):
            lam = self.coeff(name, "l2")
            if lam:
                total = total + 0.5 * lam * m.weight.pow(2).sum()
        return total

    @torch.no_grad()
    def prox_(self, model: nn.Module, lr: float) -> None:
        """Apply the proximal L1 and group steps for step size ``lr`` (after optimizer.step)."""
        for name, m in self._layers(model):
            w = m.weight
            soft_threshold_(w, lr * self.coeff(name, "l1"))
            lam = lr * self.coeff(name, "group")
            if lam:
                group_shrink_(w, lam, dim=0)  # a unit's incoming weights / a filter
                if self.group_kind == "neurons":
                    group_shrink_(w, lam, dim=1)  # a unit's outgoing weights / an input channel


class RegularizerHook(Hook):
    """A :class:`Regularizer` inside :func:`leanbits.loop.fit`.

    Adds the L2 penalty to the loss (when any layer has an L2 coefficient) and applies the
    proximal L1 / group step after each optimizer step, with that step's learning rate
    (read before the scheduler moves it).
    """

    def __init__(self, reg: Regularizer) -> None:
        self.reg = reg
        self._penalty = bool(reg.l2 or reg.per_layer)
        self._prox = reg.needs_prox

    def extra_loss(self, state: FitState) -> Tensor | None:
        return self.reg.penalty(state.model) if self._penalty else None

    def after_step(self, state: FitState) -> None:
        if self._prox:
            self.reg.prox_(state.model, lr=state.optimizer.param_groups[0]["lr"])
