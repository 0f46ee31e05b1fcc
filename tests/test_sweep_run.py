"""Running sweeps: shared stages run once, resume after a crash, executors agree, CLI."""

import copy
import json

import pytest
from conftest import untimed_results as _untimed

from leanbits import paths
from leanbits.cli import main
from leanbits.results import Row, profile_rows
from leanbits.sweep import stages
from leanbits.sweep.experiment import parse_experiment
from leanbits.sweep.pick import pick_point, reference_accuracy
from leanbits.sweep.run import StageFailed, load_results, run_experiment

TINY = {
    "name": "tiny",
    "data": {"dataset": "synthetic", "limit_train": 96, "val_size": 48},
    "train": {"fc": [8], "epochs": 1, "batch_size": 32, "lr": 0.1, "train_eval_size": 32,
              "vary": {"head": ["softmax", "llr"]}},
    "prune": {"refit_epochs": 1, "compensation_examples": 64,
              "vary": {"sparsity": [0.5, 0.8]}},
    "bits": {"vary": {"bits": [2, 4]}},
}


def _exp(raw=None, **sections):
    raw = copy.deepcopy(raw or TINY)
    for k, v in sections.items():
        raw[k] = {**raw.get(k, {}), **v}
    return parse_experiment(raw)


def _run(exp, out, executor="inline", **kw):
    return run_experiment(exp, out, executor, log=lambda _line: None, progress=False, **kw)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of the tiny sweep, shared by the tests that compare to it."""
    out = tmp_path_factory.mktemp("reference")
    summary = _run(_exp(), out)
    return out, summary


def test_each_stage_runs_once_and_rows_are_complete(reference):
    out, summary = reference
    assert summary.ran == {"train": 2, "prune": 4, "bits": 8}
    assert len(summary.executed) == len(set(summary.executed)) == 14
    doc = load_results(out)
    rows = [Row.from_dict(r) for r in doc["rows"]]
    assert rows == summary.rows
    assert len(rows) == 8 and [r.point for r in rows] == list(range(8))
    assert doc["axes"] == ["head", "sparsity", "bits"]
    for r in rows:
        assert 0.0 <= r.val_acc <= 1.0 and 0.0 <= r.test_acc <= 1.0
        assert r.total_bits == sum(v for k, v in r.bits_breakdown.items() if k != "padding")
        assert r.file_bytes * 8 == r.total_bits + r.bits_breakdown["padding"]
        assert r.total_bits - r.bits_breakdown["header"] == sum(
            sum(parts.values()) for parts in r.layer_bits.values())
        assert r.nonzero_weights <= r.weights * (1 - r.axes["sparsity"]) + 1
        assert r.settings["prune"]["sparsity"] == r.axes["sparsity"]
        assert abs(r.sparsity - r.axes["sparsity"]) < 0.01
        assert r.compression == r.dense_bits / r.total_bits
        # one compression definition: the bits stage packed the compact rebuild (fewer
        # parameters), and what `leanbits bits` prints for it is the row's ratio
        account = json.loads(paths.account(out / "stages" / r.stages["bits"]).read_text())
        assert account["params"] <= r.dense_bits // 32 == account["dense_params"]
        assert account["compression"] == pytest.approx(r.compression, rel=1e-12)
        assert set(r.metrics) == {"train", "prune", "bits"}
        assert set(r.layer_sparsity) == set(r.layer_bits)
    lines = (out / "results.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == doc["rows"]
    assert (out / "experiment.toml").is_file()
    assert set(doc["frontier"]) == {"test_acc", "val_acc"} and doc["frontier"]["test_acc"]
    # The copy of the experiment reproduces the same grid.
    from leanbits.sweep.experiment import load_experiment

    again = load_experiment(out / "experiment.toml")
    assert [p.last.key for p in again.points] == [p.last.key for p in _exp().points]


def test_leanbits_bits_prints_the_rows_compression(reference, capsys):
    """`leanbits bits` on a pruned model's compact rebuild divides 32 x the parameters of
    the dense model it came from (not of the rebuild) by the total bits, as the report."""
    out, summary = reference
    r = summary.rows[-1]
    compact = paths.compact(out / "stages" / r.stages["prune"])
    assert main(["bits", str(compact), "--bits", str(r.axes["bits"]), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["dense_params"] == r.dense_bits // 32
    assert doc["compression"] == pytest.approx(32 * doc["dense_params"] / doc["total_bits"])
    assert main(["bits", str(compact), "--bits", str(r.axes["bits"])]) == 0
    assert f"compression {doc['compression']:.1f}x = 32 x {doc['dense_params']} " in (
        capsys.readouterr().out)


def test_stage_config_records_the_data_it_used_and_reruns_the_stage(tmp_path):
    """A train or prune stage's config.toml holds every data setting the stage used, the
    data set included (synthetic stages once recorded the default, mnist), and
    `leanbits train --config STAGE/config.toml` retrains the very same model under the
    stage's own name."""
    import torch

    from leanbits import snapshot
    from leanbits.cli.train import SECTIONS
    from leanbits.config import from_sources
    from leanbits.data import DataConfig
    from leanbits.train import TrainConfig

    data = {"dataset": "synthetic", "limit_train": 80, "val_size": 40, "label_noise": 0.1,
            "split_seed": "seed"}
    exp = _exp(data=data, train={"vary": {"seed": [3, 4]}}, prune={"vary": {"sparsity": [0.5]}},
               bits={"vary": {"bits": [4]}})
    _run(exp, tmp_path)
    trained = exp.stages("train")
    assert len(trained) == 2
    for stage in trained:
        used = {**data, "split_seed": stage.config.seed}
        assert stage.data == used
        d = tmp_path / "stages" / stage.relpath
        assert stages.read_stage(d)["data"] == used
        assert snapshot.read_toml(paths.config(d))["data"] == used
        # Read back as `leanbits train --config` reads it: the settings the sweep used.
        assert from_sources(DataConfig, None, paths.config(d), section="data",
                            sections=SECTIONS) == DataConfig(**used)
        assert from_sources(TrainConfig, None, paths.config(d), section="train",
                            sections=SECTIONS) == stage.config
    for stage in exp.stages("prune"):
        recorded = snapshot.read_toml(paths.config(tmp_path / "stages" / stage.relpath))
        assert recorded["data"] == stage.input.data == stage.data
        assert recorded["data"]["dataset"] == "synthetic"

    stage = trained[0]
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the stage ran (one thread per task)
    try:
        assert main(["train", "--config", str(paths.config(tmp_path / "stages" / stage.relpath)),
                     "--runs", str(tmp_path / "again"), "--json"]) == 0
    finally:
        torch.set_num_threads(before)
    again = snapshot.load_tensors(paths.weights(tmp_path / "again" / stage.key))
    first = snapshot.load_tensors(paths.weights(tmp_path / "stages" / stage.relpath))
    assert again.keys() == first.keys()
    assert all(torch.equal(again[k], first[k]) for k in first)


def test_profile_stage_and_pick(tmp_path):
    raw = copy.deepcopy(TINY)
    raw["train"]["vary"] = {"head": ["llr"]}
    raw["profile"] = {"methods": ["none"], "sparsities": [0.5, 0.8], "compensation_examples": 64}
    raw["pick"] = {"max_drop": 0.05}
    exp = parse_experiment(raw)
    assert [s.kind for s in exp.stages("profile")] == ["profile"]
    summary = _run(exp, tmp_path)
    assert summary.ran == {"train": 1, "profile": 1, "prune": 2, "bits": 4}
    doc = load_results(tmp_path)
    rows = summary.rows
    picked = rows[doc["picked"]]
    assert doc["picked"] == summary.picked
    within = [r for r in rows if r.val_acc >= reference_accuracy(r) - 0.05]
    expected = min(within, key=lambda r: r.total_bits) if within else max(
        rows, key=lambda r: r.val_acc)
    assert picked == expected
    assert (tmp_path / "model.lbits").read_bytes() == (
        tmp_path / "stages" / picked.stages["bits"] / "model.lbits").read_bytes()
    (prof,) = (tmp_path / "stages" / "profile").glob("*/profile.json")
    doc = json.loads(prof.read_text())
    prof_rows = profile_rows(doc)
    assert [(r.axes["method"], r.axes["sparsity"]) for r in prof_rows] == [
        ("dense", 0.0), ("none", 0.5), ("none", 0.8)]
    assert all(r.stages == {"train": rows[0].stages["train"],
                            "profile": f"profile/{prof.parent.name}"} for r in prof_rows)
    assert (prof.parent / doc["source"]).resolve() == (
        tmp_path / "stages" / rows[0].stages["train"]).resolve()
    # a rerun reuses everything and picks the same point
    again = _run(exp, tmp_path)
    assert sum(again.ran.values()) == 0 and again.picked == summary.picked


def test_pick_falls_back_to_the_most_accurate_point():
    rows = [Row(point=i, stages={"train": "t", "bits": f"b{i}"}, val_acc=a, total_bits=b,
                metrics={"train": {"val_acc": 0.99}})
            for i, (a, b) in enumerate([(0.90, 100), (0.95, 300), (0.93, 200)])]
    assert pick_point(rows, 0.01) == 1
    assert pick_point(rows, 0.2) == 0
    assert pick_point([Row(val_acc=0.9)], 0.1) is None  # nothing packed


def test_rerun_skips_and_a_changed_setting_reruns_only_its_dependents(reference, tmp_path,
                                                                      monkeypatch):
    out, _ = reference
    calls = []
    for kind in ("train", "prune", "bits"):
        real = getattr(stages, f"_run_{kind}")

        def counting(task, splits, d, real=real, kind=kind):
            calls.append(kind)
            return real(task, splits, d)

        monkeypatch.setattr(stages, f"_run_{kind}", counting)
    root = out / "stages"
    s = _run(_exp(), tmp_path / "a", stage_root=root)
    assert calls == [] and s.ran == {"train": 0, "prune": 0, "bits": 0}
    assert s.skipped == {"train": 2, "prune": 4, "bits": 8}
    assert (tmp_path / "a" / "results.json").read_bytes() == (out / "results.json").read_bytes()

    s = _run(_exp(bits={"values": "fixed"}), tmp_path / "b", stage_root=root)
    assert s.ran == {"train": 0, "prune": 0, "bits": 8} and calls.count("bits") == 8
    calls.clear()
    s = _run(_exp(prune={"refit_epochs": 2}), tmp_path / "c", stage_root=root)
    assert s.ran == {"train": 0, "prune": 4, "bits": 8} and calls.count("train") == 0


def test_interrupted_run_resumes_to_identical_results(reference, tmp_path, monkeypatch):
    ref_out, _ = reference
    exp = _exp()
    out = tmp_path / "run"
    # Every 4-bit bits stage crashes after writing its files, before its marker.
    monkeypatch.setenv(stages.FAIL_ENV, "bits:kmeans-4-")
    with pytest.raises(StageFailed, match="injected failure.*run the same command again"):
        _run(exp, out)
    assert not (out / "results.json").exists() and not (out / "results.jsonl").exists()
    bits_root = out / "stages" / "bits"
    finished = {p.name for p in bits_root.iterdir() if not p.name.startswith(".")}
    partial = [p for p in bits_root.iterdir() if p.name.startswith(".")]
    assert finished and all(not k.startswith("kmeans-4-") for k in finished)
    assert all(stages.is_complete(bits_root / k) for k in finished)
    # The crashed stage left its output only in a partial directory, never marked done.
    assert partial and all((p / "model.lbits").is_file() for p in partial)
    assert not any(stages.is_complete(p) for p in partial)

    monkeypatch.delenv(stages.FAIL_ENV)
    s = _run(exp, out)
    assert s.ran["train"] == 0 and s.ran["prune"] == 0 and s.skipped["bits"] == len(finished)
    assert s.ran["bits"] == 8 - len(finished)
    assert not any(p.name.startswith(".") for p in bits_root.iterdir())
    assert _untimed(out / "results.json") == _untimed(ref_out / "results.json")
    assert _untimed(out / "results.jsonl") == _untimed(ref_out / "results.jsonl")


def test_unmarked_stage_directory_is_rebuilt_not_read(tmp_path):
    exp = _exp(train={"vary": {"head": ["llr"]}}, prune={"vary": {"sparsity": [0.5]}},
               bits={"vary": {"bits": [4]}})
    stage = tmp_path / "stages" / exp.points[0].stages[0].relpath
    stage.mkdir(parents=True)
    (stage / "metrics.json").write_text('{"val_acc": 1.0}')  # looks done, but no marker
    s = _run(exp, tmp_path)
    assert s.ran["train"] == 1
    assert stages.read_stage(stage)["metrics"]["val_acc"] < 1.0
    assert json.loads((stage / "metrics.json").read_text()).get("status") == "complete"


def test_failed_stage_stops_later_levels(tmp_path, monkeypatch):
    monkeypatch.setenv(stages.FAIL_ENV, "train:llr")
    with pytest.raises(StageFailed, match="train stage.*failed") as exc:
        _run(_exp(), tmp_path)
    assert len(exc.value.failures) == 1
    assert not (tmp_path / "stages" / "prune").exists()


def test_local_and_ray_executors_give_identical_results(tmp_path):
    exp = _exp(train={"vary": {"head": ["llr"]}}, bits={"vary": {"bits": [3]}})
    inline = _run(exp, tmp_path / "inline")
    local = _run(exp, tmp_path / "local", "local", jobs=2)
    assert local.ran == inline.ran == {"train": 1, "prune": 2, "bits": 2}
    expected = _untimed(tmp_path / "inline" / "results.json")
    assert _untimed(tmp_path / "local" / "results.json") == expected
    try:
        import ray
    except ImportError:
        pytest.skip("ray is not installed (pip install 'leanbits[ray]'); local checked only")
    from leanbits.sweep.executors import RayExecutor

    ex = RayExecutor(num_cpus=2)
    try:
        remote = _run(exp, tmp_path / "ray", ex)
    finally:
        ex.close()
    assert not ray.is_initialized()
    assert remote.ran == inline.ran
    assert _untimed(tmp_path / "ray" / "results.json") == expected


def test_ray_missing_gives_an_install_hint(monkeypatch):
    import builtins

    from leanbits.errors import LeanbitsError
    from leanbits.sweep.executors import make_executor

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(LeanbitsError, match=r"pip install 'leanbits\[ray\]'"):
        make_executor("ray")


# ----------------------------------------------------------------------------- CLI
def test_quick_study_runs_end_to_end_from_the_cli(tmp_path, monkeypatch, capsys):
    args = ["study", "snapshot", "--quick", "--set", "data.dataset=synthetic",
            "--set", 'prune.vary.method=["refit", "none"]', "--out", str(tmp_path), "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["points"] == 2 and summary["ran"] == {"train": 1, "prune": 2, "bits": 0}
    doc = load_results(tmp_path)
    assert [r["axes"]["method"] for r in doc["rows"]] == ["refit", "none"]
    assert "data.dataset" not in (tmp_path / "experiment.toml").read_text()
    assert 'dataset = "synthetic"' in (tmp_path / "experiment.toml").read_text()
    # Again: nothing runs, and the text table marks nothing as missing.
    assert main(args[:-1]) == 0
    out = capsys.readouterr().out
    assert "snapshot: 2 point(s)" in out and "stages run 0, reused 3" in out


def test_cli_bad_file_is_one_line_and_nothing_runs(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[data]\ndataset = "synthetic"\n[train.vary]\nhead = ["softmax", "sigmoid"]\n')
    assert main(["run", str(bad), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "head" in err[0] and "softmax, llr, llr-code" in err[0]
    assert not (tmp_path / "run").exists()


def test_cli_dry_run_counts_stages(tmp_path, monkeypatch, capsys):
    assert main(["study", "frontier", "--quick", "--dry-run", "--json", "--out",
                 str(tmp_path)]) == 0
    info = json.loads(capsys.readouterr().out)
    # 3 models x 3 heads, less lenet5's softmax and llr-code (the preset's exclude rules),
    # x (dense, 0.8) x 2 bit widths
    assert info["points"] == 7 * 2 * 2
    assert {k: v["stages"] for k, v in info["stages"].items()} == {"train": 7, "prune": 7,
                                                                    "bits": 28}
    assert not any(tmp_path.iterdir())


def test_stage_made_with_other_settings_is_rebuilt_with_its_dependents(tmp_path):
    exp = _exp()
    _run(exp, tmp_path)
    # As if a default had changed since: same directory name, other full config.
    train = tmp_path / "stages" / exp.points[0].stages[0].relpath
    record = stages.read_stage(train)
    record["config"]["momentum"] = 0.5
    paths.stage_marker(train).write_text(json.dumps(record))
    s = _run(exp, tmp_path)
    assert s.ran == {"train": 1, "prune": 2, "bits": 4}
    assert stages.read_stage(train)["config"]["momentum"] == 0.9
