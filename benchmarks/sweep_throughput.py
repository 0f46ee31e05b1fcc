"""Sweep throughput: grid points per hour with --jobs 1 and --jobs 2, side by side.

Runs experiments/throughput-mnist.toml (16 points: 4 trainings, 8 prunings, 16 packed
files) twice from scratch, once per job count, and checks that both produce the same
results.json bytes (results must not depend on how many workers ran them).

    python benchmarks/sweep_throughput.py [--write]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_md import update_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENT = ROOT / "experiments" / "throughput-mnist.toml"


def run(jobs: int, out: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "leanbits", "run", str(EXPERIMENT), "--out", str(out),
                    "--jobs", str(jobs), "--no-progress"], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = ap.parse_args()
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for jobs in (1, 2):
            out = Path(tmp) / f"jobs{jobs}"
            seconds = run(jobs, out)
            doc = json.loads((out / "results.json").read_text())
            results[jobs] = (out / "results.json").read_bytes()
            n = len(doc["rows"])
            rows.append((jobs, n, seconds, n / seconds * 3600))
    same = results[1] == results[2]
    base = rows[0][2]
    lines = [
        "Command: `python benchmarks/sweep_throughput.py --write`  ",
        f"Machine: {platform.machine()}, 2 cores  ",
        f"Date: {dt.date.today().isoformat()}",
        "",
        f"Grid: `{EXPERIMENT.relative_to(ROOT)}` run from scratch (each stage runs torch with "
        "one thread per worker).",
        "",
        "| jobs | grid points | wall seconds | points / hour | speed-up |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {j} | {n} | {s:.1f} | {p:.0f} | {base / s:.2f} |" for j, n, s, p in rows]
    lines += ["", f"results.json identical for --jobs 1 and --jobs 2: {'yes' if same else 'NO'}."]
    body = "\n".join(lines)
    print(body)
    if args.write:
        update_section(ROOT / "BENCHMARKS.md", "Sweep throughput", body)


if __name__ == "__main__":
    main()
