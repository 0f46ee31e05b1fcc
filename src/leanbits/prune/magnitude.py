"""Magnitude scoring: pure functions ``(weights, amount, previous masks) -> masks``.

Definitions used throughout leanbits:

* **sparsity** = fraction of the prunable weights in scope whose mask is False afterwards.
  ``sparsity=0.9`` over 1000 weights leaves exactly ``1000 - round(0.9 * 1000) = 100``
  weights (``round`` as ``torch.nn.utils.prune`` does). Weights already pruned count
  toward the target; if they alone exceed it, nothing more is removed (masks never grow).
  Reports (:func:`leanbits.prune.search.measure`) count the weights that are *zero*
  afterwards, which is higher when a snapshot already had more exact zeros than the target.
* **ties** are broken deterministically: weights are ordered by a stable sort on ``|w|``
  (pruned ones first), then by position - layer order, then row-major index - and the
  first ones go. Exact zeros are therefore removed before any nonzero weight.
* **global** scope ranks all layers together; **layer** scope applies the same sparsity to
  each layer separately.
* A request that would remove every weight of a layer raises :class:`PruneError`: a
  layer with no weights cuts the network in two.

Structured scoring (:func:`unit_scores`, :func:`unit_masks`) ranks output units (neurons
or conv channels) by the norm of their remaining incoming weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

from leanbits.errors import PruneError
from leanbits.models.layers import weight_layers
from leanbits.prune.masks import (
    Masks,
    check_amount,
    combine,
    full_masks,
    model_masks,
    prunable_weights,
)
from leanbits.settings.prune import CRITERIA, GRANULARITIES, SCOPES


class LayerEmptiedError(PruneError):
    """The request would remove every weight of a layer (too sparse for this network)."""


def _check_weights(weights: Mapping[str, Tensor]) -> None:
    if not weights:
        raise PruneError("nothing to prune: no weights given")
    for k, w in weights.items():
        if not torch.isfinite(w).all():
            raise PruneError(f"{k} contains NaN or infinite values; cannot rank by magnitude")


def _previous(weights: Mapping[str, Tensor], previous: Mapping[str, Tensor] | None) -> Masks:
    prev = full_masks(weights)
    for k, m in (previous or {}).items():
        if k in prev:
            if tuple(m.shape) != tuple(prev[k].shape):
                raise PruneError(
                    f"previous mask {k!r} has shape {tuple(m.shape)}, the weight "
                    f"{tuple(prev[k].shape)}"
                )
            prev[k] = m.to(device=prev[k].device, dtype=torch.bool)
    return prev


def _prune_smallest(scores: Tensor, alive: Tensor, n_remove: int) -> Tensor:
    """Keep-mask (flat) that removes the ``n_remove`` smallest scores, dead entries first.

    Dead entries get score -1 (scores are >= 0), so they sort first; a stable sort keeps
    equal scores in index order, which makes the result deterministic under ties.
    """
    scores = scores.to(torch.float64)
    key = torch.where(alive, scores, torch.full_like(scores, -1.0))
    n_dead = int((~alive).sum())
    keep = alive.clone()
    if n_remove <= n_dead:
        return keep
    order = torch.sort(key, stable=True).indices
    keep[order[:n_remove]] = False
    return keep


def _check_not_empty(masks: Mapping[str, Tensor], why: str) -> None:
    for k, m in masks.items():
        if not bool(m.any()):
            raise LayerEmptiedError(
                f"{why} would remove every weight of {k.removesuffix('.weight')} "
                f"({m.numel()} weights); lower it or exclude that layer"
            )


def magnitude_scores(weight: Tensor) -> Tensor:
    """Importance of each weight: ``|w|``."""
    return weight.detach().abs()


def global_magnitude(
    weights: Mapping[str, Tensor], sparsity: float, previous: Mapping[str, Tensor] | None = None
) -> Masks:
    """Masks removing the smallest-|w| weights across all layers together.

    Args:
        weights: name -> weight tensor (the order of the mapping is the tie-break order).
        sparsity: fraction in [0, 1) of all these weights that is pruned afterwards.
        previous: earlier masks; their pruned weights stay pruned and count to the target.

    Returns:
        New masks (previous AND keep) for every key of ``weights``.

    Example:
        >>> w = {"a.weight": torch.tensor([[0.1, -2.0], [0.5, 3.0]])}
        >>> global_magnitude(w, 0.5)["a.weight"].tolist()
        [[False, True], [False, True]]
    """
    sparsity = check_amount(sparsity)
    _check_weights(weights)
    prev = _previous(weights, previous)
    names = list(weights)
    scores = torch.cat([magnitude_scores(weights[k]).flatten().cpu() for k in names])
    alive = torch.cat([prev[k].flatten().cpu() for k in names])
    keep = _prune_smallest(scores, alive, round(sparsity * scores.numel()))
    out, start = {}, 0
    for k in names:
        n = weights[k].numel()
        out[k] = keep[start : start + n].view(weights[k].shape).to(weights[k].device)
        start += n
    out = combine(prev, out)
    _check_not_empty(out, f"global sparsity {sparsity}")
    return out


def layer_magnitude(
    weights: Mapping[str, Tensor], sparsity: float, previous: Mapping[str, Tensor] | None = None
) -> Masks:
    """Masks removing the same fraction ``sparsity`` of each layer's smallest-|w| weights.

    Example:
        >>> w = {"a.weight": torch.arange(4.0).view(2, 2), "b.weight": torch.ones(2)}
        >>> [int(m.sum()) for m in layer_magnitude(w, 0.5).values()]
        [2, 1]
    """
    sparsity = check_amount(sparsity)
    _check_weights(weights)
    prev = _previous(weights, previous)
    out = {}
    for k, w in weights.items():
        keep = _prune_smallest(
            magnitude_scores(w).flatten().cpu(), prev[k].flatten().cpu(),
            round(sparsity * w.numel()),
        )
        out[k] = keep.view(w.shape).to(w.device)
    out = combine(prev, out)
    _check_not_empty(out, f"layer sparsity {sparsity}")
    return out


def threshold_masks(
    weights: Mapping[str, Tensor],
    threshold: float | Mapping[str, float],
    previous: Mapping[str, Tensor] | None = None,
) -> Masks:
    """Masks removing every weight with ``|w| < threshold`` (one value, or one per layer).

    Raises:
        PruneError: a negative threshold, or one that removes a whole layer.
    """
    _check_weights(weights)
    prev = _previous(weights, previous)
    keep = {}
    for k, w in weights.items():
        t = float(threshold[k]) if isinstance(threshold, Mapping) else float(threshold)
        if not t >= 0.0:
            raise PruneError(f"threshold for {k} must be >= 0, got {t}")
        keep[k] = magnitude_scores(w) >= t
    out = combine(prev, keep)
    _check_not_empty(out, "the threshold")
    return out


def std_masks(
    weights: Mapping[str, Tensor], q: float, previous: Mapping[str, Tensor] | None = None
) -> Masks:
    """Han et al. (2015): per layer, remove ``|w| < q * std`` of that layer's live weights.

    The standard deviation is taken over the weights that are still alive (all of them on
    a first pass), so repeated passes tighten the threshold as in iterative pruning.
    """
    if not q >= 0.0:
        raise PruneError(f"the std quality parameter q must be >= 0, got {q}")
    _check_weights(weights)
    prev = _previous(weights, previous)
    thresholds = {}
    for k, w in weights.items():
        live = w.detach()[prev[k]]
        thresholds[k] = q * float(live.std()) if live.numel() > 1 else 0.0
    return threshold_masks(weights, thresholds, prev)


def unit_scores(weight: Tensor, mask: Tensor | None = None, p: float = 2.0) -> Tensor:
    """Norm of each output unit's (row's / output channel's) live incoming weights.

    Example:
        >>> unit_scores(torch.tensor([[3.0, 4.0], [0.0, 1.0]])).tolist()
        [5.0, 1.0]
    """
    w = weight.detach()
    if mask is not None:
        w = w * mask.to(w.dtype)
    return torch.linalg.vector_norm(w.reshape(w.shape[0], -1), ord=p, dim=1)


def unit_masks(
    weights: Mapping[str, Tensor],
    fraction: float,
    previous: Mapping[str, Tensor] | None = None,
    p: float = 2.0,
) -> Masks:
    """Per layer, remove the ``round(fraction * units)`` output units of smallest norm.

    A removed unit loses every incoming weight (its whole row / output channel); units
    already without live weights count as removed. Ties go by unit index.

    Raises:
        PruneError: ``fraction`` outside [0, 1) or a layer would lose every unit.
    """
    fraction = check_amount(fraction, "unit fraction")
    _check_weights(weights)
    prev = _previous(weights, previous)
    out = {}
    for k, w in weights.items():
        alive_units = prev[k].reshape(w.shape[0], -1).any(dim=1).cpu()
        scores = unit_scores(w, prev[k], p).cpu()
        keep_units = _prune_smallest(scores, alive_units, round(fraction * w.shape[0]))
        shape = (w.shape[0],) + (1,) * (w.ndim - 1)
        out[k] = keep_units.view(shape).expand_as(w).to(w.device)
    out = combine(prev, out)
    _check_not_empty(out, f"unit fraction {fraction}")
    return out


def geometric_schedule(sparsity: float, rounds: int) -> list[float]:
    """Sparsities for iterative pruning: the kept fraction shrinks geometrically.

    Round ``k`` of ``n`` keeps ``(1 - sparsity) ** (k / n)``; the last level is exactly
    ``sparsity``.

    Example:
        >>> [round(s, 3) for s in geometric_schedule(0.99, 2)]
        [0.9, 0.99]
    """
    sparsity = check_amount(sparsity)
    if rounds < 1:
        raise PruneError(f"rounds must be >= 1, got {rounds}")
    levels = [1.0 - (1.0 - sparsity) ** (k / rounds) for k in range(1, rounds + 1)]
    levels[-1] = sparsity
    return levels


def prune(
    model: nn.Module,
    sparsity: float = 0.9,
    scope: str = "global",
    criterion: str = "sparsity",
    threshold: float | None = None,
    q: float | None = None,
    granularity: str = "weight",
    layers: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    masks: Mapping[str, Tensor] | None = None,
) -> Masks:
    """Magnitude-prune the Linear / Conv weights of ``model``; return masks (model untouched).

    Args:
        model: any module with Linear / Conv layers.
        sparsity: fraction in [0, 1) of the weights in scope pruned afterwards
            (``criterion="sparsity"``); for ``granularity="unit"``, the fraction of each
            layer's units.
        scope: ``"global"`` (rank all layers together) or ``"layer"`` (same fraction each).
        criterion: ``"sparsity"``, ``"threshold"`` (``|w| < threshold``) or ``"std"``
            (``|w| < q * std`` of each layer, Han et al. 2015).
        threshold: the absolute threshold for ``criterion="threshold"``.
        q: the quality parameter for ``criterion="std"``.
        granularity: ``"weight"`` (unstructured) or ``"unit"`` (whole neurons / channels by
            weight norm; the output layer is excluded automatically).
        layers: prune only these layers (``"fc1"`` or ``"fc1.weight"``); default all.
        exclude: never prune these layers.
        masks: previous masks; the result is always a subset of them.

    Returns:
        Masks for every Linear / Conv weight of ``model`` (all True where not pruned).

    Raises:
        PruneError: an amount outside [0, 1), unknown layer or option, or a request that
            removes a whole layer.

    Example:
        >>> masks = prune(model, sparsity=0.9)  # doctest: +SKIP
        >>> apply_masks(model, masks)  # doctest: +SKIP
    """
    if scope not in SCOPES:
        raise PruneError(f"unknown scope {scope!r}; valid: {', '.join(SCOPES)}")
    if criterion not in CRITERIA:
        raise PruneError(f"unknown criterion {criterion!r}; valid: {', '.join(CRITERIA)}")
    if granularity not in GRANULARITIES:
        raise PruneError(
            f"unknown granularity {granularity!r}; valid: {', '.join(GRANULARITIES)}"
        )
    base = model_masks(model, masks)
    if granularity == "unit":
        last = weight_layers(model)[-1][0]
        exclude = [*exclude, last]  # the outputs are the answer; never drop one
        if criterion != "sparsity":
            raise PruneError("granularity='unit' ranks units by norm; use criterion='sparsity'")
    weights = prunable_weights(model, layers, exclude)
    if criterion == "threshold":
        if threshold is None:
            raise PruneError("criterion 'threshold' needs a threshold value")
        new = threshold_masks(weights, threshold, base)
    elif criterion == "std":
        if q is None:
            raise PruneError("criterion 'std' needs the quality parameter q")
        new = std_masks(weights, q, base)
    elif granularity == "unit":
        new = unit_masks(weights, sparsity, base)
    elif scope == "global":
        new = global_magnitude(weights, sparsity, base)
    else:
        new = layer_magnitude(weights, sparsity, base)
    return combine(base, new)
