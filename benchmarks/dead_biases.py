"""Dead units' biases in the record files: what format version 3 saves on files written
before it.

Each finished compress stage of the given ``leanbits study record`` runs holds the file its
search chose. This script decodes it, sets to zero the biases of the units no live weight
reads (what ``remove_dead_units`` now does; the search had already folded the constants of
dead units forward) and encodes the non-weights again (:func:`reencode`): the same weight
records, new non-weight records, sparse where zeros make that smaller. Both are evaluated
on the validation split (the test split is not read); an int8 scale can shrink when the
largest bias was a dead unit's, which may move the accuracy by an example.

    python benchmarks/dead_biases.py RUN [RUN ...] [--write]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_md import publish  # noqa: E402

from leanbits import paths  # noqa: E402
from leanbits.bits import evaluate_lbits, unpack  # noqa: E402
from leanbits.bits.container import encode  # noqa: E402
from leanbits.compression.search import accuracy  # noqa: E402
from leanbits.data import load_data  # noqa: E402
from leanbits.errors import LeanbitsError  # noqa: E402
from leanbits.models import build  # noqa: E402
from leanbits.prune.structure import unread_units  # noqa: E402
from leanbits.sweep.experiment import load_experiment  # noqa: E402
from leanbits.sweep.stages import is_complete  # noqa: E402

TITLE = "Dead units' biases in the record files (format version 3)"
KEYS = ("bits", "quant", "index", "values", "nonweight_dtype", "per_channel")


def reencode(path: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """The file's account and what the current writer makes of its network: the weight
    records are the file's (its quantized weights and masks), the non-weight records new,
    with the biases of the units that no live weight reads set to zero. A record's
    bits depend only on its own tensor, so the new total is the old one with the non-weight
    bits replaced; when re-encoding the weights reproduces them exactly, the whole new file
    is encoded and its size checked against that sum."""
    u = unpack(path)
    model = build(u.plan)
    model.load_state_dict(u.state)
    masks = {k: v.bool() for k, v in u.masks.items()}
    layers = dict(model.named_children())
    with torch.no_grad():  # what remove_dead_units now does to the units nothing reads
        for name, unread in unread_units(model, masks).items():
            if layers[name].bias is not None:
                layers[name].bias[unread] = 0
    kw = {k: settings[k] for k in KEYS if k in settings}
    if settings.get("rate_lambda") is not None:
        kw["rate_lambda"] = settings["rate_lambda"]
    enc = encode(model, u.plan, u.head, masks=masks, **kw)
    total = u.account.total_bits - u.account.nonweight_bits + enc.account.nonweight_bits
    if all(torch.equal(enc.state[k], u.state[k]) for k in u.masks):
        if enc.account.total_bits != total:
            raise RuntimeError(f"{path}: the re-encoded file is not the sum of its records")
    model.load_state_dict({k: (u.state[k] if k in u.masks else enc.state[k]) for k in u.state})
    return {"old": u.account, "total": total, "nonweight": enc.account.nonweight_bits,
            "model": model, "head": u.head}


def rows_of(run: Path) -> list[dict[str, Any]]:
    exp = load_experiment(run / "experiment.toml")
    out, splits = [], {}
    for spec in exp.stages("compress"):
        stage = run / "stages" / spec.relpath
        if not is_complete(stage):
            continue
        chosen = json.loads(paths.compress(stage).read_text(encoding="utf-8"))
        data = spec.data
        key = json.dumps(data, sort_keys=True, default=str)
        if key not in splits:
            splits[key] = load_data(data)  # the splits the run itself used
        again = reencode(paths.lbits(stage), chosen["settings"])
        old, val = again["old"], splits[key].val
        val_new = accuracy(again["model"], val.x, val.y, head=again["head"])
        val_old = evaluate_lbits(paths.lbits(stage), splits[key], names=("val",))["val_acc"]
        out.append({"net": spec.input.config.model, "seed": spec.input.config.seed,
                    "method": chosen["method"], "dtype": chosen["settings"]["nonweight_dtype"],
                    "old": old.total_bits, "new": again["total"],
                    "old_nw": old.nonweight_bits, "new_nw": again["nonweight"],
                    "val_old": val_old, "val_new": val_new,
                    "dense": chosen["dense_float32_bits"]})
    return sorted(out, key=lambda r: (r["net"], r["seed"]))


def table(runs: list[Path], rows: dict[Path, list[dict[str, Any]]]) -> str:
    lines = [f"`python benchmarks/dead_biases.py {' '.join(map(str, runs))} --write` "
             f"({platform.machine()}, {dt.date.today().isoformat()}). Each record file "
             "with its weight records and new non-weight records (dead units' biases zero, "
             "zeros skipped); validation accuracy of both (test not read).", "",
             "| run | net | seed | method | non-weights | non-weight bits | total bits | "
             "fewer | compression | val acc |", "|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        for r in rows[run]:
            lines.append(
                f"| `{run}` | {r['net']} | {r['seed']} | {r['method']} | {r['dtype']} | "
                f"{r['old_nw']:,} -> {r['new_nw']:,} | {r['old']:,} -> {r['new']:,} | "
                f"{100 * (r['old'] - r['new']) / r['old']:.1f} % | "
                f"{r['dense'] / r['old']:.1f}x -> {r['dense'] / r['new']:.1f}x | "
                f"{r['val_old']:.4f} -> {r['val_new']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = ap.parse_args(argv)
    try:
        rows = {run: rows_of(run) for run in args.runs}
    except (LeanbitsError, OSError) as exc:
        print(f"dead_biases: {exc}", file=sys.stderr)
        return 1
    body = table(args.runs, rows)
    publish(body, TITLE, args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
