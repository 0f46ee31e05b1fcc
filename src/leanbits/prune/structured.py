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

:func:`structured_prune` is the method: choose the units, remove them (constants of units
left without inputs are folded into the next biases), then re-fit the non-weights or
fine-tune the kept weights.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from torch import Tensor, nn

from leanbits.errors import PruneError
from leanbits.prune.baselines import MethodResult, train_masked
from leanbits.prune.magnitude import LayerEmptiedError, unit_masks
from leanbits.prune.masks import (
    Masks,
    check_amount,
    check_examples,
    combine,
    model_masks,
    prunable_weights,
)
from leanbits.prune.refit import refit_nonweights
from leanbits.prune.structure import analyse, parse_chain, remove_dead_units
from leanbits.settings.prune import PruneConfig


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


def structured_prune(
    model: nn.Module,
    data: tuple[Tensor, Tensor],
    loss: Callable[[Tensor, Tensor], Tensor],
    cfg: PruneConfig,
    masks: Mapping[str, Tensor] | None = None,
) -> MethodResult:
    """Remove whole units of a copy of ``model`` until ``cfg.sparsity`` of its weights are
    gone, then re-fit.

    After :func:`structured_masks`, dead units are removed exactly
    (:func:`leanbits.prune.structure.remove_dead_units`), then either the non-weights are
    re-fitted for ``cfg.refit_epochs`` (``cfg.structured_retrain = "refit"``, the snapshot
    method) or the kept weights fine-tuned for ``cfg.finetune_epochs``.

    Args:
        model: a trained ``nn.Sequential`` chain (every leanbits model); not modified.
        data: ``(x, y)`` training tensors.
        loss: ``loss(output, y) -> scalar``, e.g. ``head.loss``.
        cfg: the prune settings (``sparsity``, ``exclude``, ``structured_retrain``, the
            refit / finetune fields, ``batch_size``, ``seed``).
        masks: masks the model already has; the result is a subset of them.

    Returns:
        A :class:`MethodResult`; ``record`` has ``unit_fraction`` (removed per hidden
        layer), ``backprop_epochs`` and ``wall_time_s``.

    Raises:
        PruneError: the model is not a chain, or the budget cannot be met.

    Example:
        >>> r = structured_prune(snap.model, (x, y), snap.head.loss,
        ...                      PruneConfig(sparsity=0.9))  # doctest: +SKIP
        >>> small, small_plan = compact(r.model, snap.plan, r.masks)  # doctest: +SKIP
    """
    check_examples(data)
    t0 = time.perf_counter()
    net = copy.deepcopy(model)
    new_masks, fraction = structured_masks(net, cfg.sparsity, masks, cfg.exclude)
    new_masks = remove_dead_units(net, new_masks)
    record: dict[str, Any] = {"method": "structured", "unit_fraction": fraction,
                              "retrain": cfg.structured_retrain}
    if cfg.structured_retrain == "refit" and cfg.refit_epochs > 0:
        refit_nonweights(net, data, loss, cfg.refit_epochs, cfg.refit_lr, new_masks,
                         batch_size=cfg.batch_size, seed=cfg.seed)
        record["backprop_epochs"] = cfg.refit_epochs
    elif cfg.structured_retrain == "finetune" and cfg.finetune_epochs > 0:
        train_masked(net, new_masks, data, loss, cfg.finetune_epochs, lr=cfg.finetune_lr,
                     batch_size=cfg.batch_size, seed=cfg.seed, optimizer=cfg.optimizer)
        record["backprop_epochs"] = cfg.finetune_epochs
    else:
        record["backprop_epochs"] = 0
    record["wall_time_s"] = time.perf_counter() - t0
    return MethodResult(net, new_masks, record)


__all__ = ["structured_masks", "structured_prune", "units_at"]
