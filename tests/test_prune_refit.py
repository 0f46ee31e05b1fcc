"""Bias compensation, non-weight re-fit and the baseline methods."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from leanbits.errors import PruneError, TrainingError
from leanbits.heads import Head
from leanbits.loop import epoch_batches, fit, make_optimizer
from leanbits.models import Plan, build
from leanbits.prune import (
    PruneConfig,
    apply_masks,
    bias_compensate,
    prune,
    refit_nonweights,
    run_method,
    train_masked,
)
from leanbits.prune.baselines import RewindPoint, rewind_retrain
from leanbits.prune.masks import MaskHook
from leanbits.train import TrainConfig, make_scheduler

MLP = Plan("mlp", (1, 8, 8), (), (16, 12), 10)
HEAD = Head("softmax", 10)


def tiny_data(n: int = 128, shape=(1, 8, 8), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(10, *shape, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return centers[y] + 0.5 * torch.randn(n, *shape, generator=g), y


def seeded(plan: Plan = MLP, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return build(plan)


def with_mean(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """``x`` shifted so that its batch mean is exactly ``mean``."""
    return x - x.mean(dim=0, keepdim=True) + mean


# ----------------------------------------------------------------------- bias compensation
def test_bias_compensation_preserves_mean_output_of_a_linear_layer():
    torch.manual_seed(0)
    layer = nn.Linear(20, 7).double()
    mu = torch.linspace(-2, 3, 20, dtype=torch.float64)
    x = with_mean(torch.randn(500, 20, dtype=torch.float64), mu)
    dense_mean = layer(x).mean(0).detach()
    w = layer.weight.detach().clone()
    masks = prune(layer, sparsity=0.8)
    deltas = bias_compensate(layer, masks, x)
    # closed form: removed weights x mean input
    removed = w * (~masks["weight"]).double()
    assert torch.allclose(deltas[""], removed @ mu, atol=1e-12)
    assert torch.allclose(layer(x).mean(0), dense_mean, atol=1e-10)
    assert torch.all(layer.weight[~masks["weight"]] == 0)


def test_bias_compensation_preserves_mean_output_of_a_padded_conv():
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 5, 3, padding=1).double()
    x = torch.randn(40, 3, 6, 6, dtype=torch.float64) + 2.0
    dense = conv(x).mean(dim=(0, 2, 3)).detach()
    masks = prune(conv, sparsity=0.7)
    bias_compensate(conv, masks, x)
    # the mean over examples and positions, padding border included, is preserved
    assert torch.allclose(conv(x).mean(dim=(0, 2, 3)), dense, atol=1e-10)


def test_bias_compensation_matches_every_layer_mean_preactivation():
    model = seeded().double()
    x, _ = tiny_data()
    x = x.double()

    def pre_means(m: nn.Module) -> dict[str, torch.Tensor]:
        out = {}
        hooks = [getattr(m, n).register_forward_hook(
            lambda _m, _i, o, n=n: out.__setitem__(n, o.mean(0).detach()))
            for n in ("fc1", "fc2", "out")]
        m(x)
        for h in hooks:
            h.remove()
        return out

    dense = pre_means(model)
    masks = prune(model, sparsity=0.9, scope="layer")
    plain = pre_means(apply_masks(copy.deepcopy(model), masks))
    bias_compensate(model, masks, x)
    comp = pre_means(model)
    for k in dense:
        assert torch.allclose(comp[k], dense[k], atol=1e-9), k
    assert not torch.allclose(plain["out"], dense["out"], atol=1e-3)  # it did matter


# ----------------------------------------------------------------------------- re-fit
class Custom(nn.Module):
    """Not a Sequential: conv, layer norm, a linear layer and a free scale parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.norm = nn.LayerNorm(3 * 6 * 6)
        self.fc = nn.Linear(3 * 6 * 6, 10)
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        h = self.norm(F.relu(self.conv(x)).flatten(1))
        return self.fc(h) * self.scale


def test_refit_changes_only_nonweight_parameters():
    torch.manual_seed(0)
    model = Custom()
    x, y = tiny_data()
    masks = prune(model, sparsity=0.5)
    apply_masks(model, masks)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        loss_before = float(F.cross_entropy(model(x), y))
    rec = refit_nonweights(model, (x, y), F.cross_entropy, epochs=3, lr=1e-2, masks=masks,
                           batch_size=32)
    after = model.state_dict()
    for k in ("conv.weight", "fc.weight"):
        assert torch.equal(after[k], before[k]), f"{k} changed"  # bitwise
    for k in ("conv.bias", "fc.bias", "norm.weight", "norm.bias", "scale"):
        assert not torch.equal(after[k], before[k]), f"{k} was not re-fitted"
    assert float(F.cross_entropy(model(x), y).detach()) < loss_before
    assert rec["epochs"] == 3 and rec["steps"] == 12
    assert rec["params"] == 3 + 2 * 108 + 10 + 1
    assert all(p.requires_grad for p in model.parameters())  # flags restored


def test_refit_is_deterministic_and_weights_stay_zero_and_frozen():
    x, y = tiny_data()
    runs = []
    for _ in range(2):
        model = seeded()
        masks = prune(model, sparsity=0.8, scope="layer")
        apply_masks(model, masks)
        w_before = {k: v.clone() for k, v in model.state_dict().items() if "weight" in k}
        refit_nonweights(model, (x, y), HEAD.loss, epochs=1, batch_size=16, seed=5)
        for k, v in w_before.items():
            assert torch.equal(model.state_dict()[k], v)
        runs.append(model.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_refit_accepts_a_loader_and_refuses_a_model_without_nonweights():
    x, y = tiny_data(64)
    loader = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    model = seeded()
    rec = refit_nonweights(model, loader, HEAD.loss, epochs=2)
    assert rec["steps"] == 8
    with pytest.raises(PruneError, match="no non-weight"):
        refit_nonweights(nn.Linear(4, 2, bias=False), (torch.randn(4, 4), torch.zeros(4)),
                         lambda o, t: o.sum())


def nan_on_call(n: int):
    """A loss that turns NaN on its n-th call (a diverging run, made deterministic)."""
    calls = [0]

    def loss(out, y):
        calls[0] += 1
        value = F.cross_entropy(out, y)
        return value * math.nan if calls[0] == n else value
    return loss


def test_refit_non_finite_loss_restores_the_nonweights_and_says_what_to_lower():
    x, y = tiny_data()
    model = seeded()
    masks = prune(model, sparsity=0.5)
    apply_masks(model, masks)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(TrainingError, match="epoch 2, step 6; lower refit_lr"):
        refit_nonweights(model, (x, y), nan_on_call(6), epochs=3, lr=1e-2, batch_size=32)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())


def test_train_masked_non_finite_loss_says_what_to_lower():
    x, y = tiny_data()
    model = seeded()
    with pytest.raises(TrainingError, match="step 3; lower finetune_lr"):
        train_masked(model, prune(model, sparsity=0.5), (x, y), nan_on_call(3), epochs=1,
                     batch_size=32)


# --------------------------------------------------------------------------- baselines
def test_train_masked_keeps_pruned_weights_zero_and_is_deterministic():
    x, y = tiny_data()
    results = []
    for _ in range(2):
        model = seeded()
        masks = prune(model, sparsity=0.7)
        start = copy.deepcopy(apply_masks(model, masks).state_dict())
        rec = train_masked(model, masks, (x, y), HEAD.loss, epochs=2, lr=1e-2, batch_size=32,
                           seed=3)
        for k, m in masks.items():
            w = model.state_dict()[k]
            assert torch.all(w[~m] == 0)
            assert not torch.equal(w[m], start[k][m])  # kept weights did train
        assert rec["steps"] == 8
        results.append(model.state_dict())
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])


@pytest.mark.parametrize("method", ["none", "refit", "finetune", "iterative", "rewind"])
def test_every_method_prunes_exactly_and_records_its_cost(method):
    x, y = tiny_data()
    model = seeded()
    early = copy.deepcopy(seeded(seed=9).state_dict())
    before = copy.deepcopy(model.state_dict())
    # untrained: fc1's weights are all smaller than the others', so prune per layer
    cfg = PruneConfig(refit_epochs=1, finetune_epochs=1, rounds=2, round_epochs=1,
                      batch_size=64, scope="layer")
    # trained for 3 epochs, early weights after the 2nd: rewinding retrains 1 epoch
    train = TrainConfig(epochs=3, rewind_epoch=2, batch_size=64, lr=0.05)
    res = run_method(model, method, 0.8, (x, y), HEAD.loss, cfg, early_state=early,
                     train_config=train)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched
    for k, m in res.masks.items():
        assert int((~m).sum()) == round(0.8 * m.numel())
        assert torch.all(res.model.state_dict()[k][~m] == 0)
    expected_epochs = {"none": 0, "refit": 1, "finetune": 1, "iterative": 2, "rewind": 1}
    assert res.record["backprop_epochs"] == expected_epochs[method]
    assert res.record["wall_time_s"] >= 0
    if method == "iterative":
        assert len(res.record["schedule"]) == 2 and res.record["schedule"][-1] == 0.8
    if method in ("none", "refit"):
        for k, m in res.masks.items():  # the snapshot method never changes a kept weight
            assert torch.equal(res.model.state_dict()[k][m], before[k][m])


def test_rewind_without_early_weights_and_unknown_method_are_refused():
    x, y = tiny_data(32)
    with pytest.raises(PruneError, match="early in training"):
        run_method(seeded(), "rewind", 0.5, (x, y), HEAD.loss)
    early = seeded(seed=9).state_dict()
    with pytest.raises(PruneError, match="training settings"):  # no schedule to finish
        run_method(seeded(), "rewind", 0.5, (x, y), HEAD.loss, early_state=early)
    with pytest.raises(PruneError, match="no schedule left"):
        run_method(seeded(), "rewind", 0.5, (x, y), HEAD.loss, early_state=early,
                   train_config=TrainConfig(epochs=2, rewind_epoch=3))
    with pytest.raises(PruneError, match="valid: none, refit"):
        run_method(seeded(), "magic", 0.5, (x, y), HEAD.loss)


@pytest.mark.parametrize("schedule", ["cosine", "step"])
def test_a_resumed_schedule_gives_the_rates_the_full_run_had(schedule):
    cfg = TrainConfig(epochs=6, schedule=schedule, step_size=2, gamma=0.5, lr=0.1)
    rates = []
    for start in (0, 4):
        opt = make_optimizer("sgd", [nn.Parameter(torch.zeros(1))], cfg.lr)
        sched = make_scheduler(cfg, opt, steps_per_epoch=3, start_epoch=start)
        seen = []
        for _ in range(3 * (cfg.epochs - start)):
            seen.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        rates.append(seen)
    assert rates[1] == rates[0][12:]  # epochs 5-6 of the full run, step for step
    assert rates[1][0] < cfg.lr


def test_rewinding_finishes_the_original_schedule_with_its_optimizer_and_decay():
    """rewind_retrain is the original run's remaining epochs: same optimizer, momentum,
    batch size, L2 and resumed cosine schedule as training those epochs by hand."""
    x, y = tiny_data(96)
    train = TrainConfig(epochs=4, rewind_epoch=1, optimizer="sgd", lr=0.05, momentum=0.9,
                        batch_size=32, schedule="cosine", l2=1e-3)
    early = seeded(seed=4)
    masks = prune(early, sparsity=0.6)
    got = copy.deepcopy(early)
    rec = rewind_retrain(got, masks, (x, y), HEAD.loss, RewindPoint(early.state_dict(), train),
                         seed=5)
    assert rec["backprop_epochs"] == 3 and rec["lr"] == 0.05 and rec["steps"] == 9
    want = copy.deepcopy(early)
    opt = make_optimizer("sgd", want.parameters(), 0.05, 0.9)
    sched = make_scheduler(train, opt, 3, start_epoch=1)

    def loss(out, target):
        l2 = sum(m.weight.pow(2).sum() for m in want if isinstance(m, nn.Linear))
        return HEAD.loss(out, target) + 0.5 * 1e-3 * l2

    fit(want, want.parameters(), epoch_batches((x, y), 32, 5), loss, opt, [MaskHook(masks)],
        epochs=3, scheduler=sched, seed=5)
    for k, v in want.state_dict().items():
        assert torch.allclose(got.state_dict()[k], v, atol=1e-6), k
    for k, m in masks.items():
        assert torch.all(got.state_dict()[k][~m] == 0)
