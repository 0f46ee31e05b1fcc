"""Structured pruning to a weight budget: whole units go, the budget is met minimally."""

from __future__ import annotations

import pytest
import torch

from leanbits.errors import PruneError
from leanbits.models import Plan, build
from leanbits.prune import apply_masks, compact
from leanbits.prune.structure import analyse
from leanbits.prune.structured import structured_masks, units_at

MLP = Plan("mlp", (1, 8, 8), (), (24, 16), 10)
LENET = Plan("lenet5", (1, 28, 28), (4, 6), (12,), 10)


def _kept(masks):
    return sum(int(m.sum()) for m in masks.values())


@pytest.mark.parametrize("plan,sparsity", [(MLP, 0.5), (MLP, 0.8), (LENET, 0.7)])
def test_budget_met_with_the_smallest_unit_fraction(plan, sparsity):
    torch.manual_seed(0)
    model = build(plan)
    total = sum(m.weight.numel() for m in model if hasattr(m, "weight") and m.weight is not None
                and m.weight.ndim > 1)
    masks, fraction = structured_masks(model, sparsity)
    assert _kept(masks) <= total - round(sparsity * total)
    # minimal: a slightly smaller fraction misses the budget
    assert _kept(units_at(model, max(0.0, fraction - 2e-3))) > total - round(sparsity * total)
    # whole units: every row of a hidden layer is all kept or all gone, outputs intact
    s = analyse(model, masks)
    assert s.masks.keys() == masks.keys()
    for k in masks:
        assert torch.equal(s.masks[k], masks[k])  # already effective: nothing more dies
    last = s.layers[-1]
    assert not bool(s.dead[last].any())
    for name in s.layers[:-1]:
        rows = masks[f"{name}.weight"].reshape(s.units[name], -1)
        alive = ~s.dead[name]
        assert bool(rows[~alive].logical_not().all())
    # compaction turns the removed units into a physically smaller net computing the same
    small, small_plan = compact(apply_masks(model, masks), plan, masks)
    assert sum(small_plan.fc) + sum(small_plan.conv) < sum(plan.fc) + sum(plan.conv)
    x = torch.randn(7, *plan.in_shape)
    model.eval()
    small.eval()
    assert torch.allclose(model(x), small(x), atol=1e-5)


def test_zero_sparsity_and_impossible_budget():
    torch.manual_seed(0)
    model = build(MLP)
    masks, fraction = structured_masks(model, 0.0)
    assert fraction == 0.0 and all(bool(m.all()) for m in masks.values())
    with pytest.raises(PruneError, match="whole units"):
        structured_masks(model, 0.999)


def test_existing_masks_are_kept():
    torch.manual_seed(0)
    model = build(MLP)
    old = {"fc1.weight": torch.rand(24, 64) > 0.4}
    masks, _ = structured_masks(model, 0.6, old)
    assert not bool((masks["fc1.weight"] & ~old["fc1.weight"]).any())
