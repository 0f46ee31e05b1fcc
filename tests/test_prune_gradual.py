"""Gradual magnitude pruning: the cubic schedule, exact sparsity at events, masks only shrink."""

from __future__ import annotations

import pytest
import torch

from leanbits.errors import PruneError
from leanbits.loop import FitState
from leanbits.models import Plan, build
from leanbits.prune.gradual import GradualPruning, cubic_sparsity, pruning_steps, schedule_at

MLP = Plan("mlp", (1, 8, 8), (), (16, 12), 10)


def zhu_gupta(t: int, s_i: float, s_f: float, t0: int, n: int, dt: int) -> float:
    """The paper's formula, written out independently of the library."""
    return s_f + (s_i - s_f) * (1.0 - (t - t0) / (n * dt)) ** 3


@pytest.mark.parametrize("s_i,s_f,t0,n,dt", [(0.0, 0.9, 0, 10, 5), (0.2, 0.97, 30, 7, 3),
                                             (0.5, 0.5, 4, 2, 1)])
def test_cubic_sparsity_is_the_published_formula(s_i, s_f, t0, n, dt):
    for k in range(n + 1):
        t = t0 + k * dt
        assert cubic_sparsity(t, s_i, s_f, t0, n * dt) == pytest.approx(
            zhu_gupta(t, s_i, s_f, t0, n, dt), abs=1e-12)
    assert cubic_sparsity(t0, s_i, s_f, t0, n * dt) == pytest.approx(s_i)
    assert cubic_sparsity(t0 + n * dt + 7, s_i, s_f, t0, n * dt) == s_f
    assert cubic_sparsity(t0 - 1, s_i, s_f, t0, n * dt) == 0.0 if t0 > 0 else True


def test_pruning_steps_and_piecewise_schedule():
    assert pruning_steps(0, 20, 5) == [0, 5, 10, 15, 20]
    assert pruning_steps(3, 10, 4) == [3, 7, 11, 13]  # the last event lands on t0 + span
    assert pruning_steps(2, 0, 9) == [2]
    assert schedule_at(1, 0.1, 0.9, 2, 10, 5) == 0.0
    assert schedule_at(9, 0.1, 0.9, 2, 10, 5) == pytest.approx(zhu_gupta(7, 0.1, 0.9, 2, 2, 5))
    with pytest.raises(PruneError, match="frequency"):
        pruning_steps(0, 10, 0)
    with pytest.raises(PruneError, match="only shrink"):
        cubic_sparsity(0, 0.9, 0.5, 0, 10)
    with pytest.raises(PruneError, match="sparsity"):
        cubic_sparsity(0, 0.0, 1.0, 0, 10)


def _random_steps(model: torch.nn.Module, hook: GradualPruning, steps: int, seed: int) -> list:
    """Drive the hook as a training loop would, with random weight updates between steps.

    Returns the masks after every step (copies).
    """
    g = torch.Generator().manual_seed(seed)
    state = FitState(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                     epochs=1)
    hook.on_start(state)
    seen = []
    for _ in range(steps):
        with torch.no_grad():  # an "optimizer step": every weight moves, pruned ones too
            for p in model.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=g))
        state.step += 1
        hook.after_step(state)
        seen.append({k: m.clone() for k, m in hook.masks.items()})
    return seen


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_sparsity_follows_schedule_and_masks_never_grow(scope):
    torch.manual_seed(0)
    model = build(MLP)
    s_i, s_f, t0, span, dt = 0.1, 0.95, 3, 24, 4
    hook = GradualPruning(model, s_f, t0, span, dt, initial=s_i, scope=scope)
    seen = _random_steps(model, hook, 40, seed=1)
    total = {k: m.numel() for k, m in seen[0].items()}
    for step, masks in enumerate(seen, start=1):
        target = schedule_at(step, s_i, s_f, t0, span, dt)
        if scope == "global":
            n = sum(total.values())
            assert sum(int(m.sum()) for m in masks.values()) == n - round(target * n), step
        else:
            for k, m in masks.items():
                assert int(m.sum()) == total[k] - round(target * total[k]), (step, k)
        if step > 1:  # a mask never grows back
            for k, m in masks.items():
                assert not bool((m & ~seen[step - 2][k]).any()), (step, k)
    # pruned weights stay exactly zero after every step, though the "optimizer" moved them
    for name, p in model.named_parameters():
        if name in hook.masks:
            assert bool((p[~hook.masks[name]] == 0).all())
    assert [s for s, _ in hook.history] == [t for t in pruning_steps(t0, span, dt) if t <= 40]


def test_hook_keeps_existing_masks_and_excluded_layers():
    torch.manual_seed(0)
    model = build(MLP)
    old = {"fc1.weight": torch.rand(16, 64) > 0.5}
    hook = GradualPruning(model, 0.8, 0, 6, 2, exclude=("out",), masks=old)
    _random_steps(model, hook, 8, seed=2)
    assert not bool((hook.masks["fc1.weight"] & ~old["fc1.weight"]).any())
    assert bool(hook.masks["out.weight"].all())
    scoped = [hook.masks[k] for k in ("fc1.weight", "fc2.weight")]
    n = sum(m.numel() for m in scoped)
    assert sum(int(m.sum()) for m in scoped) == n - round(0.8 * n)


def test_after_backward_zeroes_pruned_gradients():
    torch.manual_seed(0)
    model = build(MLP)
    hook = GradualPruning(model, 0.5, 0, 0, 1)
    state = FitState(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                     epochs=1)
    hook.on_start(state)
    model(torch.randn(4, 1, 8, 8)).sum().backward()
    hook.after_backward(state)
    for name, p in model.named_parameters():
        if name in hook.masks:
            assert bool((p.grad[~hook.masks[name]] == 0).all())
