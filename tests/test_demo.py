"""`leanbits demo --quick` runs the whole pipeline on a real-MNIST subset."""

import json

import pytest

from leanbits.cli import main
from leanbits.data import sources


def _mnist_ready() -> bool:
    return any(d["name"] == "mnist" and d["complete"] for d in sources.info())


@pytest.mark.skipif(not _mnist_ready(), reason="MNIST not cached; run `leanbits data fetch mnist`")
def test_quick_demo_end_to_end(tmp_path, capsys):
    assert main(["demo", "--quick", "--runs", str(tmp_path)]) == 0
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    out = capsys.readouterr().out
    assert "before / after snapshot pruning" in out and "packed model" in out
    lbits = run / "model.lbits"
    points = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert lbits.stat().st_size in {(p["total_bits"] + 7) // 8 for p in points}
    assert [p["bits"] for p in points] == [2, 3, 4, 5, 6]
    assert (run / "report.html").is_file() and (run / "profile.json").is_file()
    assert (run / "config.toml").is_file()
