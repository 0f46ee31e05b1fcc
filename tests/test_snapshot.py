"""Snapshots written as a unit (DIR.partial, then one rename) and read through a schema."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from leanbits import cli, paths, snapshot
from leanbits.bits.container import encode
from leanbits.data import DataConfig
from leanbits.errors import ConfigError, FormatError
from leanbits.heads import MAX_CLASSES, Head
from leanbits.models import PRESETS, Plan, build, preset
from leanbits.models.plan import MAX_LAYERS, MAX_PARAMETERS, MAX_WIDTH
from leanbits.train import TrainConfig, train

PLAN = Plan("mlp", (1, 8, 8), (), (6,), 10)
HEAD = Head("softmax", 10)
ROOT = Path(__file__).resolve().parent.parent


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build(PLAN)


def _save(d: Path, seed: int = 0, config=None, **kw) -> Path:
    return snapshot.save(d, _model(seed), PLAN, HEAD, config or {"train": {"seed": seed}},
                         {"val_acc": 0.5}, **kw)


def _cfg(**kw) -> TrainConfig:
    base = dict(model="lenet-300-100", fc=(16,), epochs=2, batch_size=64, lr=0.05,
                train_eval_size=0)
    base.update(kw)
    return TrainConfig(**base)


# ----------------------------------------------------------------------- the plan schema


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_state_shapes_are_exactly_what_build_makes(name, shape):
    plan = preset(name, shape)
    state = build(plan).state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == plan.state_shapes()
    assert plan.num_parameters() == sum(v.numel() for v in state.values())


@pytest.mark.parametrize("kwargs, needle", [
    (dict(fc=(MAX_WIDTH + 1,)), "ceiling of 65,536 units per layer"),
    (dict(fc=(300.7,)), "300.7 is not a whole number"),
    (dict(fc=(True,)), "True is not a whole number"),
    (dict(fc="300"), "not a list"),
    (dict(fc=(4,) * (MAX_LAYERS + 1)), f"ceiling of {MAX_LAYERS}"),
    (dict(out=0), "below 1"),
    (dict(in_shape=(1, 28)), "[channels, height, width]"),
    (dict(in_shape=(1, 2**40, 1)), "ceiling of 16,384 pixels"),
    (dict(fc=(20_000, 20_000)), "parameters, above the ceiling"),
    (dict(family=3), "unknown model family"),
])
def test_plan_refuses_bad_values_naming_them(kwargs, needle):
    values = dict(family="mlp", in_shape=(1, 28, 28), conv=(), fc=(8,), out=10)
    values.update(kwargs)
    with pytest.raises(ConfigError) as exc:
        Plan(**values)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_plan_ceilings_leave_room_for_every_preset():
    assert max(preset(n, (3, 32, 32)).num_parameters() for n in PRESETS) < MAX_PARAMETERS / 10


def test_a_conv_stack_must_keep_a_pixel():
    with pytest.raises(ConfigError, match="too small"):
        Plan("lenet5", (1, 8, 8), (3, 4), (8,), 10)  # 8 -> 4 -> 2 -> 0
    Plan("lenet5", (1, 16, 16), (3, 4), (8,), 10)  # 16 -> 6 -> 1: fine


def test_plan_from_dict_is_strict():
    good = preset("lenet5").to_dict()
    assert Plan.from_dict(good) == preset("lenet5")
    for bad, needle in [([1], "JSON object"), ({"family": "mlp"}, "lacks in_shape"),
                        ({**good, "fc": [500.5]}, "500.5")]:
        with pytest.raises(ConfigError, match=needle):
            Plan.from_dict(bad)


def test_head_refuses_bad_values():
    for bad, needle in [({"kind": "llr", "num_classes": 10.5}, "whole number"),
                        ({"kind": "llr", "num_classes": MAX_CLASSES + 1}, "65,536"),
                        ({"kind": "llr"}, "keys"),
                        ({"kind": "llr", "num_classes": 3, "llr_target": "big"}, "positive"),
                        ({"kind": "llr-code", "num_classes": 3, "code": [[0], [1, 1]]},
                         "K x M")]:
        with pytest.raises(ConfigError, match=needle):
            Head.from_dict(bad)
    assert Head.from_dict(Head("llr-code", 5).to_dict()).code.shape == (5, 3)


# ----------------------------------------------------------------------- writing as a unit


def test_save_load_round_trip_leaves_no_partial(tmp_path):
    d = _save(tmp_path / "s", masks={"fc1.weight": torch.rand(6, 64) > 0.5})
    snap = snapshot.load(d)
    assert snap.plan == PLAN and snap.masks["fc1.weight"].dtype == torch.bool
    assert sorted(os.listdir(tmp_path)) == ["s"]
    assert ".lock" not in os.listdir(d)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_and_directory_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        d = _save(tmp_path / "s", masks={"fc1.weight": torch.ones(6, 64, dtype=torch.bool)})
    finally:
        os.umask(old)
    for p in (d, *d.iterdir()):
        want = (0o777 if p.is_dir() else 0o666) & ~umask
        assert stat.S_IMODE(p.stat().st_mode) == want, p.name


def test_another_snapshot_is_replaced_only_with_force_and_then_whole(tmp_path):
    d = _save(tmp_path / "s", seed=0)
    (d / "metrics.jsonl").write_text("{}\n")  # as training leaves it
    with pytest.raises(ConfigError, match="--force"):
        _save(d, seed=1)
    assert snapshot.load(d).config == {"train": {"seed": 0}}
    _save(d, seed=1, force=True)
    assert snapshot.load(d).config == {"train": {"seed": 1}}
    assert not (d / "metrics.jsonl").exists()  # nothing of the old one is left


def test_the_same_output_is_replaced_without_force(tmp_path):
    d = _save(tmp_path / "s", seed=3)
    _save(d, seed=3)  # a rerun: same config and metrics
    assert snapshot.load(d).config == {"train": {"seed": 3}}


def test_what_is_not_a_snapshot_is_never_replaced(tmp_path):
    (tmp_path / "file").write_text("mine")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "notes.txt").write_text("mine")
    for target, needle in [("file", "not a directory"), ("dir", "not a leanbits snapshot")]:
        with pytest.raises(ConfigError, match=needle):
            _save(tmp_path / target, force=True)
    assert (tmp_path / "dir" / "notes.txt").read_text() == "mine"
    _save(tmp_path / "empty")  # an empty directory is fine
    (tmp_path / "empty2").mkdir()
    _save(tmp_path / "empty2")


def test_a_live_writer_is_not_disturbed_and_a_dead_ones_partial_is_cleared(tmp_path):
    d = tmp_path / "s"
    w = snapshot.SnapshotWriter(d, config={})
    assert w.path == tmp_path / "s.partial"
    with pytest.raises(ConfigError, match=f"pid {os.getpid()}"):
        snapshot.SnapshotWriter(d, config={})
    w._release()  # as if the process had died: the lock goes, the directory stays
    assert w.path.is_dir()
    _save(d)
    assert not w.path.exists() and snapshot.load(d).plan == PLAN


def test_an_aborted_writer_leaves_the_old_snapshot(tmp_path):
    d = _save(tmp_path / "s", seed=0)
    with pytest.raises(RuntimeError):
        with snapshot.SnapshotWriter(d, config={}, force=True) as w:
            snapshot.write(w.path, _model(1), PLAN, HEAD, {"train": {"seed": 1}})
            raise RuntimeError("crash")
    assert not w.path.exists()
    assert snapshot.load(d).config == {"train": {"seed": 0}}


def test_a_partial_directory_of_someone_else_is_refused(tmp_path):
    (tmp_path / "s.partial").mkdir()
    (tmp_path / "s.partial" / "data.csv").write_text("1,2\n")
    with pytest.raises(ConfigError, match="not left by leanbits"):
        _save(tmp_path / "s")
    assert (tmp_path / "s.partial" / "data.csv").is_file()


# ----------------------------------------------------------------------- train, unpack


def test_training_writes_into_the_partial_directory_until_done(tmp_path, tiny_splits):
    out = tmp_path / "run"
    seen = []

    def log(_line):
        seen.append((out.exists(), paths.metrics_log(out.with_name("run.partial")).is_file()))

    train(DataConfig(), _cfg(), tiny_splits, out, progress=False, log=log)
    assert seen == [(False, True), (False, True)]
    assert len(paths.metrics_log(out).read_text().splitlines()) == 2
    assert not out.with_name("run.partial").exists()


def test_training_over_another_snapshot_needs_force(tmp_path, tiny_splits):
    out = tmp_path / "run"
    train(DataConfig(), _cfg(), tiny_splits, out, progress=False, log=lambda _l: None)
    train(DataConfig(), _cfg(), tiny_splits, out, progress=False, log=lambda _l: None)  # rerun
    with pytest.raises(ConfigError, match="--force"):
        train(DataConfig(), _cfg(fc=(8,)), tiny_splits, out, progress=False,
              log=lambda _l: None)
    assert snapshot.load(out).plan.fc == (16,)
    train(DataConfig(), _cfg(fc=(8,)), tiny_splits, out, progress=False, log=lambda _l: None,
          force=True)
    assert snapshot.load(out).plan.fc == (8,)


KILLED_TRAIN = """
import os, signal, sys
sys.path.insert(0, sys.argv[2])
from conftest import make_tiny_splits
from leanbits.data import DataConfig
from leanbits.train import TrainConfig, train

def log(line):
    os.kill(os.getpid(), signal.SIGKILL)  # killed -9 after the first epoch

cfg = TrainConfig(model="lenet5", conv=(2, 3), fc=(8,), epochs=3, batch_size=64,
                  train_eval_size=0)
train(DataConfig(), cfg, make_tiny_splits(), sys.argv[1], progress=False, log=log, force=True)
"""


def test_kill_9_during_training_never_mixes_old_and_new(tmp_path, tiny_splits):
    out = tmp_path / "run"
    train(DataConfig(), _cfg(), tiny_splits, out, progress=False, log=lambda _l: None)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLED_TRAIN), str(out),
                           str(ROOT / "tests")], capture_output=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched
    assert (tmp_path / "run.partial" / "metrics.jsonl").is_file()  # the dead run's epoch
    assert snapshot.load(out).plan.family == "mlp"
    train(DataConfig(), _cfg(seed=5), tiny_splits, out, progress=False, log=lambda _l: None,
          force=True)
    assert not (tmp_path / "run.partial").exists()
    assert snapshot.load(out).config["train"]["seed"] == 5


def test_nan_loss_keeps_the_last_good_snapshot_as_a_unit(tmp_path, tiny_splits):
    from leanbits.errors import TrainingError

    out = tmp_path / "run"
    with pytest.raises(TrainingError, match=str(out)):
        train(DataConfig(), _cfg(lr=1e12, epochs=3, head="softmax"), tiny_splits, out,
              progress=False, log=lambda _l: None)
    snap = snapshot.load(out)
    assert "non-finite" in snap.metrics["status"]
    assert not (tmp_path / "run.partial").exists()


def test_unpack_over_a_trained_snapshot_needs_force_and_replaces_it_whole(tmp_path, capsys,
                                                                         tiny_splits):
    trained = tmp_path / "trained"
    train(DataConfig(), _cfg(), tiny_splits, trained, progress=False, log=lambda _l: None)
    snap = snapshot.load(trained)
    lbits = tmp_path / "m.lbits"
    lbits.write_bytes(encode(snap.model, snap.plan, snap.head, bits=4, quant="kmeans",
                             index="coded", values="entropy",
                             nonweight_dtype="float16").data)
    assert cli.main(["unpack", str(lbits), "-o", str(trained)]) == 2
    assert "--force" in capsys.readouterr().err
    assert paths.early_weights(trained).is_file()
    assert cli.main(["unpack", str(lbits), "-o", str(trained), "--force"]) == 0
    assert sorted(p.name for p in trained.iterdir()) == [
        "config.toml", "masks.safetensors", "metrics.json", "model.json", "weights.safetensors"]
    assert cli.main(["unpack", str(lbits), "-o", str(trained)]) == 0  # the same output again
    assert json.loads(paths.metrics(trained).read_text())["bits"]["source"] == str(lbits)


def test_load_refuses_a_snapshot_without_weights(tmp_path):
    d = _save(tmp_path / "s")
    paths.weights(d).unlink()
    with pytest.raises(FormatError, match="missing"):
        snapshot.load(d)


def test_an_interrupted_training_leaves_the_output_as_it_was(tmp_path, tiny_splits):
    out = tmp_path / "run"
    train(DataConfig(), _cfg(), tiny_splits, out, progress=False, log=lambda _l: None)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def interrupt(_line):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(DataConfig(), _cfg(seed=9), tiny_splits, out, progress=False, log=interrupt,
              force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not (tmp_path / "run.partial").exists()
    train(DataConfig(), _cfg(seed=9), tiny_splits, out, progress=False, log=lambda _l: None,
          force=True)  # no lock left behind
