"""The ``record`` study: the sweep's compress stage kind, the preset and benchmarks/record.py."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from leanbits import paths
from leanbits.bits import unpack
from leanbits.errors import ConfigError
from leanbits.sweep.experiment import load_experiment, parse_experiment
from leanbits.sweep.presets import study_path
from leanbits.sweep.run import run_experiment

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "record.py"


def _record_module():
    spec = importlib.util.spec_from_file_location("record_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_record_study_has_a_compress_stage_per_net_and_seed():
    for quick in (False, True):
        exp = load_experiment(study_path("record"), quick=quick)
        specs = exp.stages("compress")
        models = sorted({(s.input.config.model, s.input.config.seed) for s in specs})
        # issue 12's protocol: >= 5 seeds for LeNet-300-100 (>= 3 for LeNet-5); --quick uses 3
        seeds = (1, 2, 3) if quick else (1, 2, 3, 4, 5)
        assert models == [(m, s) for m in ("lenet-300-100", "lenet5") for s in seeds]
        assert "compress" in exp.kinds() and exp.kinds().index("compress") > 0
    assert load_experiment(study_path("record"), quick=True).data["dataset"] == "synthetic"


@pytest.mark.parametrize("table, message", [
    ({"methods": ["finetune"]}, "exactly one"),
    ({"max_drop": 0.01, "vary": {"bits": [[2], [3]]}}, "no axes"),
    ({"max_drop": 0.01, "methods": ["bogus"]}, "unknown pruning method"),
    ({"max_drop": 0.01, "sparsity": 0.5}, "chooses sparsity"),
])
def test_bad_compress_tables_are_refused_when_loaded(table, message):
    raw = {"data": {"dataset": "synthetic"}, "compress": table}
    with pytest.raises(ConfigError, match=message):
        parse_experiment(raw)


def test_quick_record_run_and_benchmark_summary(tmp_path):
    # the quick preset, cut to two seeds of the MLP so the test stays fast
    exp = load_experiment(study_path("record"), quick=True, overrides=[
        'train.vary.model=[{ name = "lenet-300-100", model = "lenet-300-100", fc = [32, 16] }]',
        "train.vary.seed=[1, 2]"])
    run = tmp_path / "run"
    run_experiment(exp, run, executor="inline", progress=False, log=lambda _line: None)
    specs = exp.stages("compress")
    assert len(specs) == 2
    for spec in specs:
        stage = run / "stages" / spec.relpath
        record = json.loads((stage / "stage.json").read_text())["metrics"]
        lbits = paths.lbits(stage)
        assert lbits.stat().st_size == record["file_bytes"] == unpack(lbits).account.total_bytes
        assert record["val_acc"] >= record["required_val_acc"]
        assert not any(p.name.endswith(".work") for p in stage.parent.iterdir())

    bench = _record_module()
    summary_path = tmp_path / "summary.json"
    assert bench.main([str(run), "--summary", str(summary_path)]) == 0
    summary = json.loads(summary_path.read_text())
    entry = summary["lenet-300-100"]
    assert entry["seeds"] == [1, 2]
    for key in ("compression", "weights_kept", "test_error_pct"):
        assert entry[f"{key}_mean"] > 0 and entry[f"{key}_std"] >= 0
    first = json.loads((run / "stages" / specs[0].relpath / "stage.json").read_text())
    m = first["metrics"]
    per_seed = bench.collect(run)["lenet-300-100"][0]
    assert per_seed["compression"] == pytest.approx(m["dense_float32_bits"] / m["total_bits"])
    assert per_seed["test_error_pct"] == pytest.approx(100 * (1 - m["test_acc"]))


def test_benchmark_refuses_a_directory_that_is_not_a_run(tmp_path, capsys):
    assert _record_module().main([str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
