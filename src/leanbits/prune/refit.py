"""Non-weight re-fit (the snapshot method) and bias compensation.

After a snapshot is pruned once, the paper adjusts only the *non-weight* parameters by
backpropagation: biases, normalization scale/shift and anything else that is not the
``.weight`` of a Linear / Conv layer. :func:`refit_nonweights` does exactly that and never
changes a weight, kept or pruned. :func:`bias_compensate` gives it a good start by moving
the expected contribution of the removed weights into the biases.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leanbits.errors import PruneError, TrainingError
from leanbits.loop import DataLike, NonFiniteLoss, epoch_batches, fit, make_optimizer
from leanbits.models.layers import WEIGHT_LAYERS, weight_layers
from leanbits.prune.masks import apply_masks, layer_of, weight_key


def weight_parameter_ids(model: nn.Module) -> set[int]:
    """``id`` of every Linear / Conv ``.weight`` parameter of ``model``."""
    return {id(m.weight) for _, m in weight_layers(model) if m.weight is not None}


def nonweight_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Every parameter that is not the ``.weight`` of a Linear / Conv layer."""
    wid = weight_parameter_ids(model)
    return [(n, p) for n, p in model.named_parameters() if id(p) not in wid]


def refit_nonweights(
    model: nn.Module,
    data: DataLike,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    epochs: int = 1,
    lr: float = 1e-3,
    masks: Mapping[str, Tensor] | None = None,
    batch_size: int = 128,
    seed: int = 0,
) -> dict[str, Any]:
    """Train only the non-weight parameters of ``model`` (in place) with Adam.

    Every Linear / Conv weight is frozen - kept values and zeros alike - and is bitwise
    unchanged afterwards. ``masks``, if given, are applied first (that zeroes the pruned
    weights); from then on no weight changes.

    Args:
        model: any module with Linear / Conv layers.
        data: ``(x, y)`` tensors (shuffled each epoch with ``seed``) or an iterable of
            ``(x, y)`` batches such as a DataLoader.
        loss_fn: ``loss_fn(model(x), y) -> scalar``, e.g. ``head.loss``.
        epochs: passes over ``data``.
        lr: Adam learning rate.
        masks: optional masks to apply before training.
        batch_size: minibatch size for tensor data.
        seed: seed of the shuffling (and of any randomness in the model, e.g. dropout).

    Returns:
        ``{"epochs", "steps", "wall_time_s", "params"}`` (``params``: number of re-fitted
        values).

    Raises:
        PruneError: the model has no non-weight parameters.
        TrainingError: the loss became NaN or infinite (the non-weights are restored).

    Example:
        >>> refit_nonweights(model, (x, y), head.loss, epochs=2)  # doctest: +SKIP
        {'epochs': 2, 'steps': 860, 'wall_time_s': 3.1, 'params': 410}
    """
    if epochs < 0:
        raise PruneError(f"epochs must be >= 0, got {epochs}")
    if masks:
        apply_masks(model, masks)
    params = nonweight_parameters(model)
    if not params:
        raise PruneError("nothing to re-fit: the model has no non-weight parameters")
    t0 = time.perf_counter()
    backup = {n: p.detach().clone() for n, p in params}
    opt = make_optimizer("adam", [p for _, p in params], lr)
    try:
        result = fit(model, [p for _, p in params], epoch_batches(data, batch_size, seed),
                     loss_fn, opt, epochs=epochs, seed=seed)
    except NonFiniteLoss as exc:
        with torch.no_grad():
            for n, p in params:
                p.copy_(backup[n])
        raise TrainingError(
            f"re-fit loss became {exc.value} at epoch {exc.epoch}, step {exc.step}; "
            "lower refit_lr"
        ) from None
    return {"epochs": epochs, "steps": result.steps, "wall_time_s": time.perf_counter() - t0,
            "params": sum(p.numel() for _, p in params)}


class _Stop(Exception):
    """Raised by a hook to end a forward pass early."""


def _mean_input(m: nn.Module, a: Tensor) -> Tensor:
    """Sum over the batch of what each weight of ``m`` multiplies, plus the count."""
    if isinstance(m, nn.Linear):
        return a.reshape(-1, a.shape[-1]).sum(dim=0), a.numel() // a.shape[-1]
    return a.sum(dim=0), a.shape[0]


def _patch_mean(m: nn.Conv2d, mean_map: Tensor) -> Tensor:
    """Mean, over output positions, of the input patch each conv weight sees.

    Unfolding is linear, so unfolding the batch-mean map equals the batch mean of the
    unfolded patches; zero padding is included exactly as the conv sees it.
    """
    pad = m.padding
    if isinstance(pad, str):
        if pad != "valid":
            raise PruneError("bias compensation does not support padding='same'; use integers")
        pad = 0
    cols = F.unfold(mean_map.unsqueeze(0), m.kernel_size, m.dilation, pad, m.stride)
    return cols[0].mean(dim=1)  # C*kh*kw, the order of weight.reshape(out, -1)


def _layer_means(model: nn.Module, names: list[str], x: Tensor, batch_size: int,
                 stop_after: str | None = None) -> dict[str, Tensor]:
    """Mean input (Linear) or mean input patch (Conv2d) of each named layer on ``x``."""
    mods = dict(model.named_modules())
    sums: dict[str, Tensor] = {}
    counts: dict[str, int] = {}
    hooks = []
    for name in names:
        def hook(m, inputs, name=name):
            s, c = _mean_input(m, inputs[0].detach())
            sums[name] = sums[name] + s if name in sums else s.clone()
            counts[name] = counts.get(name, 0) + c
            if name == stop_after:
                raise _Stop
        hooks.append(mods[name].register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            for start in range(0, x.shape[0], batch_size):
                try:
                    model(x[start : start + batch_size])
                except _Stop:
                    pass
    finally:
        for h in hooks:
            h.remove()
    out = {}
    for name in names:
        mean = sums[name] / counts[name]
        m = mods[name]
        out[name] = _patch_mean(m, mean) if isinstance(m, nn.Conv2d) else mean
    return out


@torch.no_grad()
def bias_compensate(
    model: nn.Module, masks: Mapping[str, Tensor], x: Tensor, batch_size: int = 1000
) -> dict[str, Tensor]:
    """Apply ``masks`` and move the removed weights' mean contribution into the biases.

    Layer by layer, in forward order, each bias becomes
    ``b + W @ E[a] - (W * M) @ E[a']`` where ``E[a]`` is the layer's mean input (for a conv:
    mean over examples and positions of each input patch) in the dense model and ``E[a']``
    the same in the already pruned and compensated upstream network. For the first pruned
    layer this is exactly "removed weight x mean input activation", and every layer's mean
    pre-activation on ``x`` equals the dense model's (up to float rounding).

    Call it on the *unmasked* model: the removed weights' values are needed. Layers
    without a bias are masked but not compensated.

    Args:
        model: any module with Linear / Conv2d layers, modified in place.
        masks: weight name -> keep mask.
        x: inputs, e.g. a sample of the training set.
        batch_size: examples per forward pass.

    Returns:
        Layer name -> the bias change that was added.

    Example:
        >>> deltas = bias_compensate(model, prune(model, sparsity=0.9), splits.train.x[:5000])
        ... # doctest: +SKIP
    """
    if x.shape[0] == 0:
        raise PruneError("bias compensation needs at least one input example")
    mods = dict(model.named_modules())
    for k in masks:
        layer = layer_of(k)
        if layer not in mods or not k.endswith("weight") or not isinstance(
            mods[layer], WEIGHT_LAYERS
        ):
            raise PruneError(f"mask {k!r} matches no Linear / Conv weight of the model")
    order: list[str] = []
    hooks = []
    for name, m in weight_layers(model):
        if not isinstance(m, nn.Linear | nn.Conv2d):
            continue

        def rec(_m, _i, name=name):
            if name in order:
                raise PruneError(f"layer {name!r} is called twice; cannot compensate its bias")
            order.append(name)
        hooks.append(m.register_forward_pre_hook(rec))
    was_training = model.training
    model.eval()  # mean activations as the model is used: BatchNorm stats, no dropout
    try:
        try:
            model(x[:1])
        finally:
            for h in hooks:
                h.remove()
        targets = [n for n in order if mods[n].bias is not None]
        dense = _layer_means(model, targets, x, batch_size)
        dense_w = {n: mods[n].weight.detach().clone() for n in targets}
        deltas = {}
        for name in order:
            m = mods[name]
            key = weight_key(name)
            if name in dense:
                current = _layer_means(model, [name], x, batch_size, stop_after=name)[name]
                keep = masks.get(key, torch.ones_like(m.weight, dtype=torch.bool))
                w_new = m.weight.detach() * keep.to(m.weight.dtype)
                before = dense_w[name].reshape(m.weight.shape[0], -1) @ dense[name]
                after = w_new.reshape(m.weight.shape[0], -1) @ current
                deltas[name] = before - after
                m.bias.add_(deltas[name])
            if key in masks:
                apply_masks(model, {key: masks[key]})
        apply_masks(model, masks)  # also layers compensation does not cover (e.g. Conv1d)
    finally:
        model.train(was_training)
    bad = [n for n, d in deltas.items() if not bool(torch.isfinite(d).all())]
    if bad:
        raise PruneError(f"bias compensation gave non-finite biases in {bad}")
    return deltas


__all__ = [
    "bias_compensate",
    "nonweight_parameters",
    "refit_nonweights",
    "weight_parameter_ids",
]
