"""Structured magnitude pruning to a weight budget: whole units go, their rows and columns too.

Removing a hidden unit (a neuron, or a conv output channel) removes its incoming row *and*
its outgoing column, so what is left is a smaller dense network: after compaction
(:func:`leanbits.prune.structure.compact`) the removed units cost no value bits and no
position bits at all, where unstructured pruning pays positions for every kept weight.

:func:`structured_masks` removes the same fraction of units from every hidden layer, the
units of smallest incoming-weight norm first (:func:`leanbits.prune.magnitude.unit_masks`),
and finds by bisection the smallest fraction whose *effective* connections - live weights
between surviving units, after dead-unit removal (:func:`leanbits.prune.structure.analyse`)
- are at most ``1 - sparsity`` of all prunable weights. Output units are never removed.
The re-fit afterwards is the method's business (:mod:`leanbits.prune.methods`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from torch import Tensor, nn

from leanbits.errors import PruneError
from leanbits.prune.magnitude import LayerEmptiedError, unit_masks
from leanbits.prune.masks import Masks, check_amount, combine, model_masks, prunable_weights
from leanbits.prune.structure import analyse, parse_chain


def _effective(model: nn.Module, masks: Masks) -> tuple[Masks, int]:
    s = analyse(model, masks)
    return s.masks, s.effective_connections()


def units_at(model: nn.Module, fraction: float, masks: Mapping[str, Tensor] | None = None,
             exclude: Iterable[str] = ()) -> Masks:
    """Masks removing ``round(fraction * units)`` weakest units of every hidden layer.

    The last weight layer (the outputs) and ``exclude`` keep all their units. The masks
    are *effective*: weights into or out of a removed unit are masked as well.

    Raises:
        LayerEmptiedError: a layer would lose every unit.
    """
    layers = parse_chain(model)
    base = model_masks(model, masks)
    weights = prunable_weights(model, exclude=[*exclude, layers[-1].name])
    keep = unit_masks(weights, fraction, {k: base[k] for k in weights})
    return _effective(model, combine(base, keep))[0]


def structured_masks(
    model: nn.Module,
    sparsity: float,
    masks: Mapping[str, Tensor] | None = None,
    exclude: Iterable[str] = (),
    tol: float = 1e-4,
) -> tuple[Masks, float]:
    """Smallest per-layer unit fraction whose effective weights meet ``1 - sparsity``.

    Args:
        model: an ``nn.Sequential`` chain (every leanbits model is one).
        sparsity: fraction in [0, 1) of all prunable weights that must be gone, counting
            the weights lost with removed units.
        masks: masks the model already has (the result is a subset).
        exclude: layers whose units are never removed.
        tol: bisection stops when the fraction bracket is this narrow.

    Returns:
        ``(masks, fraction)``: effective masks and the unit fraction removed per layer.

    Raises:
        PruneError: the model is not a chain, or the budget cannot be met while every
            hidden layer keeps at least one unit.

    Example:
        >>> masks, f = structured_masks(build(plan), 0.9)  # doctest: +SKIP
    """
    sparsity = check_amount(sparsity)
    base = model_masks(model, masks)
    total = sum(m.numel() for m in base.values())
    budget = total - round(sparsity * total)
    exclude = tuple(exclude)

    def kept(fraction: float) -> tuple[Masks, int] | None:
        try:
            out = units_at(model, fraction, base, exclude)
        except LayerEmptiedError:
            return None
        return out, sum(int(m.sum()) for m in out.values())

    first = kept(0.0)
    assert first is not None  # fraction 0 removes no unit
    if first[1] <= budget:
        return first[0], 0.0
    lo, hi, best = 0.0, 1.0, None
    while hi - lo > tol:
        mid = (lo + hi) / 2
        got = kept(mid)
        if got is None:  # a layer emptied: too many units gone
            hi = mid
        elif got[1] <= budget:
            hi, best = mid, (got[0], mid)
        else:
            lo = mid
    if best is None:
        raise PruneError(
            f"removing whole units cannot reach sparsity {sparsity} while every hidden layer "
            "keeps a unit; lower the sparsity or prune weights instead"
        )
    return best


__all__ = ["structured_masks", "units_at"]
