"""Start-up time of the command line: ``--version``, each command's ``--help`` and refusals
of bad flag values, the answers that must come in well under a second.

Each command line runs in a fresh ``python -m leanbits`` process; wall and CPU seconds
(user + system of the child) are the median of ``--repeats`` runs. ``--before DIR`` also
runs every line against another checkout's ``src/`` (an older commit), interleaved with
this one's runs, so that both see the same load.

    python benchmarks/cli_start.py [--repeats 5] [--before OLD_CHECKOUT/src [--before-label L]]
                                   [--write]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_md import update_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

#: the command lines timed (a bad flag value is refused before the snapshot is looked at)
LINES: tuple[tuple[str, ...], ...] = (
    ("--version",),
    ("train", "--help"),
    ("bits", "--help"),
    ("run", "--help"),
    ("report", "--help"),
    ("train", "--fc", "abc"),
    ("bits", "SNAP", "--bits", "99"),
    ("prune", "SNAP", "--sparsity", "2"),
)


def time_once(argv: tuple[str, ...], src: Path) -> tuple[float, float, int]:
    """(wall s, CPU s, exit status) of one ``python -m leanbits ARGV`` with ``src`` first
    on the import path."""
    env = dict(os.environ, PYTHONPATH=str(src))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "leanbits", *argv], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.returncode


def measure(sources: dict[str, Path], repeats: int) -> dict[tuple[str, str], tuple]:
    """Median wall and CPU seconds (and the exit status) per (source, command line)."""
    runs: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
    for _ in range(repeats):
        for argv in LINES:
            for name, src in sources.items():
                runs.setdefault((name, " ".join(argv)), []).append(time_once(argv, src))
    return {key: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs),
                  rs[-1][2]) for key, rs in runs.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--before", type=Path, default=None,
                   help="src/ of another checkout to compare with (an older commit)")
    p.add_argument("--before-label", default="an older checkout",
                   help="what --before is, for BENCHMARKS.md (e.g. a commit)")
    p.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = p.parse_args()
    sources = {"this": ROOT / "src"}
    if args.before is not None:
        sources = {"before": args.before.resolve(), **sources}
    load = os.getloadavg()[0]
    result = measure(sources, args.repeats)
    heads = [f"{n} {what}" for n in sources for what in ("wall s", "CPU s")]
    lines = ["| command | exit | " + " | ".join(heads) + " |",
             "|---|---|" + "---|" * len(heads)]
    for argv in LINES:
        line = " ".join(argv)
        cells = [f"{v:.2f}" for n in sources for v in result[(n, line)][:2]]
        lines.append(f"| `leanbits {line}` | {result[('this', line)][2]} | "
                     + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        before = f" `before` is {args.before_label};" if args.before else ""
        body = (
            f"Command: `python benchmarks/cli_start.py --repeats {args.repeats}"
            + (" --before OLD/src --before-label LABEL" if args.before else "")
            + " --write`  \n"
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} "
            f"while measuring, Python {platform.python_version()}  \n"
            f"Date: {dt.date.today().isoformat()}\n\n"
            f"Median of {args.repeats} fresh `python -m leanbits` processes per line, runs of "
            f"the two checkouts interleaved.{before} CPU is user + system time of the "
            "process. Goal: every line answers in under 1 s.\n\n" + table + "\n"
        )
        update_section(ROOT / "BENCHMARKS.md", "Command-line start-up", body)


if __name__ == "__main__":
    main()
