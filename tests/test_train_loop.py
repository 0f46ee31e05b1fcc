"""The one training loop (`leanbits.loop.fit`): step order, hooks, freezing, RNG, errors."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from leanbits.errors import ConfigError, TrainingError
from leanbits.loop import (
    FitState,
    Hook,
    NonFiniteLoss,
    epoch_batches,
    fit,
    iterate_batches,
    make_optimizer,
)
from leanbits.prune import prune
from leanbits.prune.masks import MaskHook
from leanbits.regularize import Regularizer, RegularizerHook
from leanbits.train import TrainConfig, make_scheduler


def data(n: int = 96, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(4, 6, generator=g)
    y = torch.randint(0, 4, (n,), generator=g)
    return centers[y] + 0.3 * torch.randn(n, 6, generator=g), y


def net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4))


def test_fit_equals_a_plain_pytorch_loop_bitwise():
    x, y = data()
    a, b = net(), net()
    opt_a = torch.optim.SGD(a.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        for xb, yb in iterate_batches(x, y, 16, gen):
            loss = F.cross_entropy(a(xb), yb)
            opt_a.zero_grad()
            loss.backward()
            opt_a.step()
    res = fit(b, b.parameters(), epoch_batches((x, y), 16, seed=3), F.cross_entropy,
              make_optimizer("sgd", b.parameters(), 0.1), epochs=3)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    assert res.steps == 18 and [r["epoch"] for r in res.history] == [1, 2, 3]
    assert all(p.grad is None for p in b.parameters())


def test_history_records_the_mean_data_loss_and_the_rate():
    x, y = data(40)
    model = net()
    opt = make_optimizer("sgd", model.parameters(), 0.0)  # lr 0: the model never changes
    with torch.no_grad():
        expected = sum(F.cross_entropy(model(xb), yb).item() * len(yb)
                       for xb, yb in iterate_batches(x, y, 16)) / 40
    res = fit(model, model.parameters(), epoch_batches((x, y), 16), F.cross_entropy, opt,
              epochs=1)
    rec = res.history[0]
    assert rec["train_loss"] == expected and rec["lr"] == 0.0 and res.steps == 3
    assert set(rec) == {"epoch", "lr", "train_loss", "epoch_time_s"}


class Recorder(Hook):
    def __init__(self, name: str, log: list) -> None:
        self.name, self.log = name, log

    def on_start(self, state):
        self.log.append((self.name, "start", state.step))

    def extra_loss(self, state):
        self.log.append((self.name, "extra", state.step))
        return None

    def after_backward(self, state):
        assert all(p.grad is not None for p in state.model.parameters())
        self.log.append((self.name, "backward", state.step))

    def after_step(self, state):
        self.log.append((self.name, "step", state.step))

    def after_epoch(self, state):
        self.log.append((self.name, "epoch", state.epoch))
        return {self.name: state.epoch, "seen_by_" + self.name: sorted(state.record)}


def test_hooks_run_in_order_at_each_point_and_extend_the_record():
    x, y = data(32)
    model = net()
    log: list = []
    res = fit(model, model.parameters(), epoch_batches((x, y), 16), F.cross_entropy,
              make_optimizer("adam", model.parameters(), 1e-3),
              [Recorder("a", log), Recorder("b", log)], epochs=2)
    per_step = lambda s: [("a", "extra", s), ("b", "extra", s), ("a", "backward", s),  # noqa: E731
                          ("b", "backward", s), ("a", "step", s + 1), ("b", "step", s + 1)]
    expected = [("a", "start", 0), ("b", "start", 0),
                *per_step(0), *per_step(1), ("a", "epoch", 1), ("b", "epoch", 1),
                *per_step(2), *per_step(3), ("a", "epoch", 2), ("b", "epoch", 2)]
    assert log == expected
    rec = res.history[1]
    assert rec["a"] == rec["b"] == 2
    assert "a" in rec["seen_by_b"] and "a" not in rec["seen_by_a"]  # later hooks see earlier


class Stop(Hook):
    def after_epoch(self, state):
        state.stop = state.epoch == 2


def test_a_hook_can_stop_training_after_an_epoch():
    x, y = data(32)
    model = net()
    res = fit(model, model.parameters(), epoch_batches((x, y), 16), F.cross_entropy,
              make_optimizer("sgd", model.parameters(), 0.1), [Stop()], epochs=5)
    assert len(res.history) == 2 and res.steps == 4


class L2(Hook):
    def extra_loss(self, state):
        return 0.05 * sum(p.pow(2).sum() for p in state.model.parameters())


def test_extra_loss_is_added_to_the_data_loss_before_backward():
    x, y = data()
    a, b = net(), net()

    def penalized(out, t):
        return F.cross_entropy(out, t) + 0.05 * sum(p.pow(2).sum() for p in a.parameters())

    fit(a, a.parameters(), epoch_batches((x, y), 32, seed=1), penalized,
        make_optimizer("sgd", a.parameters(), 0.1), epochs=2)
    res = fit(b, b.parameters(), epoch_batches((x, y), 32, seed=1), F.cross_entropy,
              make_optimizer("sgd", b.parameters(), 0.1), [L2()], epochs=2)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    # the record keeps the data loss alone, not the penalized total
    with torch.no_grad():
        assert res.history[-1]["train_loss"] < penalized(a(x), y).item()


def test_mask_hook_keeps_pruned_weights_exactly_zero_even_with_momentum():
    x, y = data()
    model = net()
    masks = prune(model, sparsity=0.6, scope="layer")
    opt = make_optimizer("sgd", model.parameters(), 0.2)
    fit(model, model.parameters(), epoch_batches((x, y), 16, seed=0), F.cross_entropy, opt,
        [MaskHook(masks)], epochs=3)
    params = dict(model.named_parameters())
    for k, m in masks.items():
        assert torch.all(params[k][~m] == 0)
        assert torch.all(params[k][m] != 0)
    # without the hook the same training revives pruned weights (the test can fail)
    model = net()
    MaskHook(masks).on_start(FitState(model, opt, 1))
    fit(model, model.parameters(), epoch_batches((x, y), 16, seed=0), F.cross_entropy,
        make_optimizer("sgd", model.parameters(), 0.2), epochs=3)
    assert any(torch.any(dict(model.named_parameters())[k][~m] != 0) for k, m in masks.items())


def test_regularizer_hook_gives_exact_zeros_with_the_current_rate():
    x, y = data()
    model = net()
    fit(model, model.parameters(), epoch_batches((x, y), 16, seed=0), F.cross_entropy,
        make_optimizer("sgd", model.parameters(), 0.1), [RegularizerHook(Regularizer(l1=0.5))],
        epochs=2)
    assert int((model[0].weight == 0).sum()) > 0


def test_only_the_given_parameters_train_and_flags_are_restored():
    x, y = data()
    model = net()
    model[2].bias.requires_grad_(False)  # a caller's own frozen flag survives
    before = copy.deepcopy(model.state_dict())
    model.eval()
    fit(model, [model[0].bias], epoch_batches((x, y), 16, seed=0), F.cross_entropy,
        make_optimizer("adam", [model[0].bias], 1e-2), epochs=1)
    after = model.state_dict()
    assert not torch.equal(after["0.bias"], before["0.bias"])
    assert all(torch.equal(after[k], before[k]) for k in before if k != "0.bias")
    assert [p.requires_grad for p in model.parameters()] == [True, True, True, False]
    assert not model.training  # mode restored


def test_seed_forks_the_rng_and_fixes_the_result():
    x, y = data()
    states = []
    for _ in range(2):
        model = net()
        torch.manual_seed(123)
        outside = torch.random.get_rng_state()
        fit(model, model.parameters(), epoch_batches((x, y), 16, seed=4), F.cross_entropy,
            make_optimizer("sgd", model.parameters(), 0.1), epochs=1, seed=4)
        assert torch.equal(torch.random.get_rng_state(), outside)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_epoch_batches_draws_one_generator_epoch_after_epoch_or_uses_a_loader():
    x, y = torch.arange(10.0).unsqueeze(1), torch.arange(10)
    batches = epoch_batches((x, y), 4, seed=7)
    first = torch.cat([yb for _, yb in batches(1)])
    second = torch.cat([yb for _, yb in batches(2)])
    g = torch.Generator().manual_seed(7)
    assert torch.equal(first, torch.randperm(10, generator=g))
    assert torch.equal(second, torch.randperm(10, generator=g))
    assert torch.equal(torch.cat([yb for _, yb in epoch_batches((x, y), 4)(1)]), y)
    loader = [(x[:5], y[:5]), (x[5:], y[5:])]
    assert epoch_batches(loader, 4)(3) is loader


class Explode(Hook):
    def extra_loss(self, state):
        return torch.tensor(math.inf) if state.step == 3 else None


def test_non_finite_loss_names_epoch_and_step_and_restores_flags():
    x, y = data(64)
    model = net()
    model[0].weight.requires_grad_(False)
    with pytest.raises(NonFiniteLoss, match="at epoch 2, step 4") as info:
        fit(model, model.parameters(), epoch_batches((x, y), 32), F.cross_entropy,
            make_optimizer("sgd", model.parameters(), 0.1), [Explode()], epochs=3)
    assert isinstance(info.value, TrainingError)
    assert (info.value.epoch, info.value.step, info.value.value) == (2, 4, math.inf)
    assert [p.requires_grad for p in model.parameters()] == [False, True, True, True]


def test_bad_arguments_are_refused():
    x, y = data(8)
    model = net()
    opt = make_optimizer("sgd", model.parameters(), 0.1)
    with pytest.raises(ConfigError, match="epochs"):
        fit(model, model.parameters(), epoch_batches((x, y), 4), F.cross_entropy, opt, epochs=-1)
    with pytest.raises(ConfigError, match="belong"):
        fit(model, [nn.Parameter(torch.zeros(1))], epoch_batches((x, y), 4), F.cross_entropy,
            opt, epochs=1)
    with pytest.raises(ConfigError, match="no parameters"):
        fit(model, [], epoch_batches((x, y), 4), F.cross_entropy, opt, epochs=1)
    with pytest.raises(ConfigError, match="unknown optimizer"):
        make_optimizer("rmsprop", model.parameters(), 0.1)
    assert make_optimizer("sgd", model.parameters(), 0.1).param_groups[0]["momentum"] == 0.9


@pytest.mark.parametrize("schedule", ["cosine", "step", "none"])
def test_schedules_follow_the_closed_forms_exactly(schedule):
    cfg = TrainConfig(schedule=schedule, lr=0.05, epochs=4, step_size=1, gamma=0.1)
    spe = 7
    opt = make_optimizer("sgd", [nn.Parameter(torch.zeros(1))], cfg.lr)
    sched = make_scheduler(cfg, opt, spe)
    total = cfg.epochs * spe
    for step in range(total + 1):
        if schedule == "cosine":
            want = cfg.lr * (0.5 * (1.0 + math.cos(math.pi * min(step, total) / total)))
        elif schedule == "step":
            want = cfg.lr * cfg.gamma ** ((step // spe) // cfg.step_size)
        else:
            want = cfg.lr
        assert opt.param_groups[0]["lr"] == want, step  # bitwise, not approximately
        opt.step()
        if sched is not None:
            sched.step()
    assert (sched is None) == (schedule == "none")


class _Interrupt(Hook):
    """Raises after epoch ``at``'s other hooks, as a kill between epochs would."""

    def __init__(self, at: int) -> None:
        self.at, self.epochs = at, []

    def after_epoch(self, state: FitState):
        self.epochs.append(state.epoch)
        if state.epoch == self.at:
            raise KeyboardInterrupt


def _dropout_net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)  # dropout draws from the global RNG: the checkpoint keeps it
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 4))


def _checkpointed_fit(model, hooks, checkpoint, optimizer="sgd", epochs=5):
    x, y = data()
    opt = make_optimizer(optimizer, model.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 / (1 + 0.1 * t))
    return fit(model, model.parameters(), epoch_batches((x, y), 16, seed=4), F.cross_entropy,
               opt, hooks, epochs=epochs, scheduler=sched, seed=7, checkpoint=checkpoint)


def _same_history(a, b):
    drop = ("epoch_time_s",)
    return [{k: v for k, v in r.items() if k not in drop} for r in a] == [
        {k: v for k, v in r.items() if k not in drop} for r in b]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_an_interrupted_fit_resumes_from_its_checkpoint_bit_exactly(tmp_path, optimizer):
    from leanbits.loop import EpochCheckpoint

    whole = _dropout_net()
    ref = _checkpointed_fit(whole, [], None, optimizer)
    path = tmp_path / "fit.ckpt"
    stopped = _dropout_net()
    with pytest.raises(KeyboardInterrupt):
        _checkpointed_fit(stopped, [_Interrupt(3)], EpochCheckpoint(path, "run"), optimizer)
    assert path.is_file()  # epochs 1 and 2 saved; epoch 3 was lost with the interrupt
    resumed = _dropout_net()  # a fresh process: the model as it was before training
    seen = _Interrupt(0)
    got = _checkpointed_fit(resumed, [seen], EpochCheckpoint(path, "run"), optimizer)
    assert seen.epochs == [3, 4, 5]  # only the epochs not saved ran again
    for p, q in zip(whole.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)
    assert _same_history(got.history, ref.history) and got.steps == ref.steps
    # finished: run again with the same checkpoint, nothing trains and nothing changes
    again = _dropout_net()
    seen = _Interrupt(0)
    done = _checkpointed_fit(again, [seen], EpochCheckpoint(path, "run"), optimizer)
    assert seen.epochs == [] and _same_history(done.history, ref.history)
    for p, q in zip(whole.parameters(), again.parameters(), strict=True):
        assert torch.equal(p, q)


def test_a_foreign_or_damaged_checkpoint_is_not_resumed(tmp_path):
    from leanbits.loop import EpochCheckpoint

    path = tmp_path / "fit.ckpt"
    with pytest.raises(KeyboardInterrupt):
        _checkpointed_fit(_dropout_net(), [_Interrupt(2)], EpochCheckpoint(path, "run"))
    ref = _dropout_net()
    _checkpointed_fit(ref, [], None)
    for damage in ("key", "truncated", "garbage", "shape"):
        if damage == "key":
            checkpoint = EpochCheckpoint(path, "another run")
            model = _dropout_net()
        elif damage == "shape":
            checkpoint = EpochCheckpoint(path, "run")
            torch.manual_seed(0)
            model = nn.Sequential(nn.Linear(6, 9), nn.ReLU(), nn.Dropout(0.3), nn.Linear(9, 4))
        else:
            raw = path.read_bytes()
            bad = tmp_path / f"{damage}.ckpt"
            bad.write_bytes(raw[: len(raw) // 2] if damage == "truncated" else b"\x07" * 64)
            checkpoint, model = EpochCheckpoint(bad, "run"), _dropout_net()
        seen = _Interrupt(0)
        _checkpointed_fit(model, [seen], checkpoint)
        assert seen.epochs == [1, 2, 3, 4, 5], damage  # trained from the start
        if damage != "shape":
            for p, q in zip(ref.parameters(), model.parameters(), strict=True):
                assert torch.equal(p, q)
    with pytest.raises(ConfigError, match="interval"):
        EpochCheckpoint(path, every=0)


def test_a_checkpoint_of_a_stopped_fit_stays_stopped(tmp_path):
    from leanbits.loop import EpochCheckpoint

    class StopAt2(Hook):
        def after_epoch(self, state):
            state.stop = state.epoch == 2

    path = tmp_path / "fit.ckpt"
    first = _checkpointed_fit(_dropout_net(), [StopAt2()], EpochCheckpoint(path, "run"))
    assert len(first.history) == 2
    seen = _Interrupt(0)
    again = _checkpointed_fit(_dropout_net(), [seen], EpochCheckpoint(path, "run"))
    assert seen.epochs == [] and len(again.history) == 2


def test_a_forged_checkpoint_of_the_right_key_is_ignored_whole(tmp_path):
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from leanbits.loop import EpochCheckpoint

    path = tmp_path / "fit.ckpt"
    with pytest.raises(KeyboardInterrupt):
        _checkpointed_fit(_dropout_net(), [_Interrupt(3)], EpochCheckpoint(path, "run"))
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["leanbits_fit"])
    tensors = load_file(str(path))
    ref = _dropout_net()
    _checkpointed_fit(ref, [], None)
    # a malformed field fails while reading; no parameter group fails while applying,
    # after the model's weights were already restored: both must leave nothing behind
    for field, value in (("optim_scalars", []), ("param_groups", [])):
        forged = tmp_path / f"{field}.ckpt"
        save_file(tensors, str(forged),
                  metadata={"leanbits_fit": json.dumps({**meta, field: value})})
        model, seen = _dropout_net(), _Interrupt(0)
        _checkpointed_fit(model, [seen], EpochCheckpoint(forged, "run"))
        assert seen.epochs == [1, 2, 3, 4, 5], field  # trained from the start...
        for p, q in zip(ref.parameters(), model.parameters(), strict=True):
            assert torch.equal(p, q), field  # ...from the model as it was given
