"""Every script in examples/ runs (small settings) and exits 0."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.py"))
FAST_ARGS = {"llr_head_in_your_loop.py": ["--steps", "120"],
             "prune_your_cnn.py": ["--steps", "150"]}


def test_there_are_examples():
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(script.parent.parent / "src"))
    out = subprocess.run([sys.executable, str(script), *FAST_ARGS.get(script.name, [])],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip()
