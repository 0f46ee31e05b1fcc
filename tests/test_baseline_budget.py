"""benchmarks/baseline_budget.py: its quick mode runs every method at every budget."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "baseline_budget.py"


def _bench():
    spec = importlib.util.spec_from_file_location("baseline_budget", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_mode_measures_every_method_budget_and_sparsity(tmp_path, capsys):
    bench = _bench()
    out = tmp_path / "records.json"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    records = doc["records"]
    mode = bench.QUICK
    budgets = bench.budgets(mode)
    assert len(records) == len(mode["seeds"]) * len(bench.SPARSITIES) * len(budgets)
    rewind_epochs = mode["train"]["epochs"] - mode["train"]["rewind_epoch"]
    expected = {"refit": set(mode["epochs"]), "finetune": set(mode["epochs"]),
                "iterative": {bench.ROUNDS * e for e in mode["round_epochs"]},
                "rewind": {rewind_epochs}}
    for method, epochs in expected.items():
        assert {r["epochs"] for r in records if r["method"] == method} == epochs
    base = {"refit": 1e-3, "finetune": 5e-4, "iterative": 5e-4,
            "rewind": mode["train"]["lr"]}
    for r in records:
        # three learning rates tried, each a full run of the budget
        assert r["grid_epochs"] == len(bench.LR_GRID) * r["epochs"]
        assert 0 < r["method_seconds"] < r["grid_seconds"]
        assert any(r["lr"] == pytest.approx(base[r["method"]] * f) for f in bench.LR_GRID)
        assert 0 <= r["test_acc"] <= 1 and 0 <= r["val_acc"] <= 1
    summary = doc["summary"]
    assert len(summary) == len(bench.SPARSITIES) * len(budgets)
    assert all(s["seeds"] == len(mode["seeds"]) for s in summary)
    table = capsys.readouterr().out
    assert table.count("\n| 0.98 |") == len(budgets)
    png = tmp_path / "plot.png"
    bench.plot(summary, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quick_results_are_never_written_as_the_benchmark():
    with pytest.raises(SystemExit) as exc:
        _bench().main(["--quick", "--write"])
    assert exc.value.code == 2


def test_resume_reads_finished_seeds_instead_of_rerunning_them(tmp_path, monkeypatch):
    bench = _bench()
    resume = tmp_path / "seeds"
    first = bench.run(bench.QUICK, [1], jobs=1, resume=resume)
    assert (resume / "seed-1.json").is_file()
    ran = []
    real = bench.run_seed

    def counting(mode, seed, resume=None):
        ran.append(seed)
        return real(mode, seed, resume)

    monkeypatch.setattr(bench, "run_seed", counting)
    both = bench.run(bench.QUICK, [1, 2], jobs=1, resume=resume)
    assert ran == [2]  # seed 1 was read back, not trained again
    assert both[:len(first)] == first
    assert {r["seed"] for r in both} == {1, 2}
    assert (resume / "seed-2.json").is_file()


def test_resume_refuses_files_it_cannot_use(tmp_path, capsys):
    bench = _bench()
    resume = tmp_path / "seeds"
    resume.mkdir()
    (resume / "seed-1.json").write_text("{not json")
    assert bench.main(["--quick", "--seeds", "1", "--resume", str(resume)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "seed-1.json" in err
    # a seed file made with other settings is not mixed into this table
    doc = {"seed": 1, "fingerprint": {"mode": "other"}, "records": []}
    (resume / "seed-1.json").write_text(json.dumps(doc))
    assert bench.main(["--quick", "--seeds", "1", "--resume", str(resume)]) == 2
    assert "other settings" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        bench.main(["--quick", "--resume", str(resume / "seed-1.json")])
    assert exc.value.code == 2
