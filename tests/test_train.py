import json

import pytest
import torch

from leanbits import paths, snapshot
from leanbits.data import DataConfig
from leanbits.errors import TrainingError
from leanbits.train import TrainConfig, train


def _cfg(**kw):
    base = dict(model="lenet-300-100", fc=(32, 16), epochs=2, batch_size=32, lr=0.05,
                train_eval_size=64)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("head", ["softmax", "llr", "llr-code"])
def test_training_learns_and_writes_a_snapshot(tmp_path, tiny_splits, head):
    res = train(DataConfig(), _cfg(head=head), tiny_splits, tmp_path / "run", progress=False,
                log=lambda _l: None)
    assert res.final["val_acc"] > 0.6  # chance is 0.1 on this tiny separable data
    snap = snapshot.load(tmp_path / "run")
    for k, v in res.model.state_dict().items():
        assert torch.equal(v, snap.model.state_dict()[k])
    lines = paths.metrics_log(tmp_path / "run").read_text().splitlines()
    rec = json.loads(lines[-1])
    assert len(lines) == 2
    assert {"train_loss", "val_acc", "mean_abs_output", "layers", "dead_units"} <= set(rec)
    assert set(rec["layers"]) == {"fc1", "fc2", "out"}
    assert snap.config["train"]["head"] == head
    assert paths.early_weights(tmp_path / "run").is_file()


def test_same_seed_gives_bitwise_identical_weights(tiny_splits):
    a = train(DataConfig(), _cfg(), tiny_splits, None, progress=False, log=lambda _l: None)
    b = train(DataConfig(), _cfg(), tiny_splits, None, progress=False, log=lambda _l: None)
    c = train(DataConfig(), _cfg(seed=2), tiny_splits, None, progress=False, log=lambda _l: None)
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_l1_and_group_lasso_give_exact_zeros(tiny_splits):
    l1 = train(DataConfig(), _cfg(l1=0.05), tiny_splits, None, progress=False, log=lambda _l: None)
    assert l1.history[-1]["layers"]["fc1"]["zero_frac"] > 0.1
    g = train(DataConfig(), _cfg(group=0.5), tiny_splits, None, progress=False,
              log=lambda _l: None)
    w = g.model.fc1.weight
    assert int((w.abs().sum(1) == 0).sum()) > 0  # whole units removed


def test_nan_loss_stops_and_keeps_last_good_snapshot(tmp_path, tiny_splits):
    with pytest.raises(TrainingError, match="lower the learning rate|Lower the learning rate"):
        train(DataConfig(), _cfg(lr=1e12, epochs=3, head="softmax"), tiny_splits,
              tmp_path / "run", progress=False, log=lambda _l: None)
    snap = snapshot.load(tmp_path / "run")
    assert "non-finite" in snap.metrics["status"]
    assert all(torch.isfinite(v).all() for v in snap.model.state_dict().values())


def test_each_split_is_evaluated_once_and_the_train_stage_reuses_it(tmp_path, monkeypatch):
    import leanbits.train as train_module
    from leanbits.sweep import stages

    calls = []
    real = train_module.evaluate

    def counting(model, head, x, y, *args, **kwargs):
        calls.append(len(x))
        return real(model, head, x, y, *args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate", counting)
    data = {"dataset": "synthetic", "limit_train": 96, "val_size": 40}
    splits = stages.load_splits(data)
    task = stages.StageTask("train", "t", _cfg(epochs=3, train_eval_size=24), data,
                            str(tmp_path / "t"))
    metrics = stages._run_train(task, splits, tmp_path / "t")
    # per epoch: validation (40) and the training subset (24); then test (40) once
    assert calls == [40, 24] * 3 + [40]
    history = [json.loads(line) for line in
               paths.metrics_log(tmp_path / "t").read_text().splitlines()]
    assert metrics["val_acc"] == history[-1]["val_acc"]
    assert metrics["val_loss"] == history[-1]["val_loss"]
    model = snapshot.load(tmp_path / "t").model
    head = snapshot.load(tmp_path / "t").head
    again = real(model, head, splits.test.x, splits.test.y)
    assert (metrics["test_acc"], metrics["test_loss"]) == (again["acc"], again["loss"])
