"""`leanbits demo --quick` runs the packaged demo experiment through the sweep on a
real-MNIST subset."""

import pytest

from leanbits.cli import main
from leanbits.data import sources
from leanbits.results import Row, profile_rows
from leanbits.sweep.experiment import load_experiment
from leanbits.sweep.pick import reference_accuracy
from leanbits.sweep.presets import study_path
from leanbits.sweep.run import load_results


def _mnist_ready() -> bool:
    return any(d["name"] == "mnist" and d["complete"] for d in sources.info())


def test_demo_experiment_is_the_main_job():
    exp = load_experiment(study_path("demo"))
    assert exp.pick is not None and exp.pick.max_drop == 0.001
    assert [p.last.config.bits for p in exp.points] == [2, 3, 4, 5, 6]
    assert [s.kind for s in exp.points[0].stages] == ["train", "prune", "bits"]
    (prof,) = exp.profiles
    assert prof.input is exp.points[0].stages[0]
    quick = load_experiment(study_path("demo"), quick=True, overrides=["train.epochs=1"])
    assert quick.points[0].stages[0].config.epochs == 1


@pytest.mark.skipif(not _mnist_ready(), reason="MNIST not cached; run `leanbits data fetch mnist`")
def test_quick_demo_end_to_end(tmp_path, capsys):
    assert main(["demo", "--quick", "--runs", str(tmp_path)]) == 0
    run = tmp_path / "demo-quick"
    captured = capsys.readouterr()
    out = captured.out
    lines = out.splitlines()
    for title in ("training", "profile", "before / after snapshot pruning",
                  "accuracy against total bits", "packed model"):
        assert any(line.startswith(title) for line in lines), title
    assert "[5/5] writing the report" in captured.err
    doc = load_results(run)
    rows = [Row.from_dict(r) for r in doc["rows"]]
    assert [r.settings["bits"]["bits"] for r in rows] == [2, 3, 4, 5, 6]
    picked = rows[doc["picked"]]
    lbits = run / "model.lbits"
    assert lbits.read_bytes() == (run / "stages" / picked.stages["bits"] / "model.lbits"
                                  ).read_bytes()
    assert lbits.stat().st_size == picked.file_bytes == (picked.total_bits + 7) // 8
    ok = [r for r in rows if r.val_acc >= reference_accuracy(r) - 0.001]
    if ok:
        assert picked.total_bits == min(r.total_bits for r in ok)
    (prof,) = run.glob("stages/profile/*/profile.json")
    import json

    prof_rows = profile_rows(json.loads(prof.read_text()))
    assert [r.axes["method"] for r in prof_rows] == ["dense"] + ["none"] * 3 + ["refit"] * 3
    assert (run / "report.html").is_file() and "Pruning profile" in (run / "report.md"
                                                                     ).read_text()
