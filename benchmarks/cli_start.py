"""Start-up time of the command line: ``--version``, each command's ``--help``, refusals
of bad flag values and of bad experiment files, the answers that must come in well under a
second.

Each command line runs in a fresh ``python -m leanbits`` process, in a scratch directory
holding the experiment files of :data:`FILES`; wall and CPU seconds (user + system of the
child) and its peak RSS are the median of ``--repeats`` runs. ``--before DIR`` also
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
import statistics
import subprocess
import sys
import tempfile
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
    ("run", "grid1e6.toml", "--dry-run"),
    ("run", "badkey.toml"),
)

#: experiment files the command lines name: a grid of 10^6 points (refused by the size
#: check before it is expanded) and an unknown key
FILES = {
    "grid1e6.toml": (f"[train.vary]\nseed = {list(range(1000))}\n"
                     f"epochs = {list(range(1, 1001))}\n"),
    "badkey.toml": "[train]\nbogus = 1\n",
}


def time_once(argv: tuple[str, ...], src: Path, cwd: Path) -> tuple[float, float, float, int]:
    """(wall s, CPU s, peak RSS MB, exit status) of one ``python -m leanbits ARGV`` run in
    ``cwd`` with ``src`` first on the import path."""
    env = dict(os.environ, PYTHONPATH=str(src))
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "leanbits", *argv], env=env, cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own usage, not every child's
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss / 1024, proc.returncode  # ru_maxrss is in KiB


def measure(sources: dict[str, Path], repeats: int) -> dict[tuple[str, str], tuple]:
    """Median wall s, CPU s and peak RSS MB (and the exit status) per (source, command
    line)."""
    runs: dict[tuple[str, str], list[tuple[float, float, float, int]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        for name, text in FILES.items():
            (cwd / name).write_text(text)
        for _ in range(repeats):
            for argv in LINES:
                for name, src in sources.items():
                    runs.setdefault((name, " ".join(argv)), []).append(
                        time_once(argv, src, cwd))
    return {key: (*(statistics.median(r[i] for r in rs) for i in range(3)), rs[-1][3])
            for key, rs in runs.items()}


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
    heads = [f"{n} {what}" for n in sources for what in ("wall s", "CPU s", "MB")]
    lines = ["| command | exit | " + " | ".join(heads) + " |",
             "|---|---|" + "---|" * len(heads)]
    for argv in LINES:
        line = " ".join(argv)
        cells = [f"{v:.2f}" if i < 2 else f"{v:.0f}" for n in sources
                 for i, v in enumerate(result[(n, line)][:3])]
        lines.append(f"| `leanbits {line}` | {result[('this', line)][3]} | "
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
            "process, MB its peak resident memory. `grid1e6.toml` is a `[train.vary]` grid of "
            "1,000 seeds x 1,000 epoch counts (10^6 points, refused by the size check before "
            "it is expanded); `badkey.toml` sets `[train] bogus = 1`. Goal: every line "
            "answers in under 1 s.\n\n" + table + "\n"
        )
        update_section(ROOT / "BENCHMARKS.md", "Command-line start-up", body)


if __name__ == "__main__":
    main()
