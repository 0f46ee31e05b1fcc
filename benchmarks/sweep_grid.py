"""Grid expansion: CPU time and peak memory to load and expand experiment grids.

Grids of 10^3 to 10^5 points (train seeds x prune sparsities x bit widths, synthetic
data) are expanded and validated as ``leanbits run --dry-run --allow-large`` does, and a
10^6-point grid is refused, without ``--allow-large``, before expansion. Each size runs in
a fresh process, so the memory column is that size's own peak.

    python benchmarks/sweep_grid.py [--write]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_md import update_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SIZES = ((10, 10, 10), (100, 10, 10), (100, 100, 10), (100, 100, 100))

CHILD = r"""
import json, resource, sys, time
from leanbits.errors import ConfigError
from leanbits.sweep.experiment import parse_experiment
seeds, sparsities, widths, allow = json.loads(sys.argv[1])
raw = {"name": "grid", "data": {"dataset": "synthetic"},
       "train": {"fc": [16], "vary": {"seed": list(range(seeds))}},
       "prune": {"vary": {"sparsity": [round(0.001 * (i + 1), 4) for i in range(sparsities)]}},
       "bits": {"vary": {"refit_lr": [1e-4 * (i + 1) for i in range(widths)]}}}
t0 = time.process_time()
try:
    exp = parse_experiment(raw, max_points=None if allow else 10_000)
    outcome, points = "expanded", len(exp.points)
except ConfigError:
    outcome, points = "refused", 0
cpu = time.process_time() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"outcome": outcome, "points": points, "cpu": cpu, "rss_mb": rss}))
"""


def measure(seeds: int, sparsities: int, widths: int, allow: bool) -> dict:
    arg = json.dumps([seeds, sparsities, widths, allow])
    out = subprocess.run([sys.executable, "-c", CHILD, arg], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = ap.parse_args()
    lines = [
        "Command: `python benchmarks/sweep_grid.py --write`  ",
        f"Machine: {platform.machine()}, 2 cores  ",
        f"Date: {dt.date.today().isoformat()}",
        "",
        "CPU seconds to check the grid size, expand and validate every point (process time, "
        "so other load on the machine does not count); peak RSS of the process, torch "
        "imported included.",
        "",
        "| grid (seeds x sparsities x bits settings) | points | --allow-large | outcome | "
        "CPU s | peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for seeds, sparsities, widths in SIZES:
        n = seeds * sparsities * widths
        allow = n < 10**6
        r = measure(seeds, sparsities, widths, allow)
        lines.append(f"| {seeds} x {sparsities} x {widths} | {n:,} | {'yes' if allow else 'no'} "
                     f"| {r['outcome']} | {r['cpu']:.2f} | {r['rss_mb']:.0f} |")
        print(lines[-1], flush=True)
    body = "\n".join(lines)
    print(body)
    if args.write:
        update_section(ROOT / "BENCHMARKS.md", "Sweep grid expansion", body)


if __name__ == "__main__":
    main()
