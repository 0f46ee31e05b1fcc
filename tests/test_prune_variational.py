"""Sparse variational dropout: the published KL approximation, thresholds, round trips."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from leanbits.errors import PruneError
from leanbits.loop import FitState
from leanbits.models import Plan, build
from leanbits.prune.magnitude import LayerEmptiedError
from leanbits.prune.variational import (
    Conv2dSVD,
    LinearSVD,
    SparseVD,
    from_variational,
    kl_approx,
    kl_weight,
    log_alpha,
    neg_kl,
    rank_masks,
    threshold_sparsity,
    to_variational,
    total_kl,
    variational_layers,
)

LENET = Plan("lenet5", (1, 28, 28), (3, 4), (10,), 10)


def published_neg_kl(la: float) -> float:
    """Molchanov et al. (2017), eq. 14, computed with the math module only."""
    k1, k2, k3 = 0.63576, 1.87320, 1.48695
    return k1 / (1.0 + math.exp(-(k2 + k3 * la))) - 0.5 * math.log1p(math.exp(-la)) - k1


@pytest.mark.parametrize("la", [-8.0, -3.5, -1.0, 0.0, 0.7, 2.0, 3.0, 5.5, 8.0])
def test_kl_matches_the_published_formula(la):
    got = float(neg_kl(torch.tensor(la, dtype=torch.float64)))
    assert got == pytest.approx(published_neg_kl(la), rel=1e-12, abs=1e-12)


def test_kl_is_positive_and_falls_with_alpha():
    la = torch.linspace(-8, 8, 33, dtype=torch.float64)
    per = -neg_kl(la)
    assert bool((per > 0).all())
    assert bool((per[1:] < per[:-1]).all())
    assert float(kl_approx(la)) == pytest.approx(float(per.sum()))


def test_log_alpha_is_clipped():
    theta = torch.tensor([1.0, 0.1, 0.0, 2.0])
    ls2 = torch.tensor([0.0, -20.0, 0.0, math.log(4.0) + 1.5])
    got = log_alpha(theta, ls2, 8.0)
    assert got.tolist() == pytest.approx([0.0, -8.0, 8.0, 1.5], abs=1e-5)


def _set_log_alpha(layer: LinearSVD | Conv2dSVD, la: torch.Tensor) -> None:
    with torch.no_grad():
        layer.log_sigma2.copy_(la + torch.log(layer.weight ** 2))


def test_masks_come_from_the_threshold_and_convert_back():
    torch.manual_seed(0)
    model = build(LENET)
    vd = to_variational(model, threshold=3.0)
    g = torch.Generator().manual_seed(1)
    wanted = {}
    for name, layer in variational_layers(vd):
        la = torch.empty_like(layer.weight).uniform_(-6, 6, generator=g)
        _set_log_alpha(layer, la)
        wanted[f"{name}.weight"] = la < 3.0
    plain, masks = from_variational(vd)
    assert set(masks) == {f"{n}.weight" for n, _ in variational_layers(vd)}
    for k, m in masks.items():
        assert torch.equal(m, wanted[k])
    # an ordinary model of the original layout: same keys, weights theta * mask
    assert set(plain.state_dict()) == set(model.state_dict())
    assert not any(isinstance(m, LinearSVD | Conv2dSVD) for m in plain.modules())
    for k, m in masks.items():
        theta = vd.state_dict()[k]
        assert torch.equal(plain.state_dict()[k], theta * m)
    x = torch.randn(5, 1, 28, 28)
    vd.eval()
    plain.eval()
    assert torch.allclose(vd(x), plain(x), atol=1e-6)  # eval mode computes with the mask


def test_to_variational_copies_weights_and_respects_prior_masks():
    torch.manual_seed(0)
    model = build(LENET)
    old = {"fc1.weight": torch.rand_like(model.fc1.weight) > 0.3}
    vd = to_variational(model, old, exclude=["out"])
    assert type(vd.out) is nn.Linear
    assert torch.equal(vd.conv1.weight, model.conv1.weight)
    assert torch.equal(vd.fc1.weight, model.fc1.weight * old["fc1.weight"])
    assert float(vd.conv1.log_sigma2.detach().max()) == -10.0
    # pruned entries are noise-free zeros, excluded from the KL and never kept
    assert bool(vd.fc1.keep_mask()[~old["fc1.weight"]].logical_not().all())
    _, masks = from_variational(vd)
    assert not bool((masks["fc1.weight"] & ~old["fc1.weight"]).any())
    with pytest.raises(PruneError, match="clip"):
        to_variational(model, clip=0.0)
    with pytest.raises(PruneError, match="threshold"):
        to_variational(model, threshold=9.0, clip=8.0)


def test_local_reparameterisation_moments():
    """Training outputs have mean x theta + b and variance x^2 sigma^2 (per output)."""
    torch.manual_seed(0)
    layer = LinearSVD(6, 3, init_log_sigma2=-2.0)
    x = torch.randn(1, 6).expand(20000, 6)
    layer.train()
    with torch.no_grad():
        out = layer(x)
    with torch.no_grad():
        mean = x[0] @ layer.weight.T + layer.bias
        var = (x[0] ** 2) @ torch.exp(layer.log_sigma2).T
    assert torch.allclose(out.mean(0), mean, atol=4 * float(var.max().sqrt()) / 141)
    assert torch.allclose(out.var(0), var, rtol=0.05)

    conv = Conv2dSVD(2, 3, 3, padding=1, init_log_sigma2=-2.0)
    xc = torch.randn(1, 2, 5, 5).expand(4000, 2, 5, 5)
    with torch.no_grad():
        outc = conv(xc)
        var_c = nn.functional.conv2d(xc[:1] ** 2, torch.exp(conv.log_sigma2), padding=1)[0]
    assert torch.allclose(outc.var(0), var_c, rtol=0.15)


def test_warmup_and_kl_term():
    assert [kl_weight(s, 10) for s in (0, 5, 10, 20)] == [0.0, 0.5, 1.0, 1.0]
    assert kl_weight(3, 0) == 1.0
    torch.manual_seed(0)
    vd = to_variational(build(LENET))
    hook = SparseVD(vd, n_train=100, warmup_steps=2)
    state = FitState(model=vd, optimizer=torch.optim.SGD(vd.parameters(), lr=0.1), epochs=1)
    assert hook.extra_loss(state) is None  # beta = 0 at step 0
    state.step = 1
    with torch.no_grad():
        assert float(hook.extra_loss(state)) == pytest.approx(0.5 * float(total_kl(vd)) / 100)
    with pytest.raises(PruneError, match="variational"):
        SparseVD(build(LENET), n_train=10)


def test_rank_masks_keep_the_lowest_log_alpha_over_all_layers():
    torch.manual_seed(0)
    model = build(LENET)
    old = {"fc1.weight": torch.rand_like(model.fc1.weight) > 0.3}
    vd = to_variational(model, old)
    g = torch.Generator().manual_seed(2)
    for _, layer in variational_layers(vd):
        _set_log_alpha(layer, torch.empty_like(layer.weight).uniform_(-6, 6, generator=g))
    layers = variational_layers(vd)
    alive = torch.cat([m.prior_mask.flatten() for _, m in layers])
    scores = torch.cat([m.log_alpha().detach().flatten() for _, m in layers])
    for sparsity in (0.0, 0.5, 0.9):
        masks = rank_masks(vd, sparsity)
        flat = torch.cat([masks[f"{n}.weight"].flatten() for n, _ in layers])
        assert int(flat.sum()) == round((1 - sparsity) * int(alive.sum()))
        assert not bool((flat & ~alive).any())  # pruned before: never kept
        # every kept weight is at most as noisy as every live weight left out
        left_out = alive & ~flat
        if bool(left_out.any()):
            assert float(scores[flat].max()) <= float(scores[left_out].min())
    # the ranked masks end as an ordinary model, like the threshold's
    masks = rank_masks(vd, 0.5)
    plain, got = from_variational(vd, masks)
    for k, m in got.items():
        assert torch.equal(m, masks[k])
        assert torch.equal(plain.state_dict()[k], vd.state_dict()[k] * m)
    with pytest.raises(PruneError, match="no mask given"):
        from_variational(vd, {"conv1.weight": masks["conv1.weight"]})
    for bad in (-0.1, 1.0):
        with pytest.raises(PruneError, match="sparsity"):
            rank_masks(vd, bad)
    # the threshold's sparsity is the ranked level that keeps exactly the threshold's weights
    level = threshold_sparsity(vd)
    kept = sum(int(m.keep_mask().sum()) for _, m in layers)
    assert level == pytest.approx(1 - kept / int(alive.sum()))
    for n, m in layers:
        assert torch.equal(rank_masks(vd, level)[f"{n}.weight"], m.keep_mask())
    with pytest.raises(PruneError, match="variational"):
        threshold_sparsity(build(LENET))
    # a layer whose weights are all noisier than the rest empties first, and is refused
    _set_log_alpha(vd.out, torch.full_like(vd.out.weight, 7.5))
    with pytest.raises(LayerEmptiedError, match="out.weight"):
        rank_masks(vd, 0.8)
