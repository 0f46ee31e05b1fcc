"""The ``record`` study: the sweep's compress stage kind, the preset and benchmarks/record.py."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from leanbits import paths
from leanbits.bits import unpack
from leanbits.errors import ConfigError
from leanbits.sweep.experiment import load_experiment, parse_experiment
from leanbits.sweep.presets import study_path
from leanbits.sweep.run import run_experiment, write_experiment

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "record.py"
#: the quick preset's nets, cut so the tests stay fast
MLP = '{ name = "lenet-300-100", model = "lenet-300-100", fc = [32, 16] }'
CNN = '{ name = "lenet5", model = "lenet5", conv = [2, 4], fc = [8], epochs = 2 }'


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


def _quick(models: str, seeds: str):
    return load_experiment(study_path("record"), quick=True, overrides=[
        f"train.vary.model=[{models}]", f"train.vary.seed=[{seeds}]"])


def _run(exp, run: Path) -> Path:
    run_experiment(exp, run, executor="inline", progress=False, log=lambda _line: None)
    return run


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory) -> Path:
    """The quick preset cut to two seeds of the MLP, run once for the module."""
    return _run(_quick(MLP, "1, 2"), tmp_path_factory.mktemp("record") / "mlp")


def test_quick_record_run_and_benchmark_summary(mlp_run, tmp_path, capsys):
    exp, run = _quick(MLP, "1, 2"), mlp_run
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
    body = capsys.readouterr().out
    assert f"`python benchmarks/record.py {run} --write` after `leanbits study record` (" in body
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
    # the quantizers paired from the search log: both scored, and the chosen file is the
    # smaller of the two quantizers' smallest passing files
    for row in bench.collect(run)["lenet-300-100"]:
        quants = row["quants"]
        assert all(quants[q]["tried"] > 0 for q in bench.QUANTS)
        passing = [q["bits"] for q in quants.values() if q["bits"] is not None]
        assert min(passing) == row["total_bits"]
    assert "| net | seed | k-means bits | ECSQ bits | k-means / ECSQ |" in body
    assert body.count("\n| LeNet-300-100 | 1 | ") == 2  # per-seed table and quantizer pair


def test_quantizers_are_paired_on_validation_only():
    bench = _record_module()
    log = {"required_val_acc": 0.9, "test_acc": 0.5, "candidates": [
        {"settings": {"quant": "kmeans"}, "total_bits": 900, "val_acc": 0.91},
        {"settings": {"quant": "kmeans"}, "total_bits": 500, "val_acc": 0.89},
        {"settings": {"quant": "ecsq"}, "total_bits": 700, "val_acc": 0.9},
        {"settings": {"quant": "ecsq"}, "total_bits": 400, "val_acc": 0.2}]}
    assert bench.smallest_per_quant(log) == {"kmeans": {"tried": 2, "bits": 900},
                                             "ecsq": {"tried": 2, "bits": 700}}
    log["candidates"] = log["candidates"][:2]
    assert bench.smallest_per_quant(log)["ecsq"] == {"tried": 0, "bits": None}
    rows = {"lenet-300-100": [
        {"seed": 1, "quants": {"kmeans": {"tried": 2, "bits": 900},
                               "ecsq": {"tried": 4, "bits": 600}}},
        {"seed": 2, "quants": {"kmeans": {"tried": 2, "bits": 500},
                               "ecsq": {"tried": 4, "bits": None}}}]}
    text = "\n".join(bench.quant_lines(rows))
    assert "| LeNet-300-100 | 1 | 900 (2) | 600 (4) | 1.500 |" in text
    assert "| LeNet-300-100 | 2 | 500 (2) | none (4) | - |" in text
    assert "smaller in 1 of 1 seeds with both" in text
    assert "8 ECSQ candidates against 4 k-means ones" in text


def test_remarks_follow_the_command(mlp_run, capsys):
    bench = _record_module()
    assert bench.main([str(mlp_run), "--remark", "Made at commit abc.",
                       "--remark", "The machine was busy."]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith("Mean +- sample std over seeds. Recipe: methods finetune, budget 8, "
                          "finetune_epochs 1. Made at commit abc. The machine was busy.")


def test_section_names_each_nets_recipe_when_the_runs_differ():
    bench = _record_module()
    a, b = Path("runs/record-vd"), Path("runs/record-lenet5")
    vd = {"methods": ["sparse-vd", "gradual"], "budget": 320, "vd_epochs": 100,
          "finetune_epochs": 2, "bits": [2, 3]}  # no finetune method: its epochs unnamed
    old = {"methods": ["gradual", "finetune"], "budget": 120, "gradual_epochs": 8,
           "vd_epochs": 100}
    same = bench.recipe_text({"lenet-300-100": a, "lenet5": b}, {a: vd, b: dict(vd)})
    assert same == "Recipe: methods sparse-vd, gradual, budget 320, vd_epochs 100."
    differ = bench.recipe_text({"lenet-300-100": a, "lenet5": b}, {a: vd, b: old})
    assert differ == ("Recipes differ by net: LeNet-300-100 methods sparse-vd, gradual, "
                      "budget 320, vd_epochs 100; LeNet-5-Caffe methods gradual, finetune, "
                      "budget 120, gradual_epochs 8.")
    assert bench.recipe_text({"lenet5": b}, {b: {}}) == "Recipe: the compress defaults."


def test_benchmark_refuses_a_directory_that_is_not_a_run(tmp_path, capsys):
    assert _record_module().main([str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_benchmark_gathers_the_nets_of_several_runs(mlp_run, tmp_path, capsys):
    # a run per net (as LeNet-5 is run on its own) reads as one run holding both: the
    # combined run's stages are the two runs' own, and its LeNet-5 seed 2 never finished
    cnn_run = _run(_quick(CNN, "1"), tmp_path / "cnn")
    both = tmp_path / "both"
    for run in (mlp_run, cnn_run):
        shutil.copytree(run / "stages", both / "stages", dirs_exist_ok=True)
    write_experiment(_quick(f"{MLP}, {CNN}", "1, 2"), both / "experiment.toml")

    bench = _record_module()
    apart, together = tmp_path / "apart.json", tmp_path / "together.json"
    assert bench.main([str(mlp_run), str(cnn_run), "--summary", str(apart)]) == 0
    body = capsys.readouterr().out
    assert bench.main([str(both), "--summary", str(together)]) == 0
    apart, together = json.loads(apart.read_text()), json.loads(together.read_text())
    assert sorted(apart) == sorted(together) == ["lenet-300-100", "lenet5"]
    assert apart["lenet-300-100"]["seeds"] == [1, 2] and apart["lenet5"]["seeds"] == [1]
    for net, entry in together.items():
        assert apart[net].keys() == entry.keys()
        for key, value in entry.items():
            assert apart[net][key] == value, (net, key)
    # the section names the runs and which net came from which
    assert f"`python benchmarks/record.py {mlp_run} {cnn_run} --write`" in body
    assert f"LeNet-300-100 from `{mlp_run}`, LeNet-5-Caffe from `{cnn_run}`" in body
    assert "| LeNet-5-Caffe | 1 |" in body


def test_benchmark_refuses_a_net_in_two_runs(mlp_run, tmp_path, capsys):
    again = shutil.copytree(mlp_run, tmp_path / "again")
    out = tmp_path / "summary.json"
    assert _record_module().main([str(mlp_run), str(again), "--summary", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (f"record.py: LeNet-300-100 is in two runs, {mlp_run} and {again}; give "
                   "each net's run once\n")
    assert not out.exists()


def test_reading_against_goals_and_anchors_is_mechanical():
    bench = _record_module()
    line = bench.reading("lenet5", {"compression_mean": 600.0, "weights_kept_mean": 310.0,
                                    "test_error_pct_mean": 0.75})
    # an anchor is beaten only with more compression *and* no higher error: not EPR
    # (606x), not MIRACLE at 0.69 % nor DC at 0.74 % (lower error than 0.75 %)
    assert line == (
        "- LeNet-5-Caffe (seed means): compression 600.0x against the goal >= 1000x (not "
        "met), weights kept 310.0x against >= 300x (met), test error 0.75 % against <= 0.80 % "
        "(met); beats BC 419x @ 1.0 %, SWS 162x @ 0.97 %; does not beat MIRACLE 555x @ "
        "0.69 %, MIRACLE 1110x @ 0.96 %, EPR 606x @ 1.0 %, DC 39x @ 0.74 %.")
    # per seed: a mean can meet a goal most seeds miss
    rows = [{"compression": c, "weights_kept": k, "test_error_pct": e}
            for c, k, e in ((1200.0, 310.0, 0.7), (300.0, 100.0, 0.9), (300.0, 320.0, 0.7))]
    line = bench.reading("lenet5", {"compression_mean": 600.0, "weights_kept_mean": 243.3,
                                    "test_error_pct_mean": 0.77}, rows)
    assert ("0.77 % against <= 0.80 % (met); per seed, compression goal met on 1 of 3, "
            "weights on 2 of 3, test "
            "error on 2 of 3, all three on 1 of 3; beats") in line
    assert bench.reading("other", {"compression_mean": 2.0, "weights_kept_mean": 1.0,
                                   "test_error_pct_mean": 3.0}) == (
        "- other (seed means): compression 2.0x.")


def test_paired_comparison_pairs_by_seed_and_names_the_unpaired():
    bench = _record_module()

    def row(seed, comp, err):
        return {"seed": seed, "compression": comp, "test_error_pct": err}

    mine = {"lenet-300-100": [row(1, 120.0, 1.7), row(2, 60.0, 1.8), row(5, 99.0, 1.6)],
            "lenet5": [row(1, 200.0, 0.8)]}
    theirs = {"lenet-300-100": [row(1, 60.0, 1.6), row(2, 60.0, 1.9), row(3, 10.0, 2.0)]}
    text = "\n".join(bench.paired_lines(mine, Path("runs/old"), theirs,
                                        "Recipe: methods gradual, budget 120."))
    assert text.startswith("Paired by seed against `runs/old` (recipe: methods gradual, "
                           "budget 120): ")
    assert "| LeNet-300-100 | 1 | 120.0x | 60.0x | 2.00 | 1.70 | 1.60 |" in text
    assert "| LeNet-300-100 | 2 | 60.0x | 60.0x | 1.00 | 1.80 | 1.90 |" in text
    assert "| LeNet-300-100 | 5 " not in text and "LeNet-5-Caffe" not in text
    assert ("- LeNet-300-100: compression ratio 1.50 on average over 2 seeds (range "
            "1.00-2.00, higher in 1); test error +0.00 points on average. Adoption rule "
            "(mean ratio >= 1.10, higher on most seeds, test error at most +0.10 points, "
            ">= 3 seeds): not met.") in text
    assert "- LeNet-300-100: seeds 3, 5 are in one run only, not paired." in text
    # the adoption rule, one condition at a time
    assert bench.adopt([1.3, 1.1, 0.95], [0.1, 0.0, 0.1])
    assert not bench.adopt([1.2, 1.1], [0.0, 0.0])  # too few seeds
    assert not bench.adopt([1.05, 1.1, 1.1], [0.0, 0.0, 0.0])  # mean ratio under 1.10
    assert not bench.adopt([2.0, 0.9, 0.9], [0.0, 0.0, 0.0])  # higher on one seed of 3
    assert not bench.adopt([1.2, 1.2, 1.2], [0.2, 0.1, 0.1])  # test error +0.13 points
    # nothing in common: nothing to pair
    assert bench.paired_lines({"lenet5": [row(1, 2.0, 1.0)]}, Path("x"), theirs, "R.") == []


def test_against_a_run_adds_the_paired_table(mlp_run, tmp_path, capsys):
    bench = _record_module()
    assert bench.main([str(mlp_run), "--against", str(mlp_run)]) == 0
    body = capsys.readouterr().out
    assert f"`python benchmarks/record.py {mlp_run} --against {mlp_run} --write`" in body
    assert f"Paired by seed against `{mlp_run}` (recipe: methods finetune, budget 8, " in body
    assert "compression ratio 1.00 on average over 2 seeds (range 1.00-1.00, higher in 0)" in body
    # two earlier runs: one comparison each, even when both hold the same net
    again = shutil.copytree(mlp_run, tmp_path / "again")
    assert bench.main([str(mlp_run), "--against", str(mlp_run), "--against", str(again)]) == 0
    body = capsys.readouterr().out
    assert body.count("Paired by seed against `") == 2 and f"against `{again}`" in body
    assert bench.main([str(mlp_run), "--against", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_dead_biases_benchmark_reencodes_each_record_file(mlp_run, capsys):
    spec = importlib.util.spec_from_file_location("dead_biases", BENCH.parent / "dead_biases.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main([str(mlp_run)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines()
            if line.startswith(f"| `{mlp_run}` |")]
    assert len(rows) == 2  # one per seed's file
    for line in rows:
        cells = [c.strip() for c in line.split("|")[1:-1]]
        old, new = (int(x.replace(",", "")) for x in cells[6].split(" -> "))
        assert 0 < new <= old  # zero biases are never written larger
    assert bench.main([str(mlp_run / "nope")]) == 1


def test_vd_cost_benchmark_times_both_nets_and_prices_the_record_preset(capsys):
    spec = importlib.util.spec_from_file_location("vd_cost", BENCH.parent / "vd_cost.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    exp = load_experiment(study_path("record"))
    stage = exp.stages("compress")[0]
    # the estimate prices the epochs the study itself would run
    assert bench.record_recipe() == {"train": stage.input.config.epochs,
                                     "vd": stage.config.vd_epochs,
                                     "budget": stage.config.budget}
    assert bench.main(["--examples", "256", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    for label in ("LeNet-300-100", "LeNet-5-Caffe"):
        timed, priced = [line for line in out.splitlines() if line.startswith(f"| {label} |")]
        plain, vd = (float(c.split()[0]) for c in timed.split("|")[2:4])
        assert plain > 0 and vd > 0
        assert priced.split("|")[3].strip().startswith(f"{bench.record_recipe()['vd']} x")
