"""Magnitude scoring and masks: exact fractions, ties, never reviving, errors."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.utils.prune as torch_prune
from hypothesis import given, settings
from hypothesis import strategies as st

from leanbits.errors import PruneError
from leanbits.models import Plan, build
from leanbits.prune import (
    apply_masks,
    geometric_schedule,
    global_magnitude,
    layer_magnitude,
    masked_fraction,
    prunable_weights,
    prune,
    std_masks,
    threshold_masks,
    unit_masks,
)

MLP = Plan("mlp", (1, 8, 8), (), (16, 12), 10)
LENET = Plan("lenet5", (1, 28, 28), (3, 4), (10,), 10)


def distinct_model(plan: Plan, seed: int = 0) -> torch.nn.Sequential:
    """A model whose weights all have distinct magnitudes (so ties cannot matter)."""
    torch.manual_seed(seed)
    model = build(plan)
    weights = prunable_weights(model)
    total = sum(w.numel() for w in weights.values())
    values = (torch.randperm(total).double() + 1.0) / total  # distinct, in (0, 1]
    signs = torch.where(torch.rand(total) < 0.5, -1.0, 1.0).double()
    start = 0
    with torch.no_grad():
        for w in weights.values():
            n = w.numel()
            w.copy_((values[start : start + n] * signs[start : start + n]).view(w.shape))
            start += n
    return model


def torch_masks(model: torch.nn.Module, amount: float, scope: str) -> dict[str, torch.Tensor]:
    ref = copy.deepcopy(model)
    layers = [(m, "weight") for m in ref.modules()
              if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)]
    if scope == "global":
        torch_prune.global_unstructured(layers, torch_prune.L1Unstructured, amount=amount)
    else:
        for m, name in layers:
            torch_prune.l1_unstructured(m, name, amount=amount)
    return {n.removesuffix("_mask"): b.to(torch.bool) for n, b in ref.named_buffers()
            if n.endswith("weight_mask")}


@pytest.mark.parametrize("plan", [MLP, LENET], ids=["mlp", "lenet5"])
@pytest.mark.parametrize("amount", [0.0, 0.3, 0.77, 0.95])
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_masks_equal_torch_prune_l1_unstructured(plan, amount, scope):
    model = distinct_model(plan)
    ours = prune(model, sparsity=amount, scope=scope)
    ref = torch_masks(model, amount, scope)
    assert set(ours) == set(ref)
    for k, m in ours.items():
        assert torch.equal(m, ref[k]), k


def test_prune_does_not_touch_the_model_and_apply_masks_zeroes_in_place():
    model = distinct_model(MLP)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    masks = prune(model, sparsity=0.6)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert apply_masks(model, masks) is model
    for k, m in masks.items():
        w = model.state_dict()[k]
        assert torch.all(w[~m] == 0) and torch.equal(w[m], before[k][m])


def test_ties_are_broken_by_position_and_fraction_is_exact():
    weights = {"a.weight": torch.ones(4, 5), "b.weight": torch.ones(3, 4)}  # 32 equal weights
    masks = global_magnitude(weights, 0.5)
    flat = torch.cat([m.flatten() for m in masks.values()])
    assert int((~flat).sum()) == 16
    # all equal: the first 16 positions (layer order, then row-major) go first
    assert torch.equal(flat, torch.arange(32) >= 16)
    assert torch.equal(global_magnitude(weights, 0.5)["a.weight"], masks["a.weight"])


def test_exact_zeros_go_before_any_nonzero_weight():
    w = torch.tensor([0.5, 0.0, -0.2, 0.0, 0.9, 0.0])
    keep = global_magnitude({"x.weight": w}, 0.5)["x.weight"]
    assert keep.tolist() == [True, False, True, False, True, False]


def test_repeated_pruning_never_revives_and_hits_each_target_exactly():
    torch.manual_seed(3)
    # few distinct values: many ties
    weights = {"a.weight": torch.randint(-2, 3, (20, 10)).float(),
               "b.weight": torch.randint(-2, 3, (10, 7)).float()}
    total = 270
    masks = None
    for s in (0.2, 0.5, 0.5, 0.8, 0.9):
        new = global_magnitude(weights, s, masks)
        assert int(sum((~m).sum() for m in new.values())) == round(s * total)
        if masks is not None:
            for k in new:
                assert not bool((new[k] & ~masks[k]).any()), "a pruned weight came back"
        masks = new
    # a lower target later removes nothing and revives nothing
    lower = global_magnitude(weights, 0.3, masks)
    assert all(torch.equal(lower[k], masks[k]) for k in masks)


@settings(max_examples=30, deadline=None)
@given(
    levels=st.lists(st.floats(0.0, 0.95), min_size=1, max_size=4),
    distinct=st.integers(1, 4),
    seed=st.integers(0, 1000),
    scope=st.sampled_from(["global", "layer"]),
)
def test_property_masks_only_shrink_and_count_is_exact(levels, distinct, seed, scope):
    g = torch.Generator().manual_seed(seed)
    weights = {"a.weight": torch.randint(0, distinct, (6, 9), generator=g).float() + 1,
               "b.weight": torch.randint(0, distinct, (5, 6), generator=g).float() + 1}
    fn = global_magnitude if scope == "global" else layer_magnitude
    masks = None
    for s in levels:
        try:
            new = fn(weights, s, masks)
        except PruneError:
            continue  # a whole layer would go; that is the documented refusal
        if masks is not None:
            for k in new:
                assert not bool((new[k] & ~masks[k]).any())
            if scope == "global":
                before = int(sum((~m).sum() for m in masks.values()))
                want = max(before, round(s * 84))
                assert int(sum((~m).sum() for m in new.values())) == want
        elif scope == "global":
            assert int(sum((~m).sum() for m in new.values())) == round(s * 84)
        else:
            for k, w in weights.items():
                assert int((~new[k]).sum()) == round(s * w.numel())
        assert torch.equal(fn(weights, s, masks)["a.weight"], new["a.weight"])  # deterministic
        masks = new


@pytest.mark.parametrize("amount", [1.0, -0.1, 1.5, float("nan")])
def test_amount_outside_unit_interval_is_refused(amount):
    model = distinct_model(MLP)
    with pytest.raises(PruneError, match=r"\[0, 1\)"):
        prune(model, sparsity=amount)


def test_unknown_layer_names_are_refused_with_the_valid_names():
    model = distinct_model(MLP)
    with pytest.raises(PruneError, match="fc9.*valid: fc1, fc2, out"):
        prune(model, sparsity=0.5, exclude=["fc9"])
    with pytest.raises(PruneError, match="nope"):
        prune(model, sparsity=0.5, layers=["nope.weight"])
    with pytest.raises(PruneError, match="matches no parameter"):
        apply_masks(model, {"fc7.weight": torch.ones(3, dtype=torch.bool)})


def test_threshold_removing_a_whole_layer_is_refused():
    model = distinct_model(MLP)
    with torch.no_grad():
        model.out.weight.mul_(0.01)  # every |w| of out is now <= 0.01
    t = 0.02
    with pytest.raises(PruneError, match="every weight of out"):
        prune(model, criterion="threshold", threshold=t)
    # restricted to a layer with larger weights, the same threshold is legal
    masks = prune(model, criterion="threshold", threshold=t, layers=["fc1"])
    assert bool(masks["out.weight"].all()) and bool(masks["fc2.weight"].all())
    assert torch.equal(masks["fc1.weight"], model.fc1.weight.abs() >= t)


def test_global_sparsity_that_empties_a_layer_is_refused():
    weights = {"big.weight": torch.ones(100) * 5, "tiny.weight": torch.full((2,), 0.1)}
    with pytest.raises(PruneError, match="every weight of tiny"):
        global_magnitude(weights, 0.02)
    with pytest.raises(PruneError, match="every weight of tiny"):
        layer_magnitude({"tiny.weight": torch.ones(1)}, 0.6)


def test_threshold_and_std_criteria():
    w = torch.tensor([[0.1, -0.5, 2.0], [-3.0, 0.05, 0.4]])
    keep = threshold_masks({"l.weight": w}, 0.4)["l.weight"]
    assert keep.tolist() == [[False, True, True], [True, False, True]]
    q = 0.5
    keep_std = std_masks({"l.weight": w}, q)["l.weight"]
    assert torch.equal(keep_std, w.abs() >= q * float(w.std()))
    # second pass: std of the survivors only, and still a subset
    again = std_masks({"l.weight": w}, q, {"l.weight": keep_std})["l.weight"]
    assert torch.equal(again, keep_std & (w.abs() >= q * float(w[keep_std].std())))
    with pytest.raises(PruneError):
        threshold_masks({"l.weight": w}, -1.0)


def test_unit_masks_remove_lowest_norm_rows_and_keep_outputs():
    w = torch.tensor([[3.0, 4.0], [0.1, 0.1], [1.0, 0.0], [0.0, 0.2]])
    keep = unit_masks({"l.weight": w}, 0.5)["l.weight"]
    assert keep.all(dim=1).tolist() == [True, False, True, False]
    assert (keep.all(dim=1) | ~keep.any(dim=1)).all()  # whole rows only
    model = distinct_model(LENET)
    masks = prune(model, sparsity=0.5, granularity="unit")
    assert bool(masks["out.weight"].all())
    conv1_alive = masks["conv1.weight"].flatten(1).any(1)
    assert int((~conv1_alive).sum()) == round(0.5 * 3)


def test_masked_fraction_and_schedule():
    masks = {"a.weight": torch.tensor([True, False, False, True])}
    assert masked_fraction(masks) == 0.5
    levels = geometric_schedule(0.99, 2)
    assert levels[-1] == 0.99 and abs(levels[0] - 0.9) < 1e-12
    assert all(a < b for a, b in zip(levels, levels[1:], strict=False))
    with pytest.raises(PruneError):
        geometric_schedule(0.9, 0)
