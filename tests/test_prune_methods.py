"""The sparsity-finding methods end to end on tiny data: gradual, sparse VD, structured."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from leanbits.heads import Head
from leanbits.loop import epoch_batches, fit
from leanbits.models import Plan, build
from leanbits.prune import PruneConfig, compact
from leanbits.prune.gradual import cubic_sparsity, gradual_prune
from leanbits.prune.structure import analyse
from leanbits.prune.structured import structured_prune
from leanbits.prune.variational import SparseVD, sparse_vd, to_variational, total_kl

PLAN = Plan("mlp", (1, 28, 28), (), (32, 16), 10)
HEAD = Head("softmax", 10)


def trained(tiny_splits, epochs: int = 3) -> nn.Sequential:
    torch.manual_seed(0)
    model = build(PLAN)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    data = (tiny_splits.train.x, tiny_splits.train.y)
    fit(model, model.parameters(), epoch_batches(data, 64, 0), HEAD.loss, opt, epochs=epochs,
        seed=0)
    return model


def test_gradual_reaches_the_target_on_the_cubic_schedule(tiny_splits):
    model = trained(tiny_splits)
    data = (tiny_splits.train.x, tiny_splits.train.y)
    cfg = PruneConfig(sparsity=0.9, gradual_epochs=4, gradual_begin=0.25, gradual_end=0.75,
                      gradual_frequency=2, gradual_initial=0.3, batch_size=64,
                      remove_dead=False)
    res = gradual_prune(model, data, HEAD.loss, cfg)
    total_steps = 4 * math.ceil(256 / 64)
    begin, end = round(0.25 * total_steps), round(0.75 * total_steps)
    assert [s for s, _ in res.record["schedule"]] == list(range(begin, end + 1, 2))
    n = sum(m.numel() for m in res.masks.values())
    for step, got in res.record["schedule"]:
        want = cubic_sparsity(step, 0.3, 0.9, begin, end - begin)
        assert got == pytest.approx(round(want * n) / n, abs=1e-12)
    assert sum(int(m.sum()) for m in res.masks.values()) == n - round(0.9 * n)
    for name, p in res.model.named_parameters():
        if name in res.masks:
            assert bool((p[~res.masks[name]] == 0).all())
    assert type(res.model) is nn.Sequential and res.record["backprop_epochs"] == 4
    # the input model is untouched, and a second run with the seed is identical
    assert all(bool((m.weight != 0).all()) for m in model if isinstance(m, nn.Linear))
    again = gradual_prune(model, data, HEAD.loss, cfg)
    assert all(torch.equal(again.masks[k], res.masks[k]) for k in res.masks)


def test_gradual_from_scratch_reinitialises(tiny_splits):
    model = trained(tiny_splits)
    data = (tiny_splits.train.x, tiny_splits.train.y)
    cfg = PruneConfig(sparsity=0.5, gradual_epochs=0, gradual_reinit=True, batch_size=64)
    res = gradual_prune(model, data, HEAD.loss, cfg)  # zero epochs: one event at step 0
    torch.manual_seed(cfg.seed)
    fresh = build(PLAN)
    kept = res.masks["fc1.weight"]
    assert torch.equal(res.model.fc1.weight[kept], fresh.fc1.weight[kept])


def _objective(vd: nn.Module, x: torch.Tensor, y: torch.Tensor, n: int) -> float:
    """Negative ELBO per example, noise seeded so before/after are compared fairly."""
    vd.train()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        losses = [float(HEAD.loss(vd(x), y) + total_kl(vd) / n) for _ in range(8)]
    return sum(losses) / len(losses)


def test_sparse_vd_tiny_fit_lowers_the_objective(tiny_splits):
    model = trained(tiny_splits)
    x, y = tiny_splits.train.x, tiny_splits.train.y
    vd = to_variational(model)
    before = _objective(vd, x, y, len(x))
    opt = torch.optim.Adam(vd.parameters(), lr=1e-2)
    fit(vd, vd.parameters(), epoch_batches((x, y), 64, 0), HEAD.loss, opt,
        [SparseVD(vd, len(x))], epochs=5, seed=0)
    after = _objective(vd, x, y, len(x))
    assert after < before - 0.1 * abs(before)


def test_sparse_vd_ends_as_an_ordinary_pruned_model(tiny_splits):
    model = trained(tiny_splits)
    x, y = tiny_splits.train.x, tiny_splits.train.y
    old = {"fc2.weight": torch.rand(16, 32, generator=torch.Generator().manual_seed(3)) > 0.5}
    cfg = PruneConfig(vd_epochs=6, vd_lr=1e-2, vd_warmup_epochs=2, vd_finetune_epochs=1,
                      batch_size=64)
    res = sparse_vd(model, (x, y), HEAD.loss, cfg, masks=old)
    assert all(type(m) in (nn.Linear, nn.ReLU, nn.Flatten) for m in res.model)
    assert set(res.model.state_dict()) == set(model.state_dict())
    assert not bool((res.masks["fc2.weight"] & ~old["fc2.weight"]).any())
    for name, p in res.model.named_parameters():
        if name in res.masks:
            assert bool((p[~res.masks[name]] == 0).all())
    kept = sum(int(m.sum()) for m in res.masks.values())
    total = sum(m.numel() for m in res.masks.values())
    assert kept < 0.5 * total  # N = 256 examples: the KL dominates, most weights go
    assert res.record["backprop_epochs"] == 7 and res.record["kl"] > 0
    assert [h["epoch"] for h in res.record["history"]] == list(range(1, 7))


def test_structured_removes_units_then_refits(tiny_splits):
    model = trained(tiny_splits)
    data = (tiny_splits.train.x, tiny_splits.train.y)
    cfg = PruneConfig(sparsity=0.8, structured_retrain="refit", refit_epochs=1, batch_size=64)
    res = structured_prune(model, data, HEAD.loss, cfg)
    total = sum(m.numel() for m in res.masks.values())
    assert sum(int(m.sum()) for m in res.masks.values()) <= total - round(0.8 * total)
    s = analyse(res.model, res.masks)
    assert s.effective_connections() == sum(int(m.sum()) for m in res.masks.values())
    small, small_plan = compact(res.model, PLAN, res.masks)
    assert small_plan.fc[0] < 32
    # a re-fit changes no weight: kept weights are the snapshot's
    kept = res.masks["fc1.weight"]
    assert torch.equal(res.model.fc1.weight[kept], model.fc1.weight[kept])
    tuned = structured_prune(model, data, HEAD.loss,
                             PruneConfig(sparsity=0.8, structured_retrain="finetune",
                                         finetune_epochs=1, batch_size=64))
    assert all(torch.equal(tuned.masks[k], res.masks[k]) for k in res.masks)
    assert not torch.equal(tuned.model.fc1.weight[kept], model.fc1.weight[kept])


def test_methods_leave_the_input_model_alone(tiny_splits):
    model = trained(tiny_splits)
    before = copy.deepcopy(model.state_dict())
    data = (tiny_splits.train.x, tiny_splits.train.y)
    sparse_vd(model, data, HEAD.loss, PruneConfig(vd_epochs=1, batch_size=64))
    structured_prune(model, data, HEAD.loss, PruneConfig(sparsity=0.5, finetune_epochs=1))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
