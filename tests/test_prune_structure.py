"""Dead units, effective connections, compaction and MACs."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from leanbits.errors import PruneError
from leanbits.models import Plan, build
from leanbits.prune import (
    analyse,
    apply_masks,
    compact,
    compact_sequential,
    effective_connections,
    find_dead_units,
    macs,
    prune,
    remove_dead_units,
    unread_units,
)

MLP = Plan("mlp", (1, 8, 8), (), (16, 12), 10)
LENET = Plan("lenet5", (1, 28, 28), (3, 4), (10,), 10)
CONV = Plan("convnet", (1, 8, 8), (4, 4), (8,), 10)


def seeded(plan: Plan, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    model = build(plan)
    with torch.no_grad():
        for p in model.parameters():  # nonzero biases, so folding is really exercised
            p.add_(0.1 * torch.randn_like(p))
    return model


def masked_copy(model: nn.Module, masks) -> nn.Module:
    return apply_masks(copy.deepcopy(model), masks)


def weight_modules(model: nn.Module):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]


def nonzero_weights(model: nn.Module) -> int:
    return sum(int((m.weight != 0).sum()) for _, m in weight_modules(model))


def engineered_masks(model: nn.Module, plan: Plan) -> dict[str, torch.Tensor]:
    """Random pruning plus units with no inputs (nonzero bias) and units with no outputs."""
    masks = prune(model, sparsity=0.6)
    names = [n for n, _ in weight_modules(model)]
    first, second = names[0], names[1]
    with torch.no_grad():
        masks[f"{first}.weight"][0] = False  # unit 0 of the first layer: no inputs
        getattr(model, first).bias[0] = 0.7  # ... emits a nonzero constant
        masks[f"{first}.weight"][1] = False  # unit 1: no inputs and a zero constant
        getattr(model, first).bias[1] = -0.3 if plan.family != "lenet5" else 0.0
        # unit 2 of the first layer: nothing reads it
        w2 = masks[f"{second}.weight"]
        if w2.ndim == 2 and plan.conv:  # conv -> flatten -> linear
            per = w2.shape[1] // getattr(model, first).out_channels
            w2[:, 2 * per : 3 * per] = False
        else:
            w2[:, 2] = False
    return masks


@pytest.mark.parametrize("plan", [MLP, LENET, CONV], ids=["mlp", "lenet5", "convnet"])
def test_compact_model_computes_the_masked_function(plan):
    model = seeded(plan)
    masks = engineered_masks(model, plan)
    small, small_plan = compact(model, plan, masks)
    x = torch.randn(16, *plan.in_shape)
    with torch.no_grad():
        want = masked_copy(model, masks)(x)
        got = small(x)
    assert torch.allclose(got, want, atol=1e-5, rtol=0), float((got - want).abs().max())
    # physically smaller, rebuilt from the shrunken plan
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
    assert small_plan.family == plan.family and small_plan.out == plan.out
    names = [n for n, _ in build(small_plan).named_children()]
    assert [n for n, _ in small.named_children()] == names


@pytest.mark.parametrize("plan", [MLP, LENET, CONV], ids=["mlp", "lenet5", "convnet"])
def test_compact_weights_are_exactly_the_effective_connections(plan):
    model = seeded(plan, seed=1)
    masks = engineered_masks(model, plan)
    s = analyse(model, masks)
    small, small_plan = compact(model, plan, masks)
    # nonzero weights of the compact model == effective connections (a weight that is
    # kept but exactly zero is no connection on either side)
    n_eff = effective_connections(model, masks)
    assert nonzero_weights(small) == s.effective_connections() == n_eff
    # biases: one per surviving unit (at least one unit per layer), and the outputs
    live = s.live_units()
    widths = dict(zip([f"conv{i + 1}" for i in range(len(plan.conv))], small_plan.conv,
                      strict=True))
    widths.update(zip([f"fc{j + 1}" for j in range(len(plan.fc))], small_plan.fc, strict=True))
    for layer, w in widths.items():
        assert w == max(live[layer], 1)
    n_bias = sum(m.bias.numel() for _, m in weight_modules(small))
    assert n_bias == sum(widths.values()) + plan.out
    assert effective_connections(model, masks) < int(sum(m.sum() for m in masks.values()))


def test_dead_unit_rules_mlp():
    model = seeded(MLP)
    masks = engineered_masks(model, MLP)
    dead = find_dead_units(model, masks)
    assert dead["fc1"][:3].tolist() == [True, True, True]  # folded, zero const, unread
    assert not bool(dead["out"].any())  # outputs are never removed


def test_padding_keeps_a_nonzero_constant_channel_but_removes_a_zero_one():
    model = seeded(CONV)
    masks = {k: torch.ones_like(v, dtype=torch.bool) for k, v in model.state_dict().items()
             if k.endswith("weight")}
    with torch.no_grad():
        masks["conv1.weight"][0] = False
        model.conv1.bias[0] = 0.5  # relu(0.5) != 0, and conv2 pads with zeros: not foldable
        masks["conv1.weight"][1] = False
        model.conv1.bias[1] = -0.5  # relu(-0.5) == 0: removable
    dead = find_dead_units(model, masks)
    assert dead["conv1"].tolist() == [False, True, False, False]
    small, plan2 = compact(model, CONV, masks)
    assert plan2.conv == (3, 4)
    x = torch.randn(8, *CONV.in_shape)
    with torch.no_grad():
        assert torch.allclose(small(x), masked_copy(model, masks)(x), atol=1e-5, rtol=0)


def test_lenet_constant_channel_is_folded_without_padding():
    model = seeded(LENET)
    masks = {f"{n}.weight": torch.ones_like(m.weight, dtype=torch.bool)
             for n, m in weight_modules(model)}
    masks["conv1.weight"][2] = False
    with torch.no_grad():
        model.conv1.bias[2] = 1.3  # constant 1.3 through pool (no ReLU in LeNet-5 convs)
    assert find_dead_units(model, masks)["conv1"].tolist() == [False, False, True]
    small, plan2 = compact(model, LENET, masks)
    assert plan2.conv == (2, 4)
    x = torch.randn(4, *LENET.in_shape)
    with torch.no_grad():
        assert torch.allclose(small(x), masked_copy(model, masks)(x), atol=1e-5, rtol=0)


def test_removal_repeats_until_nothing_changes():
    model = seeded(MLP)
    masks = {f"{n}.weight": torch.ones_like(m.weight, dtype=torch.bool)
             for n, m in weight_modules(model)}
    masks["out.weight"][:, 0] = False  # fc2 unit 0 has no outputs ...
    masks["fc2.weight"][1:, 5] = False  # ... and is the only reader of fc1 unit 5
    dead = find_dead_units(model, masks)
    assert bool(dead["fc2"][0]) and bool(dead["fc1"][5])
    assert int(dead["fc1"].sum()) == 1 and int(dead["fc2"].sum()) == 1


def test_units_silent_on_data_are_removed_only_with_data():
    model = seeded(MLP)
    with torch.no_grad():
        model.fc1.bias[3] = -1e4  # this ReLU never fires on ordinary inputs
    x = torch.randn(64, *MLP.in_shape)
    assert not bool(find_dead_units(model)["fc1"][3])
    assert bool(find_dead_units(model, x=x)["fc1"][3])
    small, plan2 = compact(model, MLP, None, x)
    assert plan2.fc == (15, 12)
    with torch.no_grad():
        assert torch.allclose(small(x), model(x), atol=1e-5, rtol=0)


def test_a_fully_dead_layer_keeps_one_unit_and_the_function():
    model = seeded(MLP)
    masks = prune(model, sparsity=0.2)
    masks["fc2.weight"][:] = False  # fc2 emits only constants relu(b)
    small, plan2 = compact(model, MLP, masks)
    assert plan2.fc[1] == 1
    x = torch.randn(8, *MLP.in_shape)
    with torch.no_grad():
        want = masked_copy(model, masks)(x)
        assert torch.allclose(small(x), want, atol=1e-5, rtol=0)
    assert nonzero_weights(small) == effective_connections(model, masks)


def test_remove_dead_units_in_place_keeps_the_function():
    model = seeded(CONV)
    masks = engineered_masks(model, CONV)
    x = torch.randn(8, *CONV.in_shape)
    dead = analyse(model, masks).dead
    assert sum(int(d.sum()) for d in dead.values()) > 0
    with torch.no_grad():
        want = masked_copy(model, masks)(x)
        new = remove_dead_units(model, masks)
        assert torch.allclose(model(x), want, atol=1e-5, rtol=0)
    for k, m in new.items():
        assert not bool((m & ~masks[k]).any())  # only shrinks
    # nothing reads a dead unit, so its bias is zero (a sparse non-weight in a file)
    layers = dict(model.named_children())
    for name, d in dead.items():
        if bool(d.any()):
            assert bool((layers[name].bias[d] == 0).all()), name
    # once removed, the dead units are exactly those no live weight reads
    before = copy.deepcopy(model.state_dict())
    unread = unread_units(model, new)
    assert {k: v.tolist() for k, v in unread.items()} == {k: v.tolist() for k, v in dead.items()}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # read-only


def test_generic_sequential_with_batchnorm():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.1),
                        nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 3))
    with torch.no_grad():
        net[1].running_mean.normal_()
        net[1].running_var.uniform_(0.5, 2.0)
        net[1].weight.normal_()
        net[1].bias.normal_()
    net.eval()
    masks = {"0.weight": torch.ones(8, 6, dtype=torch.bool),
             "4.weight": torch.ones(5, 8, dtype=torch.bool)}
    masks["0.weight"][2] = False  # constant BN(b) after ReLU, folded into layer 4
    masks["4.weight"][:, 6] = False  # unit 6 unread
    small, kept = compact_sequential(net, masks)
    assert kept["0"].tolist() == [0, 1, 3, 4, 5, 7]
    assert small[1].num_features == 6
    x = torch.randn(10, 6)
    with torch.no_grad():
        assert torch.allclose(small(x), masked_copy(net, masks)(x), atol=1e-5, rtol=0)


def test_unsupported_layers_are_named():
    net = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    with pytest.raises(PruneError, match="'1' \\(Tanh\\)"):
        compact_sequential(net)
    with pytest.raises(PruneError, match="nn.Sequential"):
        effective_connections(nn.Linear(3, 2))
    grouped = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(PruneError, match="groups=2"):
        find_dead_units(grouped)


def test_macs_closed_form_for_lenet5():
    model = seeded(LENET)
    # conv1: 24x24 positions x 3 out x 1 in x 25; conv2 on 12x12 -> 8x8 x 4 x 3 x 25;
    # fc1: 4*4*4=64 -> 10; out: 10 -> 10
    dense = 576 * 75 + 64 * 300 + 640 + 100
    m = macs(model, LENET.in_shape)
    assert m["dense"] == dense == m["sparse"]
    assert m["layers"]["conv2"]["positions"] == 64
    masks = prune(model, sparsity=0.7)
    ms = macs(model, LENET.in_shape, masks)
    expect = sum(m["layers"][k]["positions"] * int(masks[f"{k}.weight"].sum())
                 for k in m["layers"])
    assert ms["sparse"] == expect and ms["dense"] == dense
