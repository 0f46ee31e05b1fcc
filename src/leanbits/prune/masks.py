"""Pruning masks: ``dict`` parameter name -> bool tensor, ``True`` = the weight is kept.

Masks are keyed by parameter name (``"fc1.weight"``, ``"conv2.weight"``) and have the
shape of the weight they mask. *Prunable weights* are the ``.weight`` of every
weight layer (:mod:`leanbits.models.layers`), the output layer included. A mask never un-prunes:
every operation here combines a new decision with the old mask by logical AND.

The helpers are small and pure except :func:`apply_masks`, which zeroes weights in place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

from leanbits.errors import PruneError
from leanbits.loop import FitState, Hook
from leanbits.models.layers import weight_layers

Masks = dict[str, Tensor]


def weight_key(module_name: str) -> str:
    """Mask key of a layer's weight: ``"fc1"`` -> ``"fc1.weight"`` (a bare layer: ``"weight"``)."""
    return f"{module_name}.weight" if module_name else "weight"


def layer_of(key: str) -> str:
    """Layer name of a mask key: ``"fc1.weight"`` -> ``"fc1"``, ``"weight"`` -> ``""``."""
    return "" if key == "weight" else key.removesuffix(".weight")


def resolve_layers(model: nn.Module, names: Iterable[str]) -> list[str]:
    """Map layer names (``"fc1"``) or weight names (``"fc1.weight"``) to weight names.

    Raises:
        PruneError: a name is not a Linear / Conv layer of ``model``; the message lists
            the valid names.
    """
    valid = [weight_key(n) for n, _ in weight_layers(model)]
    out = []
    for name in names:
        key = name if name in valid else weight_key(name)
        if key not in valid:
            raise PruneError(
                f"no prunable layer {name!r} in the model; valid: "
                + ", ".join(v.removesuffix(".weight") for v in valid)
            )
        out.append(key)
    return out


def prunable_weights(
    model: nn.Module,
    layers: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
) -> dict[str, Tensor]:
    """The prunable weights of ``model`` (detached), keyed by parameter name, in layer order.

    Args:
        model: any module; its Linear / Conv layers are found by ``named_modules``.
        layers: only these layers (names with or without ``.weight``); default all.
        exclude: never these layers.

    Returns:
        ``{"fc1.weight": tensor, ...}`` (the tensors share storage with the model).

    Raises:
        PruneError: an unknown layer name, or nothing left to prune.

    Example:
        >>> list(prunable_weights(build(plan), exclude=["out"]))  # doctest: +SKIP
        ['fc1.weight', 'fc2.weight']
    """
    chosen = set(resolve_layers(model, layers)) if layers is not None else None
    skipped = set(resolve_layers(model, exclude))
    out = {}
    for name, m in weight_layers(model):
        key = weight_key(name)
        if (chosen is None or key in chosen) and key not in skipped:
            out[key] = m.weight.detach()
    if not out:
        raise PruneError("no prunable layers left after applying layers/exclude")
    return out


def check_amount(amount: float, what: str = "sparsity") -> float:
    """Return ``amount`` as a float if it lies in [0, 1), else raise PruneError."""
    try:
        value = float(amount)
    except (TypeError, ValueError):
        raise PruneError(f"{what} must be a number in [0, 1), got {amount!r}") from None
    if not 0.0 <= value < 1.0:  # also rejects NaN
        raise PruneError(
            f"{what} must be in [0, 1) (the fraction of weights removed), got {amount!r}"
        )
    return value


def check_examples(data: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """The ``(x, y)`` a pruning method trains on, refused when there are no examples.

    Raises:
        PruneError: ``x`` has no rows.
    """
    x, y = data
    if x.shape[0] == 0:
        raise PruneError("no training examples to prune with")
    return x, y


def full_masks(weights: Mapping[str, Tensor]) -> Masks:
    """All-True masks for ``weights``."""
    return {k: torch.ones_like(w, dtype=torch.bool) for k, w in weights.items()}


def check_masks(masks: Mapping[str, Tensor], weights: Mapping[str, Tensor]) -> None:
    """Raise PruneError if a mask names no weight or has the wrong shape."""
    for k, m in masks.items():
        if k not in weights:
            raise PruneError(
                f"mask {k!r} matches no prunable weight; valid: {', '.join(weights)}"
            )
        if tuple(m.shape) != tuple(weights[k].shape):
            raise PruneError(
                f"mask {k!r} has shape {tuple(m.shape)}, the weight {tuple(weights[k].shape)}"
            )


def combine(old: Mapping[str, Tensor] | None, keep: Mapping[str, Tensor]) -> Masks:
    """New masks = old AND keep, so a pruned weight is never revived.

    Keys only in ``old`` are kept unchanged; keys only in ``keep`` are taken as they are.
    """
    out = {k: v.to(torch.bool).clone() for k, v in (old or {}).items()}
    for k, v in keep.items():
        v = v.to(torch.bool)
        out[k] = out[k] & v if k in out else v.clone()
    return out


def model_masks(model: nn.Module, masks: Mapping[str, Tensor] | None = None) -> Masks:
    """Masks for every prunable weight of ``model``: ``masks`` where given, else all True."""
    weights = {weight_key(n): m.weight.detach() for n, m in weight_layers(model)}
    masks = dict(masks or {})
    check_masks(masks, weights)
    return {k: masks[k].to(torch.bool) if k in masks else torch.ones_like(w, dtype=torch.bool)
            for k, w in weights.items()}


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, Tensor]) -> nn.Module:
    """Zero, in place, every weight whose mask entry is False; return ``model``.

    Raises:
        PruneError: a mask names no parameter of ``model`` or has the wrong shape.

    Example:
        >>> apply_masks(model, prune(model, sparsity=0.9))  # doctest: +SKIP
    """
    params = dict(model.named_parameters())
    for k, m in masks.items():
        if k not in params:
            raise PruneError(f"mask {k!r} matches no parameter of the model")
        p = params[k]
        if tuple(m.shape) != tuple(p.shape):
            raise PruneError(f"mask {k!r} has shape {tuple(m.shape)}, the weight {tuple(p.shape)}")
        p.masked_fill_(~m.to(device=p.device, dtype=torch.bool), 0.0)
    return model


class MaskHook(Hook):
    """Keeps masked-out weights exactly zero while :func:`leanbits.loop.fit` trains.

    The masks are applied when training starts; after each ``backward`` the gradients of
    pruned weights are zeroed and after each optimizer step the masks are re-applied, so
    neither momentum nor Adam state can revive a weight. :meth:`set_masks` swaps in new
    masks during training (gradual pruning).

    Args:
        masks: weight name -> keep mask (names and shapes are checked on binding).
    """

    def __init__(self, masks: Mapping[str, Tensor] | None) -> None:
        self.masks: Masks = dict(masks or {})
        self._pairs: list[tuple[nn.Parameter, Tensor]] = []

    def set_masks(self, model: nn.Module, masks: Mapping[str, Tensor]) -> None:
        """Use ``masks`` from now on, zeroing what they remove from ``model``."""
        self.masks = dict(masks)
        self._bind(model)

    def _bind(self, model: nn.Module) -> None:
        apply_masks(model, self.masks)
        params = dict(model.named_parameters())
        self._pairs = [(params[k], m.to(params[k].dtype)) for k, m in self.masks.items()]

    def on_start(self, state: FitState) -> None:
        self._bind(state.model)

    def after_backward(self, state: FitState) -> None:
        for p, m in self._pairs:
            if p.grad is not None:
                p.grad.mul_(m)

    @torch.no_grad()
    def after_step(self, state: FitState) -> None:
        for p, m in self._pairs:
            p.mul_(m)


def masked_fraction(masks: Mapping[str, Tensor]) -> float:
    """Fraction of masked-out entries over all masks (0.0 for no masks)."""
    total = sum(m.numel() for m in masks.values())
    removed = sum(int((~m.to(torch.bool)).sum()) for m in masks.values())
    return removed / total if total else 0.0


def count_nonzero_weights(model: nn.Module, masks: Mapping[str, Tensor] | None = None) -> int:
    """Number of prunable weights that are nonzero and not masked out."""
    full = model_masks(model, masks)
    total = 0
    for name, m in weight_layers(model):
        key = weight_key(name)
        total += int(((m.weight.detach() != 0) & full[key].to(m.weight.device)).sum())
    return total
