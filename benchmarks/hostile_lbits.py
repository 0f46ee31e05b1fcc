"""Hostile .lbits files: the time and memory it takes to refuse or decode each one.

Forges (with a valid checksum) the files of issue 10 that used to cost minutes or gigabytes,
and the worst cases the ceilings of docs/FORMAT.md still allow: the most coded rows, the most
elements under each position encoding, the most tensors, the largest head and plan. Each file
is at most 1 MB. For each, `leanbits unpack FILE -o DIR` runs in a child process (wall and CPU
seconds, maximum RSS from wait4), and a second child times `decode()` alone after its imports.

    python benchmarks/hostile_lbits.py [--src DIR] [--only NAME ...] [--timeout S] [--write]

``--src`` runs the children against another checkout's ``src/`` (an older commit, to compare);
the files are forged with this checkout's code (the format is the same).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_md import update_section  # noqa: E402

from leanbits.bits.forge import (  # noqa: E402
    coded_positions,
    coded_words,
    float16,
    frame,
    name_shape,
    one_level,
    start,
    weight_settings,
)
from leanbits.bits.index import coded_encode  # noqa: E402
from leanbits.bits.records import (  # noqa: E402
    MAX_CODED_ROWS,
    MAX_ELEMENTS,
    MAX_TENSORS,
    plan_shapes,
)
from leanbits.bits.stream import HEADER, BitWriter  # noqa: E402
from leanbits.models import Plan  # noqa: E402

# ------------------------------------------------------------------------ forging


def plan_layers(layers: int) -> bytes:
    """A plan record declaring ``layers`` fc layers of width 1 (15 KB for 40,000)."""
    w = BitWriter()
    for value, width in ((1, 1), (0, 1), (1, 2)):
        w.uint(value, width, HEADER)
    for v in (0, 1, 1, 1, 0, layers, *([1] * layers), 1):  # mlp, in_shape, conv, fc, out
        w.uv(v, HEADER)
    return frame(w)


def big_input() -> bytes:
    w = BitWriter()
    for value, width in ((1, 1), (0, 1), (1, 2)):
        w.uint(value, width, HEADER)
    for v in (0, 1, 1 << 20, 1 << 20, 0, 0, 10):  # mlp, in_shape, no conv, no fc, out
        w.uv(v, HEADER)
    return frame(w)


def dense_entropy(n: int, levels: int) -> bytes:
    """Dense index, values range-coded over a 2**16-entry codebook from arbitrary words."""
    w = start(1)
    name_shape(w, "w", (n,))
    weight_settings(w, index=0, values=1, levels=levels, bits=16)
    w.uv(n, HEADER)
    w.uint(15, 4, HEADER)
    w.array(np.ones(levels, dtype=np.uint16), 16, HEADER)
    words = np.random.default_rng(0).integers(0, 1 << 32, 2000, dtype=np.uint64)
    w.uv(words.size, HEADER)
    w.array(words, 32, HEADER)
    return frame(w)


def relative(n: int) -> bytes:
    """Valid: relative index with 1-bit gaps, every gap 0: one bit per weight."""
    w = start(1)
    name_shape(w, "w", (n,))
    weight_settings(w, index=2)
    w.uv(n, HEADER)
    w.uint(0, 5, HEADER)
    w.uv(n, HEADER)
    w.array(np.zeros(n, dtype=np.uint8), 1, HEADER)
    return frame(w)


def bitmask(n: int) -> bytes:
    w = start(1)
    name_shape(w, "w", (n,))
    weight_settings(w, index=1)
    w.uv(n, HEADER)
    w.array(np.ones(n, dtype=np.uint8), 1, HEADER)
    return frame(w)


def uniform_per_channel(rows: int, cols: int) -> bytes:
    """Valid: 16-bit uniform with one scale per channel (a 2**16-column codebook per row if
    it were built), every weight nonzero, fixed-width codes."""
    w = start(1)
    name_shape(w, "w", (rows, cols))
    weight_settings(w, index=0, bits=16, uniform_rows=rows)
    w.uv(rows * cols, HEADER)
    w.array(np.arange(rows * cols) % (1 << 16), 16, HEADER)
    return frame(w)


def many_tensors(count: int, rows: int) -> bytes:
    """Valid: ``count`` coded 16 x 16 weights with two nonzeros each."""
    mask = np.zeros(rows * 16, dtype=bool)
    mask[[3, 200]] = True
    cp = coded_encode(mask, rows)
    w = start(count)
    for i in range(count):
        name_shape(w, f"l{i}.weight", (rows, 16))
        weight_settings(w, index=3)
        w.uv(2, HEADER)
        coded_words(w, cp.transpose, cp.prior, cp.words)
    return frame(w)


def big_head(classes: int, m: int) -> bytes:
    """A head with a classes x m code matrix of distinct rows (no tensors)."""
    w = start(None, head=True)
    w.uv(2, HEADER)
    w.uv(classes, HEADER)
    w.uint(0, 1, HEADER)
    w.uint(0, 1, HEADER)
    w.uv(m, HEADER)
    code = np.random.default_rng(0).integers(0, 2, (classes, m))
    code[:, :17] = (np.arange(classes)[:, None] >> np.arange(17)[None, :]) & 1
    w.array(code.ravel(), 1, HEADER)
    w.uv(0, HEADER)
    return frame(w)


def plan_model(plan: Plan, classes: int | None) -> bytes:
    """Valid: every weight all 1.0 (dense, 1-entry codebook), every bias float16."""
    w = start(None, plan, head=classes is not None)
    if classes is not None:
        w.uv(0, HEADER)
        w.uv(classes, HEADER)
        w.uint(0, 1, HEADER)
    for name, shape in plan_shapes(plan).items():
        n = int(np.prod(shape))
        if name.endswith("weight"):
            weight_settings(w, index=0)
            w.uv(n, HEADER)
        else:
            float16(w, None, n)
    return frame(w)


FILES: dict[str, tuple[str, Callable[[], bytes]]] = {
    # name: (what it declares, forger). First the forgeries of issue 10 ...
    "issue: coded 1-D": ("1e6 weights, coded positions", lambda: coded_positions((10**6,), 1)),
    "issue: coded 1-D, 1.6 KB": ("4e6 weights, coded positions",
                                 lambda: coded_positions((4 * 10**6,), 384)),
    "issue: 1-entry codebook": ("134 M weights, 65 KB", lambda: one_level(134_000_000, 32_700)),
    "issue: 40,000-layer plan": ("40,000 fc layers", lambda: plan_layers(40_000)),
    "issue: plan input 2^40": ("input 1 x 2^20 x 2^20", big_input),
    # ... then the worst cases within the ceilings.
    "coded, adaptive, 2^16 rows x 128": (
        "8.4 M weights, 65,536 decoder calls",
        lambda: coded_positions((MAX_CODED_ROWS, MAX_ELEMENTS // MAX_CODED_ROWS), 30_000)),
    "coded, adaptive, 2^16 rows x 1": ("65,536 decoder calls",
                                       lambda: coded_positions((MAX_CODED_ROWS,), 1)),
    "coded, static, 8.4 M": ("8.4 M weights, one call",
                             lambda: coded_positions((MAX_CODED_ROWS, 128), 30_000, prior=7)),
    "dense, entropy, 2^16 codebook": ("8.4 M range-coded values",
                                      lambda: dense_entropy(MAX_ELEMENTS, 1 << 16)),
    "dense, 1-entry codebook": ("8.4 M weights in 8 KB",
                                lambda: one_level(MAX_ELEMENTS - 4000, 4000)),
    "relative, 1-bit gaps": ("8.4 M weights", lambda: relative(MAX_ELEMENTS - 4096)),
    "bitmask": ("8.4 M weights", lambda: bitmask(MAX_ELEMENTS - 4096)),
    "uniform per channel, 16 bits": ("4096 x 2^16 codebook if built",
                                     lambda: uniform_per_channel(4096, 120)),
    "4096 coded tensors": ("MAX_TENSORS weights", lambda: many_tensors(MAX_TENSORS, 16)),
    "head 65536 x 120": ("65,536-class code matrix", lambda: big_head(65536, 120)),
    "plan of 64 layers": ("64 fc layers of 360", lambda: plan_model(
        Plan("mlp", (1, 1, 1), (), (360,) * 64, 10), None)),
    "MNIST MLP, 8 M weights": ("784-10000-10 with a head", lambda: plan_model(
        Plan("mlp", (1, 28, 28), (), (10_000,), 10), 10)),
}

DECODE_ONLY = """
import sys, time
from leanbits.bits.container import decode
from leanbits.errors import FormatError
data = open(sys.argv[1], "rb").read()
t = time.process_time()
try:
    decode(data)
except FormatError:
    pass
print(time.process_time() - t)
"""


# ---------------------------------------------------------------------- measuring


def run_child(argv: list[str], env: dict[str, str], timeout: float) -> dict[str, object]:
    """Run ``argv`` under GNU time (a small parent, so the child's maximum RSS is its own,
    not this process's at fork); wall and CPU seconds, max RSS (MB), exit code, last stderr
    line, stdout."""
    timed = ["/usr/bin/time", "-f", "LBTIME %e %U %S %M", "timeout", "-s", "KILL",
             str(timeout), *argv]
    proc = subprocess.run(timed, env=env, capture_output=True, text=True, errors="replace")
    lines = proc.stderr.strip().splitlines()
    stats = next(line for line in reversed(lines) if line.startswith("LBTIME "))
    wall, user, system, rss_kb = (float(v) for v in stats.split()[1:])
    other = [line for line in lines if not line.startswith(("LBTIME ", "Command "))]
    return {"rc": proc.returncode, "wall": wall, "cpu": user + system, "rss": rss_kb / 1024,
            "err": other[-1] if other else "", "out": proc.stdout.strip(),
            "timed_out": wall >= timeout}


def measure(name: str, data: bytes, env: dict[str, str], tmp: Path, timeout: float) -> str:
    path = tmp / "forged.lbits"
    path.write_bytes(data)
    unpack = run_child([sys.executable, "-m", "leanbits", "unpack", str(path), "-o",
                        str(tmp / f"out-{len(list(tmp.iterdir()))}")], env, timeout)
    decode = run_child([sys.executable, "-c", DECODE_ONLY, str(path)], env, timeout)
    if unpack["timed_out"]:
        outcome = f"killed after {timeout:.0f} s"
    else:
        text = str(unpack["err"]).replace("leanbits: error: ", "").replace(str(path) + ": ", "")
        text = text.replace("|", "/")
        outcome = f"exit {unpack['rc']}" + (f": {text[:90]}" if unpack["rc"] else "")
    decode_cpu = (f"{float(decode['out']):.2f}" if not decode["timed_out"] and decode["out"]
                  else "-")
    return (f"| {name} | {FILES[name][0]} | {len(data):,} | {outcome} | {unpack['wall']:.1f} | "
            f"{unpack['cpu']:.2f} | {unpack['rss']:.0f} | {decode_cpu} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, help="run the children against this src/ directory")
    ap.add_argument("--only", nargs="*", help="measure only these files (names as listed)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per child")
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = ap.parse_args()
    env = dict(os.environ)
    if args.src is not None:
        env["PYTHONPATH"] = str(args.src.resolve()) + os.pathsep + env.get("PYTHONPATH", "")
    names = args.only or list(FILES)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        start = run_child([sys.executable, "-m", "leanbits", "--version"], env, args.timeout)
        for name in names:
            data = FILES[name][1]()
            assert len(data) <= 1 << 20, (name, len(data))
            rows.append(measure(name, data, env, Path(tmp), args.timeout))
            print(rows[-1], flush=True)
    load = os.getloadavg()[0]
    body = "\n".join([
        "Command: `python benchmarks/hostile_lbits.py --write`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} "
        f"while measuring, Python {platform.python_version()}  ",
        f"Date: {dt.date.today().isoformat()}",
        "",
        "Each file is at most 1 MB with a valid checksum. `unpack` columns: the whole "
        "`leanbits unpack FILE -o DIR` process (wall and CPU seconds, maximum RSS); for "
        f"reference, `leanbits --version` alone takes {start['cpu']:.2f} s CPU and "
        f"{start['rss']:.0f} MB. `decode CPU` is `decode()` alone, after the imports. "
        "Wall time on a loaded machine overstates the cost; CPU time does not.",
        "",
        "| file | declares | bytes | outcome | unpack wall s | unpack CPU s | unpack max RSS MB "
        "| decode CPU s |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Goal: every file refused or decoded in under 2 s and 512 MB.",
    ])
    print(body)
    if args.write:
        update_section(Path(__file__).resolve().parent.parent / "BENCHMARKS.md",
                       "Hostile .lbits files", body)


if __name__ == "__main__":
    main()
