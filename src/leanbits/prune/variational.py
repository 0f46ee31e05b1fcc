"""Sparse variational dropout (Molchanov, Ashukha & Vetrov 2017) for Linear and Conv2d.

Each weight gets a Gaussian posterior ``N(theta, sigma^2)`` in the *additive*
parameterisation: ``theta`` is the layer's ``.weight`` and ``log sigma^2`` a second
parameter of the same shape, so the dropout rate ``alpha = sigma^2 / theta^2`` can grow
without bound (``log alpha = log sigma^2 - log theta^2``, clipped to ``[-clip, clip]``).
In training, the *local reparameterisation trick* samples pre-activations rather than
weights: ``mean = x theta^T + b``, ``var = x^2 sigma^2^T``, ``out = mean + sqrt(var) eps``.
The prior is log-uniform and the KL divergence is the paper's approximation

    -KL ~ k1 sigmoid(k2 + k3 log alpha) - 0.5 log1p(exp(-log alpha)) - k1

with ``k1, k2, k3 = 0.63576, 1.87320, 1.48695``. A weight whose ``log alpha`` reaches the
threshold (3 by default: alpha ~ 20, the weight is almost pure noise) is pruned; in eval
mode a layer already computes with ``theta * (log alpha < threshold)``.

:func:`to_variational` swaps a model's Linear / Conv2d layers for the variational ones,
:func:`from_variational` swaps them back and returns ordinary weights ``theta * mask`` plus
the masks, so the result is an ordinary snapshot. :class:`SparseVD` is the training hook
(the KL term) and :func:`sparse_vd` the method.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leanbits.errors import PruneError
from leanbits.loop import (
    EpochCheckpoint,
    FitState,
    Hook,
    epoch_batches,
    fit,
    make_optimizer,
)
from leanbits.prune.baselines import MethodResult
from leanbits.prune.magnitude import LayerEmptiedError
from leanbits.prune.masks import (
    MaskHook,
    Masks,
    apply_masks,
    check_examples,
    combine,
    model_masks,
    resolve_layers,
    weight_key,
)
from leanbits.prune.structure import remove_dead_units_if_chain
from leanbits.settings.prune import PruneConfig

#: constants of the published KL approximation
K1, K2, K3 = 0.63576, 1.87320, 1.48695
#: keeps ``log theta^2`` finite at theta = 0
_EPS = 1e-8


def neg_kl(log_alpha: Tensor) -> Tensor:
    """The published approximation of ``-KL(q(w) || p(w))`` per weight (log-uniform prior).

    Example:
        >>> round(float(neg_kl(torch.tensor(0.0))), 4)
        -0.4312
    """
    return K1 * torch.sigmoid(K2 + K3 * log_alpha) - 0.5 * F.softplus(-log_alpha) - K1


def kl_approx(log_alpha: Tensor) -> Tensor:
    """Sum over all entries of the approximate KL divergence (>= 0, falls as alpha grows)."""
    return -neg_kl(log_alpha).sum()


def log_alpha(theta: Tensor, log_sigma2: Tensor, clip: float) -> Tensor:
    """``clamp(log sigma^2 - log theta^2, -clip, clip)``.

    Example:
        >>> log_alpha(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]), 8.0).tolist()
        [0.0, 8.0]
    """
    return torch.clamp(log_sigma2 - torch.log(theta * theta + _EPS), -clip, clip)


def threshold_mask(log_alpha: Tensor, threshold: float) -> Tensor:
    """Keep-mask: True where ``log alpha < threshold``."""
    return log_alpha < threshold


class _Variational:
    """What the variational Linear and Conv2d share: ``log sigma^2``, ``log alpha``, KL."""

    weight: nn.Parameter
    log_sigma2: nn.Parameter
    prior_mask: Tensor
    threshold: float
    clip: float

    def _init_variational(self, threshold: float, clip: float, init_log_sigma2: float,
                          prior_mask: Tensor | None) -> None:
        if not 0 < clip:
            raise PruneError(f"the log alpha clip must be > 0, got {clip}")
        if not -clip < threshold < clip:
            raise PruneError(
                f"the log alpha threshold {threshold} must lie inside the clip (-{clip}, {clip})"
            )
        self.threshold, self.clip = float(threshold), float(clip)
        self.log_sigma2 = nn.Parameter(torch.full_like(self.weight, float(init_log_sigma2)))
        keep = (torch.ones_like(self.weight, dtype=torch.bool) if prior_mask is None
                else prior_mask.to(device=self.weight.device, dtype=torch.bool))
        self.register_buffer("prior_mask", keep)

    def log_alpha(self) -> Tensor:
        """Clipped ``log alpha`` per weight; entries pruned before training read ``clip``."""
        la = log_alpha(self.weight, self.log_sigma2, self.clip)
        return torch.where(self.prior_mask, la, torch.full_like(la, self.clip))

    def kl(self) -> Tensor:
        """Approximate KL of the weights still in play (pruned entries carry no posterior)."""
        per = neg_kl(log_alpha(self.weight, self.log_sigma2, self.clip))
        return -(per * self.prior_mask.to(per.dtype)).sum()

    def keep_mask(self) -> Tensor:
        """True where the weight survives: in the prior mask and ``log alpha < threshold``."""
        return threshold_mask(self.log_alpha(), self.threshold) & self.prior_mask

    def _moments(self) -> tuple[Tensor, Tensor]:
        keep = self.prior_mask.to(self.weight.dtype)
        return self.weight * keep, torch.exp(self.log_sigma2) * keep

    def _eval_weight(self) -> Tensor:
        return self.weight * self.keep_mask().to(self.weight.dtype)


class LinearSVD(_Variational, nn.Linear):
    """``nn.Linear`` with a sparse variational dropout posterior on its weight.

    Args:
        in_features, out_features, bias: as ``nn.Linear``.
        threshold: prune where ``log alpha >= threshold``.
        clip: ``|log alpha|`` bound.
        init_log_sigma2: starting ``log sigma^2`` of every weight.
        prior_mask: weights already pruned (False) stay exactly zero and noise-free.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 threshold: float = 3.0, clip: float = 8.0, init_log_sigma2: float = -10.0,
                 prior_mask: Tensor | None = None, device=None, dtype=None) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias, device=device, dtype=dtype)
        self._init_variational(threshold, clip, init_log_sigma2, prior_mask)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return F.linear(x, self._eval_weight(), self.bias)
        theta, sigma2 = self._moments()
        mean = F.linear(x, theta, self.bias)
        var = F.linear(x * x, sigma2)
        return mean + torch.sqrt(var + _EPS) * torch.randn_like(mean)


class Conv2dSVD(_Variational, nn.Conv2d):
    """``nn.Conv2d`` with a sparse variational dropout posterior on its weight.

    Takes the arguments of ``nn.Conv2d`` plus ``threshold``, ``clip``, ``init_log_sigma2``
    and ``prior_mask`` as :class:`LinearSVD`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 *, threshold: float = 3.0, clip: float = 8.0, init_log_sigma2: float = -10.0,
                 prior_mask: Tensor | None = None, device=None, dtype=None) -> None:
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride, padding,
                           dilation, groups, bias, padding_mode, device=device, dtype=dtype)
        self._init_variational(threshold, clip, init_log_sigma2, prior_mask)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return self._conv_forward(x, self._eval_weight(), self.bias)
        theta, sigma2 = self._moments()
        mean = self._conv_forward(x, theta, self.bias)
        var = self._conv_forward(x * x, sigma2, None)
        return mean + torch.sqrt(var + _EPS) * torch.randn_like(mean)


VARIATIONAL = (LinearSVD, Conv2dSVD)


def _variational_twin(m: nn.Module, threshold: float, clip: float, init_log_sigma2: float,
                      prior_mask: Tensor | None) -> nn.Module:
    kw = {"threshold": threshold, "clip": clip, "init_log_sigma2": init_log_sigma2,
          "prior_mask": prior_mask, "device": m.weight.device, "dtype": m.weight.dtype}
    if type(m) is nn.Linear:
        new = LinearSVD(m.in_features, m.out_features, m.bias is not None, **kw)
    else:
        new = Conv2dSVD(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                        m.dilation, m.groups, m.bias is not None, m.padding_mode, **kw)
    with torch.no_grad():
        keep = new.prior_mask.to(m.weight.dtype)
        new.weight.copy_(m.weight * keep)
        if m.bias is not None:
            new.bias.copy_(m.bias)
    new.train(m.training)
    return new


def _plain_twin(m: _Variational, keep: Tensor | None = None) -> tuple[nn.Module, Tensor]:
    keep = (m.keep_mask() if keep is None else keep.to(torch.bool) & m.prior_mask).detach()
    if isinstance(m, LinearSVD):
        new = nn.Linear(m.in_features, m.out_features, m.bias is not None,
                        device=m.weight.device, dtype=m.weight.dtype)
    else:
        new = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                        m.dilation, m.groups, m.bias is not None, m.padding_mode,
                        device=m.weight.device, dtype=m.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(m.weight * keep.to(m.weight.dtype))
        if m.bias is not None:
            new.bias.copy_(m.bias)
    new.train(m.training)
    return new, keep


def _replace(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Put ``new`` at ``name`` in ``model``; a bare layer (name ``""``) is returned instead."""
    if not name:
        return new
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)
    return model


def variational_layers(model: nn.Module) -> list[tuple[str, _Variational]]:
    """``(name, module)`` of every variational layer of ``model``, in registration order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, VARIATIONAL)]


def to_variational(
    model: nn.Module,
    masks: Mapping[str, Tensor] | None = None,
    *,
    threshold: float = 3.0,
    clip: float = 8.0,
    init_log_sigma2: float = -10.0,
    exclude: Iterable[str] = (),
) -> nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` / ``nn.Conv2d`` layers are variational.

    Weights become the posterior means ``theta`` (masked weights are zero and stay so);
    biases and every other module are copied as they are. Layer names do not change, so
    masks keyed ``"fc1.weight"`` still address the same weights.

    Args:
        model: any module; only layers of exactly type Linear / Conv2d are swapped.
        masks: masks the model already has (pruned weights stay pruned).
        threshold: ``log alpha`` from which a weight is pruned.
        clip: ``|log alpha|`` bound.
        init_log_sigma2: starting ``log sigma^2`` (the paper: -10, i.e. almost no noise).
        exclude: layers left as they are (deterministic, never pruned).

    Returns:
        The variational copy (``model`` is not modified).

    Raises:
        PruneError: bad masks, an unknown layer in ``exclude``, ``clip <= 0``, or no layer
            left to make variational.

    Example:
        >>> vd = to_variational(model)  # doctest: +SKIP
        >>> plain, masks = from_variational(vd)  # doctest: +SKIP
    """
    if not clip > 0:
        raise PruneError(f"the log alpha clip must be > 0, got {clip}")
    full = model_masks(model, masks)
    skipped = set(resolve_layers(model, exclude))
    out = copy.deepcopy(model)
    swapped = 0
    for name, m in list(out.named_modules()):
        key = weight_key(name)
        if type(m) not in (nn.Linear, nn.Conv2d) or key in skipped:
            continue
        twin = _variational_twin(m, threshold, clip, init_log_sigma2, full[key])
        out = _replace(out, name, twin)
        swapped += 1
    if not swapped:
        raise PruneError("no Linear or Conv2d layer to make variational (all excluded?)")
    return out


def from_variational(model: nn.Module,
                     keep: Mapping[str, Tensor] | None = None) -> tuple[nn.Module, Masks]:
    """Swap every variational layer back for an ordinary one with weight ``theta * mask``.

    Args:
        model: a model from :func:`to_variational` (not modified).
        keep: the masks to end with, one per variational layer's weight (e.g. from
            :func:`rank_masks`); None: the threshold's (``log alpha < threshold``).

    Returns:
        ``(plain model, masks)``: a new model (``model`` is not modified) with ordinary
        ``nn.Linear`` / ``nn.Conv2d`` layers, and a mask for every variational layer's
        weight (``keep``'s, or True where ``log alpha < threshold``; never a weight
        pruned before).
    """
    out = copy.deepcopy(model)
    masks: Masks = {}
    for name, m in list(out.named_modules()):
        if isinstance(m, VARIATIONAL):
            key = weight_key(name)
            if keep is not None and key not in keep:
                raise PruneError(f"no mask given for the variational layer {key}")
            plain, keep_m = _plain_twin(m, None if keep is None else keep[key])
            out = _replace(out, name, plain)
            masks[key] = keep_m
    return out, masks


def rank_masks(model: nn.Module, sparsity: float) -> Masks:
    """Masks that keep the ``1 - sparsity`` fraction of the variational layers' weights
    with the lowest ``log alpha`` (the least noisy), ranked over all layers at once.

    This turns one variational training into any sparsity: the threshold gives one
    level, the ranking every other. Weights pruned before training never come back (they
    rank last), ties are broken by position, and the count kept is
    ``round((1 - sparsity) * weights still in play)``.

    Args:
        model: a model from :func:`to_variational`, usually trained.
        sparsity: fraction of the weights still in play to prune, in ``[0, 1)``.

    Returns:
        ``{"<layer>.weight": bool tensor}`` for every variational layer.

    Raises:
        PruneError: ``sparsity`` outside ``[0, 1)`` or no variational layer.
        LayerEmptiedError: a layer would keep no weight (too sparse for this network).

    Example:
        >>> masks = rank_masks(vd, 0.97)  # doctest: +SKIP
    """
    if not 0.0 <= sparsity < 1.0:
        raise PruneError(f"sparsity must be in [0, 1), got {sparsity}")
    layers = variational_layers(model)
    if not layers:
        raise PruneError("the model has no variational layer (use to_variational first)")
    with torch.no_grad():
        scores = torch.cat([m.log_alpha().detach().flatten() for _, m in layers])
        alive = torch.cat([m.prior_mask.flatten() for _, m in layers])
        keep_n = round((1.0 - sparsity) * int(alive.sum()))
        # pruned-before weights rank after every live one; a stable sort breaks ties by
        # position, so the masks do not depend on the sort's implementation
        scores = torch.where(alive, scores, torch.full_like(scores, math.inf))
        order = torch.sort(scores, stable=True).indices
        flat = torch.zeros_like(alive)
        flat[order[:keep_n]] = True
        flat &= alive
    masks: Masks = {}
    start = 0
    for name, m in layers:
        n = m.weight.numel()
        key = weight_key(name)
        masks[key] = flat[start:start + n].view_as(m.weight).clone()
        start += n
        if not bool(masks[key].any()):
            raise LayerEmptiedError(f"sparsity {sparsity:g} leaves {key} without a weight")
    return masks


def threshold_sparsity(model: nn.Module) -> float:
    """Fraction of the weights still in play that the ``log alpha`` threshold prunes.

    At this sparsity :func:`rank_masks` keeps exactly the threshold's weights, so it is the
    threshold's own level on the ranked scale; ``compress --vd-search`` bisects from it
    upward (below it, weights trained as noise would come back).

    Raises:
        PruneError: no variational layer, or no weight still in play.

    Example:
        >>> s = threshold_sparsity(vd)  # doctest: +SKIP
    """
    layers = variational_layers(model)
    if not layers:
        raise PruneError("the model has no variational layer (use to_variational first)")
    with torch.no_grad():
        alive = sum(int(m.prior_mask.sum()) for _, m in layers)
        kept = sum(int(m.keep_mask().sum()) for _, m in layers)
    if alive == 0:
        raise PruneError("the variational layers have no weight left to prune")
    return 1.0 - kept / alive


def total_kl(model: nn.Module) -> Tensor:
    """Sum of the approximate KL over every variational layer of ``model``."""
    layers = variational_layers(model)
    if not layers:
        raise PruneError("the model has no variational layer (use to_variational first)")
    return torch.stack([m.kl() for _, m in layers]).sum()


def kept_fraction(model: nn.Module) -> float:
    """Fraction of the variational layers' weights with ``log alpha`` under the threshold."""
    kept = total = 0
    with torch.no_grad():
        for _, m in variational_layers(model):
            kept += int(m.keep_mask().sum())
            total += m.weight.numel()
    return kept / total if total else 1.0


def kl_weight(step: int, warmup_steps: int) -> float:
    """KL warm-up: the KL term's weight rises linearly from 0 to 1 over ``warmup_steps``.

    Example:
        >>> [kl_weight(s, 4) for s in (0, 2, 4, 9)]
        [0.0, 0.5, 1.0, 1.0]
    """
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, max(0, step) / warmup_steps)


class SparseVD(Hook):
    """Training hook: adds ``beta * KL / N`` to the data loss (the per-example ELBO).

    The data loss of a leanbits head is a mean negative log-likelihood per example, so
    dividing the KL by the number of training examples ``N`` gives the negative ELBO per
    example. ``beta`` warms up from 0 to 1 over ``warmup_steps`` optimizer steps.

    Args:
        model: a model from :func:`to_variational`.
        n_train: training examples (``N``).
        warmup_steps: steps of KL warm-up.
    """

    def __init__(self, model: nn.Module, n_train: int, warmup_steps: int = 0) -> None:
        if n_train < 1:
            raise PruneError(f"sparse VD needs at least one training example, got {n_train}")
        if not variational_layers(model):
            raise PruneError("the model has no variational layer (use to_variational first)")
        self.model, self.n_train, self.warmup_steps = model, n_train, warmup_steps

    def extra_loss(self, state: FitState) -> Tensor | None:
        beta = kl_weight(state.step, self.warmup_steps)
        if beta == 0.0:
            return None
        return beta * total_kl(self.model) / self.n_train

    def after_epoch(self, state: FitState) -> dict[str, float]:
        with torch.no_grad():
            kl = float(total_kl(self.model))
        return {"kl": kl, "kl_weight": kl_weight(state.step, self.warmup_steps),
                "kept": kept_fraction(self.model)}


def sparse_vd(
    model: nn.Module,
    data: tuple[Tensor, Tensor],
    loss: Callable[[Tensor, Tensor], Tensor],
    cfg: PruneConfig,
    masks: Mapping[str, Tensor] | None = None,
) -> MethodResult:
    """Sparse variational dropout on a copy of ``model``, ended as an ordinary pruned model.

    The Linear / Conv2d layers (but ``cfg.exclude``) become variational with
    ``theta`` = the snapshot's weights, then every parameter trains for ``cfg.vd_epochs``
    with Adam (``cfg.vd_lr``, decayed linearly to 0) on data loss + ``beta KL / N`` (KL
    warm-up over ``cfg.vd_warmup_epochs``). Weights with ``log alpha >= cfg.vd_threshold``
    are pruned; the rest keep ``theta``. Optionally ``cfg.vd_finetune_epochs`` of masked
    fine-tuning follow. The sparsity is the method's outcome: ``cfg.sparsity`` is unused.

    Args:
        model: a trained snapshot's model (the paper starts LeNet-5 from one); not modified.
        data: ``(x, y)`` training tensors.
        loss: ``loss(output, y) -> scalar`` (a mean negative log-likelihood per example,
            as every leanbits head's loss is).
        cfg: the prune settings (the ``vd_*`` fields, ``exclude``, ``batch_size``, ``seed``,
            ``finetune_lr``, ``optimizer``, ``remove_dead``).
        masks: masks the model already has; the result is a subset of them.

    Returns:
        A :class:`MethodResult` with an ordinary model (``nn.Linear`` / ``nn.Conv2d``
        layers, weights ``theta * mask``), its masks and a record with ``backprop_epochs``,
        ``kl`` and the epochs' history.

    Raises:
        PruneError: no training data, bad threshold / clip, no layer to make variational.
        TrainingError: the loss became NaN or infinite.

    Example:
        >>> r = sparse_vd(snap.model, (x, y), snap.head.loss, PruneConfig(vd_epochs=20))
        ... # doctest: +SKIP
    """
    t0 = time.perf_counter()
    vd, record = train_variational(model, data, loss, cfg, masks)
    result = finish_variational(model, vd, data, loss, cfg, masks)
    record.update(result.record)
    record.update(backprop_epochs=cfg.vd_epochs + result.record["backprop_epochs"],
                  wall_time_s=time.perf_counter() - t0)
    return MethodResult(result.model, result.masks, record)


def new_variational(model: nn.Module, cfg: PruneConfig,
                    masks: Mapping[str, Tensor] | None = None) -> nn.Module:
    """The untrained variational copy of ``model`` that :func:`train_variational` trains
    (its shape, to load a stored training into)."""
    return to_variational(model, masks, threshold=cfg.vd_threshold, clip=cfg.vd_clip,
                          init_log_sigma2=cfg.vd_init_log_sigma2, exclude=cfg.exclude)


class _EachEpoch(Hook):
    """Calls ``report(epoch, epochs)`` after each epoch."""

    def __init__(self, report: Callable[[int, int], None]) -> None:
        self.report = report

    def after_epoch(self, state: FitState) -> None:
        self.report(state.epoch, state.epochs)


def train_variational(
    model: nn.Module,
    data: tuple[Tensor, Tensor],
    loss: Callable[[Tensor, Tensor], Tensor],
    cfg: PruneConfig,
    masks: Mapping[str, Tensor] | None = None,
    checkpoint: EpochCheckpoint | None = None,
    on_epoch: Callable[[int, int], None] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """The variational training of :func:`sparse_vd`, without turning it into masks.

    ``checkpoint`` saves it after epochs and resumes it from there: it is the long part of
    sparse VD, and an interrupted one need not start again. ``on_epoch(epoch, epochs)`` is
    called after each epoch it runs (e.g. to show progress).

    Returns:
        ``(variational model, record)``: the trained copy of ``model`` and a record with
        ``method``, ``kl`` (final) and the epochs' ``history``.
    """
    x, y = check_examples(data)
    vd = new_variational(model, cfg, masks)
    per_epoch = math.ceil(x.shape[0] / cfg.batch_size)
    total = cfg.vd_epochs * per_epoch
    hook = SparseVD(vd, x.shape[0], round(cfg.vd_warmup_epochs * per_epoch))
    opt = torch.optim.Adam(vd.parameters(), lr=cfg.vd_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: max(0.0, 1.0 - t / max(total, 1)))
    hooks: list[Hook] = [hook] if on_epoch is None else [hook, _EachEpoch(on_epoch)]
    result = fit(vd, vd.parameters(), epoch_batches((x, y), cfg.batch_size, cfg.seed), loss, opt,
                 hooks, epochs=cfg.vd_epochs, scheduler=sched, seed=cfg.seed,
                 checkpoint=checkpoint)
    with torch.no_grad():
        kl = float(total_kl(vd))
    return vd, {"method": "sparse-vd", "kl": kl, "history": result.history}


def finish_variational(
    model: nn.Module,
    vd: nn.Module,
    data: tuple[Tensor, Tensor],
    loss: Callable[[Tensor, Tensor], Tensor],
    cfg: PruneConfig,
    masks: Mapping[str, Tensor] | None = None,
    keep: Mapping[str, Tensor] | None = None,
) -> MethodResult:
    """A trained variational model ended as an ordinary pruned one: the weights ``keep``
    (default: the threshold's; :func:`rank_masks` gives any sparsity) keep ``theta``, then
    ``cfg.vd_finetune_epochs`` of masked fine-tuning (``vd`` is not modified).

    Returns:
        A :class:`MethodResult` whose record has ``backprop_epochs`` (the fine-tuning's
        only) and ``finetune_history`` when it fine-tuned.
    """
    x, y = check_examples(data)
    net, vd_masks = from_variational(vd, keep)
    new_masks = combine(model_masks(model, masks), vd_masks)
    record: dict[str, Any] = {}
    if cfg.vd_finetune_epochs:
        opt = make_optimizer(cfg.optimizer, net.parameters(), cfg.finetune_lr)
        tuned = fit(net, net.parameters(), epoch_batches((x, y), cfg.batch_size, cfg.seed), loss,
                    opt, [MaskHook(new_masks)], epochs=cfg.vd_finetune_epochs, seed=cfg.seed)
        record["finetune_history"] = tuned.history
    apply_masks(net, new_masks)
    final = remove_dead_units_if_chain(net, new_masks) if cfg.remove_dead else new_masks
    record["backprop_epochs"] = cfg.vd_finetune_epochs
    return MethodResult(net, final, record)


__all__ = [
    "K1",
    "K2",
    "K3",
    "Conv2dSVD",
    "LinearSVD",
    "SparseVD",
    "finish_variational",
    "from_variational",
    "kept_fraction",
    "kl_approx",
    "kl_weight",
    "log_alpha",
    "neg_kl",
    "new_variational",
    "rank_masks",
    "threshold_sparsity",
    "sparse_vd",
    "threshold_mask",
    "to_variational",
    "total_kl",
    "train_variational",
    "variational_layers",
]
