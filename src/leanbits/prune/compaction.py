"""Compaction and cost: :func:`compact_sequential` and :func:`compact` rebuild a masked chain
with its dead units removed (the nonzero weights of the result are exactly the effective
connections of :mod:`.structure`, and it computes the same function), and :func:`macs`
counts the multiply-accumulates of a model, dense and with its masks.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from leanbits.errors import PruneError
from leanbits.models import build
from leanbits.models.layers import weight_layers
from leanbits.prune.masks import apply_masks, model_masks, weight_key
from leanbits.prune.structure import analyse, parse_chain


def _slice_module(m: nn.Module, out_idx: Tensor | None, in_idx: Tensor | None) -> nn.Module:
    """A new Linear / Conv2d / BatchNorm with only the given output and input units."""
    if isinstance(m, nn.Linear | nn.Conv2d):
        w = m.weight.detach()
        if out_idx is not None:
            w = w[out_idx]
        if in_idx is not None:
            w = w[:, in_idx]
        b = None if m.bias is None else m.bias.detach()
        if b is not None and out_idx is not None:
            b = b[out_idx]
        if isinstance(m, nn.Linear):
            new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
        else:
            new = nn.Conv2d(w.shape[1], w.shape[0], m.kernel_size, m.stride, m.padding,
                            m.dilation, bias=b is not None, padding_mode=m.padding_mode)
        new = new.to(device=w.device, dtype=w.dtype)
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)
        new.train(m.training)
        return new
    if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
        new = copy.deepcopy(m)
        if out_idx is None:
            return new
        new.num_features = len(out_idx)
        for pname in ("weight", "bias"):
            p = getattr(m, pname)
            if p is not None:
                setattr(new, pname, nn.Parameter(p.detach()[out_idx].clone()))
        for bname in ("running_mean", "running_var"):
            buf = getattr(m, bname)
            if buf is not None:
                setattr(new, bname, buf[out_idx].clone())
        return new
    return copy.deepcopy(m)


@torch.no_grad()
def compact_sequential(
    model: nn.Sequential, masks: Mapping[str, Tensor] | None = None, x: Tensor | None = None
) -> tuple[nn.Sequential, dict[str, Tensor]]:
    """A physically smaller copy of a Sequential chain that computes the masked function.

    Dead units are removed (constants folded into the next biases) and every layer keeps at
    least one unit: a layer with no survivors keeps unit 0 with zero weights and bias, whose
    outgoing weights are zero too, so it contributes nothing.

    Args:
        model: an ``nn.Sequential`` of supported layers; it is not modified.
        masks: keep masks; missing layers are all kept.
        x: optional inputs for the "output zero on all data" rule (exact on ``x`` only).

    Returns:
        ``(compact model, kept)`` where ``kept[layer]`` holds the indices of the original
        units kept in each weight layer. Module names are preserved.

    Raises:
        PruneError: the model is not a chain of supported layers (names the first bad one).
    """
    s = analyse(model, masks, x)
    layers = parse_chain(model)
    by_name = {l.name: l for l in layers}
    work = copy.deepcopy(model)
    wmods = dict(work.named_children())
    for name, b in s.biases.items():
        if b is not None:
            wmods[name].bias.copy_(b)
    apply_masks(work, s.masks)
    kept: dict[str, Tensor] = {}
    for i, layer in enumerate(layers):
        alive = (~s.dead[layer.name]).nonzero().flatten()
        if len(alive) == 0:
            alive = torch.zeros(1, dtype=torch.long)
            wmods[layer.name].weight[0] = 0
            if wmods[layer.name].bias is not None:
                wmods[layer.name].bias[0] = 0
            if i + 1 < len(layers):
                layers[i + 1].view(wmods[layers[i + 1].name].weight)[:, 0] = 0
        kept[layer.name] = alive
    new: OrderedDict[str, nn.Module] = OrderedDict()
    current: str | None = None  # the weight layer whose units flow at this point
    for name, m in work.named_children():
        if name in by_name:
            layer = by_name[name]
            in_idx = None
            if current is not None:
                prev_kept = kept[current]
                per_unit = m.weight.shape[1] // layer.in_units
                in_idx = (prev_kept[:, None] * per_unit + torch.arange(per_unit)).flatten()
            new[name] = _slice_module(m, kept[name], in_idx)
            current = name
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) and current is not None:
            new[name] = _slice_module(m, kept[current], None)
        else:
            new[name] = copy.deepcopy(m)
    out = nn.Sequential(new)
    out.train(model.training)
    return out, kept


def compact(
    model: nn.Sequential, plan, masks: Mapping[str, Tensor] | None = None,
    x: Tensor | None = None,
):
    """Rebuild a leanbits model from a shrunken width plan; same function as the masked model.

    Args:
        model: a model built by :func:`leanbits.models.build` from ``plan``.
        plan: its :class:`leanbits.models.Plan`.
        masks: keep masks (weight name -> bool); missing layers are all kept.
        x: optional inputs for removing units silent on every example (exact on ``x`` only).

    Returns:
        ``(compact_model, compact_plan)``: ``build(compact_plan)`` with the surviving
        weights (pruned positions are zero) and folded biases. Its nonzero weights are
        exactly :func:`effective_connections`.

    Raises:
        PruneError: ``model`` does not match ``plan``.

    Example:
        >>> small, small_plan = compact(model, plan, masks)  # doctest: +SKIP
        >>> small_plan.fc  # doctest: +SKIP
        (212, 61)
    """
    seq, kept = compact_sequential(model, masks, x)
    try:
        conv = tuple(len(kept[f"conv{i}"]) for i in range(1, len(plan.conv) + 1))
        fc = tuple(len(kept[f"fc{j}"]) for j in range(1, len(plan.fc) + 1))
    except KeyError as exc:
        raise PruneError(f"the model does not match its plan: no layer {exc}") from None
    small_plan = plan.with_widths(conv, fc)
    small = build(small_plan)
    state = seq.state_dict()
    ref = small.state_dict()
    if set(state) != set(ref) or any(state[k].shape != ref[k].shape for k in ref):
        raise PruneError("the model does not match its plan; cannot rebuild it compactly")
    small.load_state_dict(state)
    small.to(next(model.parameters()).device)
    small.train(model.training)
    return small, small_plan


@torch.no_grad()
def macs(
    model: nn.Module, input_shape: tuple[int, ...], masks: Mapping[str, Tensor] | None = None
) -> dict[str, object]:
    """Multiply-accumulates per example, dense and sparse, per Linear / Conv layer.

    Dense: output positions x weights of the layer (for a conv, positions x out-channels
    x in-channels x kernel). Sparse: output positions x nonzero unmasked weights.

    Args:
        model: any module with Linear / Conv layers.
        input_shape: shape of one example, e.g. ``(1, 28, 28)``.
        masks: keep masks; missing layers are all kept.

    Returns:
        ``{"dense": int, "sparse": int, "layers": {name: {"positions", "dense", "sparse"}}}``.

    Example:
        >>> from leanbits.models import Plan, build
        >>> macs(build(Plan("mlp", (1, 8, 8), (), (16,), 10)), (1, 8, 8))["dense"]
        1184
    """
    full = model_masks(model, masks)
    positions: dict[str, int] = {}
    hooks = []
    for name, m in weight_layers(model):
        def hook(mod, _inp, out, name=name):
            per = mod.out_features if isinstance(mod, nn.Linear) else mod.out_channels
            positions[name] = out.numel() // per
        hooks.append(m.register_forward_hook(hook))
    p0 = next(model.parameters())
    was = model.training
    model.eval()
    try:
        model(torch.zeros(1, *input_shape, dtype=p0.dtype, device=p0.device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    layers, dense, sparse = {}, 0, 0
    for name, m in model.named_modules():
        if name in positions:
            w = m.weight.detach()
            nz = int(((w != 0) & full[weight_key(name)].to(w.device)).sum())
            d, s = positions[name] * w.numel(), positions[name] * nz
            layers[name] = {"positions": positions[name], "dense": d, "sparse": s}
            dense, sparse = dense + d, sparse + s
    return {"dense": dense, "sparse": sparse, "layers": layers}
