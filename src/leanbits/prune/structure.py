"""Structure after masking: dead units, effective connections, compaction, MACs.

The analysis walks an ``nn.Sequential`` chain of ``Linear`` / ``Conv2d`` layers with
``ReLU``, ``MaxPool2d``, ``Flatten``, ``BatchNorm1d/2d``, ``Dropout`` and ``Identity``
between them (every leanbits model is such a chain). A *unit* is a neuron of a Linear
layer or an output channel of a Conv2d layer. A weight is *live* when its mask is True and
its value is nonzero. A hidden unit is **dead** when

* it has **no live outputs** (nothing downstream reads it), or
* it has **no live inputs**, so it emits a constant ``c = ops(bias)``, and that constant
  can be folded *exactly* into the next layer's biases: ``c == 0``, or the next layer is a
  Linear / an unpadded Conv2d with a bias. (With zero padding a nonzero constant channel is
  not spatially constant after padding, so such a unit stays alive as a constant source.)
* or, when data is given, its output (after the ops following it) is **zero on every
  example** - e.g. a ReLU that never fires. This removal is exact on that data only.

Removing a unit removes its incoming and outgoing weights, which can kill more units, so
the rules are applied until nothing changes. Output units are never removed, inputs are
never touched, and the analysis assumes eval-mode behaviour (BatchNorm running stats).

An **effective connection** is a live weight whose source and target units are both alive
after this process; :func:`compact` builds a model whose nonzero weights are exactly the
effective connections (:mod:`.compaction`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from leanbits.errors import PruneError
from leanbits.prune.masks import Masks, apply_masks, model_masks

#: the weight layers (:data:`leanbits.models.layers.WEIGHT_LAYERS`) a chain can hold and
#: compaction can rebuild: of the convolutions, only Conv2d
_CHAIN_WEIGHTS = (nn.Linear, nn.Conv2d)
PASS_TYPES = (nn.ReLU, nn.MaxPool2d, nn.Flatten, nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout,
              nn.Identity)
_SUPPORTED = "Linear, Conv2d, ReLU, MaxPool2d, Flatten, BatchNorm1d/2d, Dropout, Identity"


@dataclass
class _Layer:
    """One weight layer of the chain and the pass-through modules after it."""

    name: str
    module: nn.Linear | nn.Conv2d
    ops: list[tuple[str, nn.Module]] = field(default_factory=list)
    #: units of the previous weight layer feeding this one (None: first layer, raw inputs)
    in_units: int | None = None

    @property
    def units(self) -> int:
        m = self.module
        return m.out_features if isinstance(m, nn.Linear) else m.out_channels

    @property
    def key(self) -> str:
        return f"{self.name}.weight"

    def view(self, w: Tensor) -> Tensor:
        """``w`` as ``[out units, in units, positions per in unit]``."""
        groups = self.in_units if self.in_units is not None else (
            w.shape[1] if w.ndim > 1 else 1)
        return w.reshape(w.shape[0], groups, -1)


def _padded(conv: nn.Conv2d) -> bool:
    if isinstance(conv.padding, str):
        return conv.padding == "same" and any(k > 1 for k in conv.kernel_size)
    return any(p > 0 for p in conv.padding)


def parse_chain(model: nn.Module) -> list[_Layer]:
    """The weight layers of a Sequential chain, each with the modules that follow it.

    Raises:
        PruneError: ``model`` is not a flat ``nn.Sequential`` of supported layers; the
            message names the first layer that cannot be handled.
    """
    if not isinstance(model, nn.Sequential):
        raise PruneError(
            f"structure analysis needs an nn.Sequential chain ({_SUPPORTED}); "
            f"got {type(model).__name__}"
        )
    layers: list[_Layer] = []
    flattened = False
    for name, m in model.named_children():
        if isinstance(m, _CHAIN_WEIGHTS):
            if isinstance(m, nn.Conv2d) and (m.groups != 1 or m.padding_mode != "zeros"):
                raise PruneError(
                    f"cannot analyse layer {name!r}: Conv2d with groups={m.groups}, "
                    f"padding_mode={m.padding_mode!r} (only groups=1, zeros padding)"
                )
            prev = layers[-1] if layers else None
            layer = _Layer(name, m)
            if prev is not None:
                layer.in_units = prev.units
                fan_in = m.in_features if isinstance(m, nn.Linear) else m.in_channels
                if isinstance(prev.module, nn.Conv2d) and isinstance(m, nn.Linear):
                    if not flattened or fan_in % prev.units:
                        raise PruneError(
                            f"cannot analyse layer {name!r}: {fan_in} inputs do not split "
                            f"into the {prev.units} channels of {prev.name!r} after a Flatten"
                        )
                elif isinstance(prev.module, nn.Linear) and isinstance(m, nn.Conv2d):
                    raise PruneError(f"cannot analyse layer {name!r}: a Conv2d after a Linear")
                elif fan_in != prev.units:
                    raise PruneError(
                        f"cannot analyse layer {name!r}: expects {fan_in} inputs, "
                        f"{prev.name!r} has {prev.units} units"
                    )
            layers.append(layer)
            flattened = False
        elif isinstance(m, PASS_TYPES):
            if isinstance(m, nn.Flatten):
                if m.start_dim != 1 or m.end_dim != -1:
                    raise PruneError(f"cannot analyse layer {name!r}: Flatten must be (1, -1)")
                flattened = True
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) and layers:
                if m.num_features != layers[-1].units:
                    raise PruneError(
                        f"cannot analyse layer {name!r}: {m.num_features} features after "
                        f"{layers[-1].name!r} with {layers[-1].units} units"
                    )
            if layers:
                layers[-1].ops.append((name, m))
        else:
            raise PruneError(
                f"cannot analyse layer {name!r} ({type(m).__name__}); supported: {_SUPPORTED}"
            )
    if not layers:
        raise PruneError("the model has no Linear or Conv2d layer")
    return layers


def _through_ops(ops: list[tuple[str, nn.Module]], c: Tensor) -> Tensor:
    """The per-unit constant after ``ops``, for units emitting the constant ``c``."""
    for _, m in ops:
        if isinstance(m, nn.ReLU):
            c = c.clamp_min(0)
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            if m.running_mean is not None:
                c = (c - m.running_mean) / torch.sqrt(m.running_var + m.eps)
            else:  # batch statistics of a constant: zero after centring
                c = torch.zeros_like(c)
            if m.affine:
                c = c * m.weight.detach() + m.bias.detach()
        # MaxPool2d of a constant map is that constant (it pads with -inf); Flatten,
        # Dropout (eval) and Identity leave values unchanged.
    return c


@torch.no_grad()
def _silent_units(model: nn.Sequential, layers: list[_Layer], masks: Masks, x: Tensor,
                  batch_size: int = 1000) -> list[Tensor]:
    """Per layer, units whose output (after their ops) is exactly zero on every example."""
    masked = apply_masks(copy.deepcopy(model), masks).eval()
    nonzero: list[Tensor | None] = [None] * len(layers)
    hooks = []
    for i, layer in enumerate(layers[1:]):
        def hook(_m, inputs, i=i):
            a = inputs[0]
            units = layers[i].units
            nz = (a.reshape(a.shape[0], units, -1) != 0).any(dim=2).any(dim=0)
            nonzero[i] = nz if nonzero[i] is None else nonzero[i] | nz
        hooks.append(dict(masked.named_children())[layer.name].register_forward_pre_hook(hook))
    try:
        for start in range(0, x.shape[0], batch_size):
            masked(x[start : start + batch_size])
    finally:
        for h in hooks:
            h.remove()
    out = []
    for i, layer in enumerate(layers):
        if i == len(layers) - 1 or nonzero[i] is None:
            out.append(torch.zeros(layer.units, dtype=torch.bool))
        else:
            out.append(~nonzero[i].cpu())
    return out


@dataclass
class Structure:
    """Result of :func:`analyse`: what survives once dead units are removed.

    Attributes:
        layers: weight layer names, in order.
        dead: layer -> bool per unit, True where the unit is removed.
        masks: weight name -> bool, True for effective connections only.
        biases: layer -> bias after folding the constants of removed units into the next
            layer's, zero at removed units (None: no bias).
        units: layer -> total units (before removal).
    """

    layers: list[str]
    dead: dict[str, Tensor]
    masks: Masks
    biases: dict[str, Tensor | None]
    units: dict[str, int]

    def live_units(self) -> dict[str, int]:
        return {k: int((~d).sum()) for k, d in self.dead.items()}

    def connections(self) -> dict[str, int]:
        """Effective connections per layer."""
        return {k.removesuffix(".weight"): int(m.sum()) for k, m in self.masks.items()}

    def effective_connections(self) -> int:
        return sum(self.connections().values())


@torch.no_grad()
def analyse(
    model: nn.Module, masks: Mapping[str, Tensor] | None = None, x: Tensor | None = None
) -> Structure:
    """Find dead units and effective connections of ``model`` under ``masks``.

    Pure: the model is not modified (folded biases are returned, not written).

    Args:
        model: an ``nn.Sequential`` chain (see the module docstring).
        masks: weight name -> keep mask; missing layers are all kept.
        x: optional inputs; units whose output is zero on all of them are removed too.

    Returns:
        A :class:`Structure`.
    """
    layers = parse_chain(model)
    full = model_masks(model, masks)
    n = len(layers)
    w_views, live = [], []
    for layer in layers:
        w = layer.module.weight.detach()
        keep = full[layer.key].to(w.device) & (w != 0)
        live.append(layer.view(keep).clone())
        w_views.append(layer.view(w * keep))
    biases = [None if l.module.bias is None else l.module.bias.detach().clone() for l in layers]
    silent = (_silent_units(model, layers, full, x) if x is not None
              else [torch.zeros(l.units, dtype=torch.bool) for l in layers])
    dead = [torch.zeros(l.units, dtype=torch.bool) for l in layers]

    changed = True
    while changed:
        changed = False
        for i in range(n - 1):  # output units are never removed
            nxt = layers[i + 1]
            has_in = live[i].flatten(1).any(dim=1).cpu()
            has_out = live[i + 1].any(dim=2).any(dim=0).cpu()
            bias = biases[i] if biases[i] is not None else torch.zeros(layers[i].units)
            const = _through_ops(layers[i].ops, bias).cpu()
            can_fold = (const == 0) | torch.tensor(
                biases[i + 1] is not None
                and not (isinstance(nxt.module, nn.Conv2d) and _padded(nxt.module))
            )
            new = ~dead[i] & (~has_out | silent[i] | (~has_in & can_fold))
            if not bool(new.any()):
                continue
            changed = True
            idx = new.nonzero().flatten()
            # A unit without inputs still sends its constant: move it into the next bias.
            fold = idx[~has_in[idx] & ~silent[i][idx] & (const[idx] != 0)]
            if len(fold):
                contrib = w_views[i + 1][:, fold, :].sum(dim=2) @ const[fold].to(
                    w_views[i + 1].dtype).to(w_views[i + 1].device)
                biases[i + 1] = biases[i + 1] + contrib
            dead[i][idx] = True
            live[i][idx] = False
            w_views[i][idx] = 0
            live[i + 1][:, idx] = False
            w_views[i + 1][:, idx] = 0
    for b, d in zip(biases, dead, strict=True):
        if b is not None:  # nothing reads a dead unit: its bias is zero, and costs 1 bit
            b[d.to(b.device)] = 0
    out_masks = {}
    for layer, lv in zip(layers, live, strict=True):
        out_masks[layer.key] = lv.reshape(layer.module.weight.shape)
    for k, m in full.items():  # layers outside the chain analysis keep their masks
        out_masks.setdefault(k, m)
    return Structure(
        layers=[l.name for l in layers],
        dead={l.name: d for l, d in zip(layers, dead, strict=True)},
        masks=out_masks,
        biases={l.name: b for l, b in zip(layers, biases, strict=True)},
        units={l.name: l.units for l in layers},
    )


@torch.no_grad()
def unread_units(model: nn.Module, masks: Mapping[str, Tensor] | None = None
                 ) -> dict[str, Tensor]:
    """Layer name -> bool per unit, True where no live weight of the next layer reads the
    unit (output units are always read). Such a unit's bias can be anything, so zeroing it
    changes nothing the model computes; unlike :func:`analyse` this folds nothing and
    changes no weight.

    Example:
        >>> unread = unread_units(model, masks)  # doctest: +SKIP
    """
    layers = parse_chain(model)
    full = model_masks(model, masks)
    out = {}
    for i, layer in enumerate(layers):
        if i + 1 == len(layers):
            out[layer.name] = torch.zeros(layer.units, dtype=torch.bool)
            continue
        nxt = layers[i + 1]
        w = nxt.module.weight.detach()
        live = nxt.view(full[nxt.key].to(w.device) & (w != 0))
        out[layer.name] = ~live.any(dim=2).any(dim=0).cpu()
    return out


def find_dead_units(
    model: nn.Module, masks: Mapping[str, Tensor] | None = None, x: Tensor | None = None
) -> dict[str, Tensor]:
    """Layer name -> bool tensor (one entry per unit), True where the unit is dead.

    Example:
        >>> dead = find_dead_units(model, masks)  # doctest: +SKIP
        >>> {k: int(v.sum()) for k, v in dead.items()}  # doctest: +SKIP
        {'fc1': 3, 'fc2': 0, 'out': 0}
    """
    return analyse(model, masks, x).dead


def effective_connections(
    model: nn.Module, masks: Mapping[str, Tensor] | None = None, x: Tensor | None = None
) -> int:
    """Number of live weights whose source and target units both survive dead-unit removal.

    Example:
        >>> effective_connections(model, prune(model, sparsity=0.9))  # doctest: +SKIP
        2591
    """
    return analyse(model, masks, x).effective_connections()


@torch.no_grad()
def remove_dead_units(
    model: nn.Module, masks: Mapping[str, Tensor] | None = None, x: Tensor | None = None
) -> Masks:
    """Remove dead units in place: fold their constants into biases, zero their weights.

    Returns:
        The shrunken masks (True = effective connection), already applied to ``model``.
    """
    s = analyse(model, masks, x)
    mods = dict(model.named_children())
    for name, b in s.biases.items():
        if b is not None:
            mods[name].bias.copy_(b)
    apply_masks(model, s.masks)
    return s.masks


def remove_dead_units_if_chain(model: nn.Module, masks: Mapping[str, Tensor]) -> Masks:
    """:func:`remove_dead_units` when ``model`` is a chain this module can analyse.

    Any other model (a custom ``forward``) only gets ``masks`` applied and returned: its
    dead units cannot be found safely without knowing how its layers connect.
    """
    try:
        parse_chain(model)
    except PruneError:
        apply_masks(model, masks)
        return dict(masks)
    return remove_dead_units(model, masks)
