"""Sparsity search, snapshot pruning reports, profiles and the prune/profile commands."""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest
import torch
from conftest import Part, make_tiny_splits

from leanbits import data, paths, snapshot
from leanbits.cli import prune as prune_cli
from leanbits.config import to_dict
from leanbits.errors import PruneError
from leanbits.heads import Head
from leanbits.models import Plan, build
from leanbits.prune import (
    ProfileConfig,
    PruneConfig,
    profile,
    prune_snapshot,
    search_sparsity,
    train_masked,
)
from leanbits.results import Row, profile_rows
from leanbits.train import TrainConfig

PLAN = Plan("mlp", (1, 8, 8), (), (16, 12), 10)
HEAD = Head("softmax", 10)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny trained snapshot on disk (with early weights for rewinding) and its data."""
    splits = make_tiny_splits(256, 64, 64, shape=PLAN.in_shape)
    torch.manual_seed(0)
    model = build(PLAN)
    early = {k: v.clone() for k, v in model.state_dict().items()}
    train_masked(model, None, (splits.train.x, splits.train.y), HEAD.loss, epochs=3, lr=1e-2,
                 batch_size=32)
    d = tmp_path_factory.mktemp("snap")
    # what it was trained with: rewinding finishes this schedule (3 epochs from epoch 0)
    train = to_dict(TrainConfig(epochs=3, rewind_epoch=0, optimizer="adam", lr=1e-2,
                                batch_size=32, schedule="none"))
    snapshot.save(d, model, PLAN, HEAD, {"data": {"dataset": "tiny"}, "train": train},
                  {"val_acc": 0.0})
    snapshot.save_tensors(paths.early_weights(d), early)
    return snapshot.load(d), splits


# ----------------------------------------------------------------------------- search
def step(boundary: float, calls: list[float] | None = None):
    def acc(s: float) -> float:
        if calls is not None:
            calls.append(s)
        return 0.99 if s <= boundary else 0.5 - s * 0.1

    return acc


@pytest.mark.parametrize("boundary", [0.1234, 0.5, 0.873, 0.98])
def test_bisection_returns_the_sparsest_level_meeting_the_target(boundary):
    calls: list[float] = []
    r = search_sparsity(step(boundary, calls), target=0.9, tol=1e-3)
    assert boundary - 1e-3 <= r.sparsity <= boundary
    assert r.accuracy >= 0.9 and r.required == 0.9
    assert len(calls) == len(set(calls)) <= 2 + 10  # log2(0.999 / 1e-3) steps
    # relative requirement: at most 0.05 below dense
    r2 = search_sparsity(step(boundary), max_drop=0.05, dense_acc=0.99, tol=1e-3)
    assert boundary - 1e-3 <= r2.sparsity <= boundary


def test_search_edges_and_errors():
    assert search_sparsity(lambda s: 1.0, target=0.5, hi=0.95).sparsity == 0.95
    r = search_sparsity(lambda s: 1.0 - s, max_drop=0.25, tol=1e-4)  # dense from f(0)
    assert 0.2499 <= r.sparsity <= 0.25
    with pytest.raises(PruneError, match="even sparsity"):
        search_sparsity(lambda s: 0.1, target=0.5)
    with pytest.raises(PruneError, match="exactly one"):
        search_sparsity(lambda s: 1.0)
    with pytest.raises(PruneError, match="exactly one"):
        search_sparsity(lambda s: 1.0, target=0.5, max_drop=0.1)
    with pytest.raises(PruneError):
        search_sparsity(lambda s: 1.0, target=0.5, hi=1.0)


# ------------------------------------------------------------------ snapshot reporting
def test_prune_snapshot_reports_everything_consistently(trained):
    snap, splits = trained
    cfg = PruneConfig(refit_epochs=1, batch_size=64)
    before = {k: v.clone() for k, v in snap.model.state_dict().items()}
    result, rep = prune_snapshot(snap, "refit", 0.7, splits, cfg)
    assert all(torch.equal(before[k], v) for k, v in snap.model.state_dict().items())
    total = 64 * 16 + 16 * 12 + 12 * 10
    assert rep["weights"] == total
    assert rep["nonzero_weights"] == total - round(0.7 * total)
    assert abs(rep["sparsity"] - round(0.7 * total) / total) < 1e-12
    assert rep["effective_connections"] <= rep["nonzero_weights"]
    assert sum(rep["connections"].values()) == rep["effective_connections"]
    assert set(rep["live_units"]) == {"fc1", "fc2", "out"} and rep["live_units"]["out"] == 10
    assert rep["macs_dense"] == total and rep["macs_sparse"] == rep["nonzero_weights"]
    assert rep["macs_effective"] == rep["effective_connections"]
    assert rep["backprop_epochs"] == 1 and rep["wall_time_s"] > 0
    for k in ("val_acc", "test_acc"):
        assert 0.0 <= rep[k] <= 1.0
        assert rep["compact"][k] == rep[k]  # the compact model is the same function
    assert rep["compact"]["nonzero_weights"] == rep["effective_connections"]
    assert rep["dense"]["val_acc"] > 0.5  # the snapshot learned something
    assert result.config["prune"]["method"] == "refit"
    json.dumps(rep)  # JSON-able
    for k, m in result.masks.items():
        assert torch.all(result.model.state_dict()[k][~m] == 0)


def test_profile_gives_one_row_per_method_and_level(trained):
    snap, splits = trained
    cfg = PruneConfig(refit_epochs=1, finetune_epochs=1, batch_size=128)
    rows = profile(snap, ["none", "refit", "rewind"], [0.5, 0.9], splits, cfg)
    assert [(r.axes["method"], r.axes["sparsity"]) for r in rows] == [
        ("dense", 0.0), ("none", 0.5), ("none", 0.9), ("refit", 0.5), ("refit", 0.9),
        ("rewind", 0.5), ("rewind", 0.9)]
    assert [r.point for r in rows] == list(range(7))
    by = {(r.axes["method"], r.axes["sparsity"]): r for r in rows}
    assert by[("none", 0.9)].nonzero_weights < by[("none", 0.5)].nonzero_weights
    assert by[("none", 0.5)].nonzero_weights == by[("refit", 0.5)].nonzero_weights
    assert by[("none", 0.5)].metrics["prune"]["backprop_epochs"] == 0
    # rewinding to epoch 0 retrains the whole 3-epoch schedule, at its rate
    assert by[("rewind", 0.5)].metrics["prune"]["backprop_epochs"] == 3
    assert by[("rewind", 0.5)].metrics["prune"]["lr"] == 1e-2
    assert by[("none", 0.5)].method_seconds > 0 and rows[0].method_seconds is None
    assert by[("none", 0.5)].method_seconds == by[("none", 0.5)].metrics["prune"]["wall_time_s"]
    assert by[("refit", 0.9)].method == "refit" and rows[0].method is None
    assert by[("refit", 0.9)].settings["prune"]["refit_epochs"] == 1


# ------------------------------------------------------------------------------- CLI
def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="leanbits")
    prune_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def fake_data(trained, monkeypatch):
    seen = []

    def data_for_snapshot(config, limit_train=None, source=None):
        seen.append(config["data"]["dataset"])
        return trained[1]

    # the command imports snapshot_data from leanbits.data when it runs
    monkeypatch.setattr(data, "snapshot_data", data_for_snapshot)
    return seen


def test_prune_command_writes_snapshot_compact_and_report(trained, fake_data, tmp_path, capsys):
    snap, _ = trained
    out = tmp_path / "pruned"
    rc = run_cli(["prune", str(snap.path), "--method", "none", "--sparsity", "0.8",
                  "--out", str(out), "--json"])
    assert rc == 0 and fake_data == ["tiny"]
    printed = json.loads(capsys.readouterr().out)
    report = json.loads(paths.report(out).read_text())
    assert printed["nonzero_weights"] == report["nonzero_weights"]
    pruned = snapshot.load(out)
    small = snapshot.load(out / "compact")
    assert pruned.masks is not None and pruned.config["prune"]["sparsity"] == 0.8
    assert pruned.config["data"]["dataset"] == "tiny"
    assert small.plan.fc == tuple(report["compact"]["fc"])
    x = torch.randn(8, *PLAN.in_shape)
    with torch.no_grad():
        assert torch.allclose(small.model(x), pruned.model(x), atol=1e-5, rtol=0)
    # same settings again: reused, not recomputed
    assert run_cli(["prune", str(snap.path), "--method", "none", "--sparsity", "0.8",
                    "--out", str(out), "--json"]) == 0
    assert fake_data == ["tiny"]
    assert "already holds" in capsys.readouterr().err


def test_prune_command_searches_for_a_target_accuracy(trained, fake_data, tmp_path, capsys):
    snap, splits = trained
    out = tmp_path / "searched"
    rc = run_cli(["prune", str(snap.path), "--method", "none", "--max-drop", "0.05",
                  "--search-tol", "0.05", "--out", str(out)])
    assert rc == 0
    report = json.loads(paths.report(out).read_text())
    assert report["val_acc"] >= report["search"]["required_val_acc"]
    assert report["search"]["evaluations"]
    assert "validation accuracy" in capsys.readouterr().out


def test_profile_command_writes_json_and_plot(trained, fake_data, tmp_path, capsys):
    snap, _ = trained
    out = tmp_path / "prof"
    rc = run_cli(["profile", str(snap.path), "--methods", "none,refit", "--sparsities",
                  "0.5,0.9", "--refit-epochs", "1", "--out", str(out)])
    assert rc == 0
    doc = json.loads((out / "profile.json").read_text())
    assert len(profile_rows(doc)) == 1 + 2 * 2 and doc["source"] == str(snap.path.resolve())
    assert (out / "profile.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "nonzero_weights" in capsys.readouterr().out
    assert run_cli(["profile", str(snap.path), "--methods", "none", "--sparsities", "0.5",
                    "--out", str(out), "--no-plot", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [r["axes"]["method"] for r in printed["rows"]] == ["dense", "none"]
    with pytest.raises(PruneError, match="unknown method"):
        run_cli(["profile", str(snap.path), "--methods", "none,bogus", "--out", str(out)])


def test_profile_rows_carry_the_full_measurements(trained):
    snap, splits = trained
    rows = profile(snap, ["none"], [0.6], splits, PruneConfig())
    assert set(rows[0].metrics) == {"train"} and set(rows[1].metrics) == {"prune"}
    for row in rows:
        (m,) = row.metrics.values()
        assert {"weights", "connections", "live_units", "units", "macs_dense"} <= set(m)
        assert set(row.layer_sparsity) == set(m["connections"])
        assert row.settings["data"] == snap.config["data"]
    assert rows[0].nonzero_weights == rows[0].weights  # the dense snapshot
    assert rows[1].sparsity == pytest.approx(0.6, abs=0.01)
    assert rows[1].params == rows[1].metrics["prune"]["compact"]["params"]  # compact rebuild
    assert [Row.from_dict(json.loads(json.dumps(r.to_dict()))) for r in rows] == rows


def test_profile_config_keeps_per_run_fields_unset():
    cfg = ProfileConfig(methods=("refit",), sparsities=(0.5,), refit_epochs=3)
    assert cfg.prune_config() == PruneConfig(refit_epochs=3)
    with pytest.raises(PruneError, match="sets max_drop per run"):
        ProfileConfig(max_drop=0.01).prune_config()


# -------------------------------------------------- methods that train for sparsity
NEW_METHODS = {
    "gradual": ["--gradual-epochs", "2", "--gradual-frequency", "2", "--sparsity", "0.9"],
    "sparse-vd": ["--vd-epochs", "2", "--vd-lr", "0.01"],
    "structured": ["--finetune-epochs", "1", "--sparsity", "0.7"],
}


@pytest.mark.parametrize("method", sorted(NEW_METHODS))
def test_new_methods_end_as_snapshots_that_bits_and_pack_accept(method, trained, fake_data,
                                                                tmp_path, capsys):
    from leanbits.bits import load
    from leanbits.cli import main

    snap, _ = trained
    out = tmp_path / method
    rc = run_cli(["prune", str(snap.path), "--method", method, *NEW_METHODS[method],
                  "--batch-size", "64", "--out", str(out), "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["method"] == method and report["backprop_epochs"] >= 1
    assert report["sparsity_requested"] == (None if method == "sparse-vd" else
                                            float(NEW_METHODS[method][-1]))
    pruned = snapshot.load(out)
    assert pruned.masks is not None and pruned.config["prune"]["method"] == method
    kept = sum(int(m.sum()) for m in pruned.masks.values())
    assert kept == report["effective_connections"] < report["weights"]
    # the ordinary snapshot tools take it unchanged: bits counts it, pack writes it
    assert main(["bits", str(out), "--json"]) == 0
    account = json.loads(capsys.readouterr().out)
    lbits = tmp_path / f"{method}.lbits"
    assert main(["pack", str(out), "-o", str(lbits), "--json"]) == 0
    capsys.readouterr()
    assert lbits.stat().st_size == -(-account["total_bits"] // 8)  # whole bytes
    decoded = load(lbits)
    x = torch.randn(4, *PLAN.in_shape)
    with torch.no_grad():
        assert decoded(x).shape == (4, 10)


def test_registry_covers_every_method_and_dispatches(trained):
    from leanbits.prune.baselines import METHODS
    from leanbits.prune.methods import REGISTRY, run_method

    assert tuple(REGISTRY) == METHODS  # the config's choices and the table agree
    snap, splits = trained
    data = (splits.train.x, splits.train.y)
    cfg = PruneConfig(gradual_epochs=1, gradual_frequency=1, batch_size=64, sparsity=0.2)
    res = run_method(snap.model, "gradual", 0.6, data, HEAD.loss, cfg)  # 0.6 wins over 0.2
    n = sum(m.numel() for m in res.masks.values())
    assert res.record["method"] == "gradual"
    assert res.record["schedule"][-1][1] == pytest.approx(round(0.6 * n) / n)


def test_sparse_vd_refuses_a_sparsity_search(trained, fake_data, tmp_path):
    snap, _ = trained
    with pytest.raises(PruneError, match="its own sparsity"):
        run_cli(["prune", str(snap.path), "--method", "sparse-vd", "--max-drop", "0.01",
                 "--out", str(tmp_path / "x")])


def test_profile_runs_an_own_sparsity_method_once(trained):
    snap, splits = trained
    rows = profile(snap, ["sparse-vd", "none"], [0.5, 0.9], splits,
                   PruneConfig(vd_epochs=1, batch_size=64))
    assert [r.axes["method"] for r in rows] == ["dense", "sparse-vd", "none", "none"]
    assert [r.axes["sparsity"] for r in rows[2:]] == [0.5, 0.9]
    vd = rows[1]
    assert vd.axes["sparsity"] == vd.sparsity  # the level it reached, none was requested
    assert vd.metrics["prune"]["sparsity_requested"] is None


def test_lr_grid_chooses_on_validation_and_reads_test_once(trained):
    snap, splits = trained
    cfg = PruneConfig(finetune_epochs=1, batch_size=64, lr_grid=(0.1, 1.0, 10.0))
    result, rep = prune_snapshot(snap, "finetune", 0.9, splits, cfg)
    assert [g["lr"] for g in rep["lr_grid"]] == pytest.approx([5e-5, 5e-4, 5e-3])
    best = max(rep["lr_grid"], key=lambda g: g["val_acc"])  # the first of equals
    assert rep["lr"] == best["lr"] and rep["val_acc"] == best["val_acc"]
    assert result.config["prune"]["finetune_lr"] == rep["lr"]
    assert rep["backprop_epochs"] == 1 and rep["grid_backprop_epochs"] == 3
    assert 0 < rep["wall_time_s"] < rep["grid_wall_time_s"]
    # the kept run is the run at that rate alone: the grid changes nothing but the rate
    _, alone = prune_snapshot(snap, "finetune", 0.9, splits,
                              PruneConfig(finetune_epochs=1, batch_size=64,
                                          finetune_lr=rep["lr"]))
    assert alone["val_acc"] == rep["val_acc"] and alone["test_acc"] == rep["test_acc"]
    # test labels shuffled: the same choice, the same validation figures
    shuffled = dataclasses.replace(
        splits, test=Part(splits.test.x, splits.test.y[torch.randperm(64)]))
    _, rep2 = prune_snapshot(snap, "finetune", 0.9, shuffled, cfg)
    assert rep2["lr"] == rep["lr"] and rep2["lr_grid"] == rep["lr_grid"]
    # a method that trains nothing runs once
    _, none = prune_snapshot(snap, "none", 0.9, splits, cfg)
    assert "lr_grid" not in none and none["lr"] is None


def test_lr_grid_scales_the_rewind_rate_of_the_original_training(trained):
    snap, splits = trained
    cfg = PruneConfig(lr_grid=(0.5, 1.0))
    _, rep = prune_snapshot(snap, "rewind", 0.5, splits, cfg)
    assert [g["lr"] for g in rep["lr_grid"]] == pytest.approx([5e-3, 1e-2])
    assert rep["grid_backprop_epochs"] == 6 and rep["rewind_epoch"] == 0
