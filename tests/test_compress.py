"""``leanbits compress`` / :func:`leanbits.compress`: validation-only choice, the file and
its account, resume, budget and bad requirements."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from conftest import Part, make_tiny_splits

import leanbits
from leanbits import cli as main_cli
from leanbits import snapshot
from leanbits.bits import evaluate_lbits, unpack
from leanbits.compression import CompressConfig, check_target, quantizer_grid
from leanbits.compression import run as compress_run
from leanbits.compression import search as compress_search
from leanbits.errors import ConfigError, PruneError
from leanbits.heads import Head
from leanbits.models import Plan, build
from leanbits.prune import train_masked, variational

PLAN = Plan("mlp", (1, 8, 8), (), (24, 16), 10)
HEAD = Head("softmax", 10)
CFG = CompressConfig(methods=("finetune",), bits=(2, 4), search_lo=0.3, search_hi=0.95,
                     search_tol=0.1, levels=2, budget=20, finetune_epochs=1, batch_size=32,
                     codebook_epochs=(0, 1), codebook_lr=1e-3, quants=("kmeans", "ecsq"),
                     rate_lambdas=(0.05,), nonweight_dtypes=("float16", "int8"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    splits = make_tiny_splits(256, 128, 128, shape=PLAN.in_shape, noise=0.7)
    torch.manual_seed(0)
    model = build(PLAN)
    train_masked(model, None, (splits.train.x, splits.train.y), HEAD.loss, epochs=4, lr=1e-2,
                 batch_size=32)
    d = tmp_path_factory.mktemp("snap")
    snapshot.save(d, model, PLAN, HEAD, {"data": {"dataset": "tiny"}}, {"val_acc": 0.0})
    return snapshot.load(d), splits


def _compress(snap, splits, **kw):
    kw.setdefault("max_drop", 0.05)
    return leanbits.compress(snap.model, splits, HEAD.loss, config=kw.pop("config", CFG),
                             plan=PLAN, head=HEAD, progress=False, **kw)


def test_choice_is_made_on_validation_only(trained):
    snap, splits = trained
    first = _compress(snap, splits)
    g = torch.Generator().manual_seed(1)
    shuffled = dataclasses.replace(
        splits, test=Part(splits.test.x, splits.test.y[torch.randperm(128, generator=g)]))
    second = _compress(snap, shuffled)
    assert second.chosen == first.chosen
    assert second.data == first.data
    assert second.test_acc != first.test_acc  # the test split was read - after the choice
    assert first.val_acc >= first.required_val_acc
    # the winner is the smallest passing candidate of those scored
    passing = [c for c in first.candidates if c.val_acc >= first.required_val_acc]
    assert first.chosen.total_bits == min(c.total_bits for c in passing)
    assert len({c.settings["bits"] for c in first.candidates}) == 2
    # codebook fine-tuning keeps codes and codebook sizes: the same bits as without it
    def setting(c):
        return (c.sparsity, *sorted((k, v) for k, v in c.settings.items()
                                    if k != "codebook_epochs"))

    plain = {setting(c): c.total_bits for c in first.candidates
             if c.settings["codebook_epochs"] == 0}
    tuned = [c for c in first.candidates if c.settings["codebook_epochs"] == 1]
    assert tuned and all(plain[setting(c)] == c.total_bits for c in tuned)
    # the grid holds ECSQ and int8 non-weights, each scored
    assert {c.settings["quant"] for c in first.candidates} == {"kmeans", "ecsq"}
    assert {c.settings["nonweight_dtype"] for c in first.candidates} == {"float16", "int8"}
    assert first.chosen.sparsity >= CFG.search_lo


def test_file_size_is_its_account_and_decoded_accuracy_is_reported(trained, tmp_path):
    snap, splits = trained
    out = tmp_path / "small.lbits"
    r = _compress(snap, splits, output=out)
    assert out.stat().st_size == r.account.total_bytes == len(r.data)
    assert 32 * r.account.dense_float32_bits // 32 / r.account.total_bits == pytest.approx(
        r.compression)
    report = evaluate_lbits(out, splits)
    assert report["test_acc"] == r.test_acc and report["val_acc"] == r.val_acc
    assert unpack(out).account.total_bits == r.account.total_bits
    assert not (tmp_path / "small.lbits.partial").exists()  # work dir removed after success
    assert r.weights_kept == pytest.approx(r.weights / r.nonzero)


def test_interrupted_search_resumes_without_redoing_work(trained, tmp_path, monkeypatch):
    snap, splits = trained
    calls: list[float] = []
    real = compress_search.run_method

    def counting(model, method, sparsity, *a, **kw):
        calls.append(sparsity)
        if stop_after is not None and len(calls) > stop_after:
            raise KeyboardInterrupt
        return real(model, method, sparsity, *a, **kw)

    monkeypatch.setattr(compress_search, "run_method", counting)
    stop_after: int | None = None
    whole = _compress(snap, splits, output=tmp_path / "whole.lbits")
    total = len(calls)
    assert total >= 3

    calls.clear()
    stop_after = 2
    out = tmp_path / "resumed.lbits"
    with pytest.raises(KeyboardInterrupt):
        _compress(snap, splits, output=out)
    assert not out.exists() and (tmp_path / "resumed.lbits.partial").is_dir()
    calls.clear()
    stop_after = None
    resumed = _compress(snap, splits, output=out)
    assert len(calls) == total - 2  # the two finished runs were read back, not redone
    assert resumed.reused >= 2
    assert resumed.chosen == whole.chosen and out.read_bytes() == whole.data
    assert resumed.epochs == whole.epochs


def test_stale_work_dir_of_other_settings_is_not_used(trained, tmp_path):
    snap, splits = trained
    work = tmp_path / "work"
    a = _compress(snap, splits, work_dir=work)
    b = _compress(snap, splits, work_dir=work, max_drop=0.2)
    assert b.reused == 0 and b.required_val_acc < a.required_val_acc


def test_budget_bounds_the_backprop_epochs(trained):
    snap, splits = trained
    r = _compress(snap, splits, config=dataclasses.replace(CFG, budget=2))
    assert r.budget_exhausted and r.epochs <= 2


@pytest.mark.parametrize("kw", [
    {"max_drop": -0.01}, {"target_accuracy": 1.5}, {"max_drop": 0.1, "target_accuracy": 0.9},
    {}, {"max_drop": "abc"}, {"target_accuracy": float("nan")},
])
def test_bad_requirements_are_refused(kw):
    with pytest.raises(ConfigError):
        check_target(**kw)


def test_api_refuses_bad_requirement_before_work(trained):
    snap, splits = trained
    with pytest.raises(ConfigError, match="exactly one"):
        leanbits.compress(snap.model, splits, HEAD.loss)


@pytest.fixture
def fake_data(trained, monkeypatch):
    monkeypatch.setattr(compress_run, "snapshot_data", lambda config, **kw: trained[1])


@pytest.mark.parametrize("flags", [
    ["--target-accuracy", "1.5"], ["--max-drop", "-0.1"], [],
    ["--max-drop", "0.01", "--target-accuracy", "0.9"], ["--max-drop", "lots"],
])
def test_cli_bad_targets_exit_2_with_one_line(trained, fake_data, tmp_path, capsys, flags):
    snap, _ = trained
    out = tmp_path / "x.lbits"
    rc = main_cli.main(["compress", str(snap.path), "-o", str(out), *flags])
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists()
    assert len(err.strip().splitlines()) == 1 and err.startswith("leanbits: error:")


def test_cli_writes_the_file_and_prints_its_decoded_test_accuracy(trained, fake_data, tmp_path,
                                                                  capsys):
    snap, splits = trained
    out = tmp_path / "cli.lbits"
    args = ["compress", str(snap.path), "-o", str(out), "--max-drop", "0.05", "--bits", "2,4",
            "--search-lo", "0.3", "--search-hi", "0.95", "--search-tol", "0.1",
            "--finetune-epochs", "1", "--batch-size", "32", "--budget", "20"]
    assert main_cli.main(args) == 0
    text = capsys.readouterr().out
    assert out.stat().st_size == unpack(out).account.total_bytes
    test_acc = evaluate_lbits(out, splits)["test_acc"]
    assert f"test accuracy of the decoded file: {test_acc:.4f}" in text
    assert text.count("test accuracy") == 1
    assert "values" in text and "positions" in text  # the per-part breakdown
    assert main_cli.main([*args, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["test_acc"] == test_acc and printed["file_bytes"] == out.stat().st_size


def test_unknown_method_is_refused_before_work(trained):
    snap, splits = trained
    with pytest.raises(ConfigError, match="unknown pruning method"):
        _compress(snap, splits, config=dataclasses.replace(CFG, methods=("bogus",)))


def test_a_search_killed_inside_the_variational_training_resumes_it(trained, tmp_path,
                                                                       monkeypatch):
    from leanbits.loop import Hook

    snap, splits = trained
    cfg = dataclasses.replace(CFG, methods=("sparse-vd",), vd_epochs=3, vd_finetune_epochs=1,
                              vd_warmup_epochs=1, budget=40, codebook_epochs=(0,))
    ref = _compress(snap, splits, config=cfg, output=tmp_path / "ref.lbits")
    ran: list[int] = []
    real_fit = variational.fit

    class Watch(Hook):
        def __init__(self, stop_at):
            self.stop_at = stop_at

        def after_epoch(self, state):
            ran.append(state.epoch)
            if state.epoch == self.stop_at:
                raise KeyboardInterrupt

    def watched(stop_at):
        def run(*a, **kw):
            if kw.get("checkpoint") is not None:  # the variational training
                a = (*a[:5], [*a[5], Watch(stop_at)])
            return real_fit(*a, **kw)
        return run

    checkpoints = []
    real_checkpoint = compress_search.EpochCheckpoint
    monkeypatch.setattr(compress_search, "EpochCheckpoint",
                        lambda *a, **kw: checkpoints.append(real_checkpoint(*a, **kw))
                        or checkpoints[-1])
    out = tmp_path / "vd.lbits"
    monkeypatch.setattr(variational, "fit", watched(3))
    with pytest.raises(KeyboardInterrupt):
        _compress(snap, splits, config=cfg, output=out)
    assert ran == [1, 2, 3] and checkpoints[-1].path.is_file()
    ran.clear()
    monkeypatch.setattr(variational, "fit", watched(0))
    again = _compress(snap, splits, config=cfg, output=out)
    assert ran == [3]  # epochs 1 and 2 came from the checkpoint
    assert again.chosen == ref.chosen and again.data == ref.data and again.epochs == ref.epochs
    assert not checkpoints[-1].path.exists()  # the finished training replaced it


def test_the_variational_training_shows_its_epochs(trained, capsys):
    snap, splits = trained
    cfg = dataclasses.replace(CFG, methods=("sparse-vd",), vd_epochs=3, vd_finetune_epochs=1,
                              vd_warmup_epochs=1, budget=40, codebook_epochs=(0,))
    leanbits.compress(snap.model, splits, HEAD.loss, config=cfg, plan=PLAN, head=HEAD,
                      progress=True, max_drop=0.05)
    err = capsys.readouterr().err
    assert all(f"variational={e}/3" in err for e in (1, 2, 3))  # hours on LeNet-5


def test_vd_search_scores_the_whole_grid_at_the_threshold_when_the_gentlest_misses(
        trained, monkeypatch):
    snap, splits = trained
    cfg = dataclasses.replace(CFG, methods=("sparse-vd",), vd_epochs=2, vd_finetune_epochs=1,
                              vd_warmup_epochs=1, budget=40, codebook_epochs=(0,),
                              vd_search=True, search_lo=0.0)
    grid = quantizer_grid(cfg)
    real_score = compress_search.Search.score
    first = []

    def score(self, method, sparsity, settings):
        cand = real_score(self, method, sparsity, settings)
        first[:] = first or [(sparsity, settings)]
        if cand is not None and (sparsity, settings) == first[0]:
            # the gentlest setting misses at the threshold's level (the others need not)
            self.candidates[self.candidates.index(cand)] = cand = dataclasses.replace(
                cand, val_acc=0.0)
        return cand

    monkeypatch.setattr(compress_search.Search, "score", score)
    r = _compress(snap, splits, config=cfg)
    floor, gentle = first[0]
    assert gentle == grid[0]  # the bisection starts at the threshold with the gentlest
    assert {c.sparsity for c in r.candidates} == {floor}  # nothing sparser was searched
    assert sorted(map(str, (c.settings for c in r.candidates))) == sorted(map(str, grid))
    assert r.chosen.sparsity == floor and r.chosen.settings != gentle
    assert r.val_acc >= r.required_val_acc


def test_vd_search_bisects_one_variational_training(trained, tmp_path, monkeypatch):
    snap, splits = trained
    cfg = dataclasses.replace(CFG, methods=("sparse-vd",), vd_epochs=2, vd_finetune_epochs=1,
                              vd_warmup_epochs=1, budget=40, codebook_epochs=(0,))
    trainings = []
    real = compress_search.train_variational

    def counting(*a, **kw):
        trainings.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(compress_search, "train_variational", counting)
    monkeypatch.setattr(variational, "train_variational", counting)  # what sparse_vd calls
    once = _compress(snap, splits, config=cfg)
    assert once.chosen.method == "sparse-vd" and {c.sparsity for c in once.candidates} == {0.0}
    assert len(trainings) == 1

    trainings.clear()
    searched = dataclasses.replace(cfg, vd_search=True, search_lo=0.0)
    r = _compress(snap, splits, config=searched)
    assert len(trainings) == 1  # one training, ranked to every level
    levels = {c.sparsity for c in r.candidates}
    assert len(levels) >= 3
    # the bisection starts at the threshold's own level, which is plain sparse-vd's file
    # (same training, same mask, same fine-tuning), and never goes below it
    gentle = once.candidates[0].settings
    floor = [c for c in r.candidates if c.sparsity == min(levels) and c.settings == gentle]
    plain = [c for c in once.candidates if c.settings == gentle]
    assert len(floor) == 1 and len(plain) == 1
    assert (floor[0].total_bits, floor[0].val_acc, floor[0].nonzero) == (
        plain[0].total_bits, plain[0].val_acc, plain[0].nonzero)
    # a search_lo above the threshold's level is the floor instead
    above = _compress(snap, splits, config=dataclasses.replace(searched, search_lo=0.6))
    assert min(c.sparsity for c in above.candidates) == 0.6
    assert r.val_acc >= r.required_val_acc and r.chosen.sparsity in levels
    # the training's epochs count once, each level's fine-tuning once
    assert r.epochs == cfg.vd_epochs + len(levels) * cfg.vd_finetune_epochs
    # interrupted after the training and two levels, a resumed search reads them back
    # (the training is not run again) and makes the same choice with the same epochs
    finished = []
    real_finish = compress_search.finish_variational

    def finishing(*a, **kw):
        if len(finished) == 2:
            raise KeyboardInterrupt
        finished.append(1)
        return real_finish(*a, **kw)

    monkeypatch.setattr(compress_search, "finish_variational", finishing)
    trainings.clear()
    out = tmp_path / "vd.lbits"
    with pytest.raises(KeyboardInterrupt):
        _compress(snap, splits, config=searched, output=out)
    assert len(trainings) == 1
    monkeypatch.setattr(compress_search, "finish_variational", real_finish)
    trainings.clear()
    again = _compress(snap, splits, config=searched, output=out)
    assert trainings == [] and again.chosen == r.chosen and again.data == r.data
    assert again.epochs == r.epochs and again.reused >= 2
    # the budget counts the training before the first level: one epoch short runs none
    trainings.clear()
    short = dataclasses.replace(searched, budget=cfg.vd_epochs + cfg.vd_finetune_epochs - 1)
    with pytest.raises(PruneError, match="budget"):
        _compress(snap, splits, config=short)
    assert trainings == []
