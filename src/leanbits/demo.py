"""``leanbits demo`` (``make demo``): the main job, run as the packaged ``demo`` experiment.

The experiment (``leanbits/sweep/studies/demo.toml``, also ``leanbits study demo``) is an
ordinary sweep: train -> profile -> snapshot-prune (bisection on validation accuracy) ->
quantize at several bit widths -> keep the fewest-bit packed model (``[pick]``). This module
only runs it, says which step is running, prints what each step did from the run's result
rows, and writes the report. Everything lands in one run directory (``RUNS/demo``).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from leanbits import paths
from leanbits.bits import unpack
from leanbits.console import table
from leanbits.report import build_report
from leanbits.results import Row, profile_rows
from leanbits.sweep import stages
from leanbits.sweep.experiment import Experiment, load_experiment
from leanbits.sweep.presets import study_path
from leanbits.sweep.run import RunSummary, run_experiment

#: the steps as the demo announces them, by the stage kind that starts each
STEPS = ("train", "profile", "prune", "bits", "report")


def _say(step: str, text: str) -> None:
    print(f"\n[{STEPS.index(step) + 1}/{len(STEPS)}] {text}", file=sys.stderr, flush=True)


def _step_text(exp: Experiment, kind: str) -> str:
    s = exp.settings
    if kind == "train":
        t = s.get("train", {})
        return f"training {t.get('model')} ({t.get('head')} head) on {exp.data['dataset']}"
    if kind == "profile":
        return ("efficiency profile: prune once at several sparsities with each method "
                f"({', '.join(exp.profiles[0].config.methods)})")
    if kind == "prune":
        cfg = exp.stages("prune")[0].config
        goal = (f"within {100 * cfg.max_drop:g} points of" if cfg.max_drop is not None
                else f"reaching {cfg.target_accuracy}" if cfg.target_accuracy is not None
                else f"at sparsity {cfg.sparsity} of")
        return (f"snapshot pruning ({cfg.method}) to the sparsest level {goal} validation "
                "accuracy")
    cfg = exp.stages("bits")[0].config
    widths = sorted({p.last.config.bits for p in exp.points})
    return (f"quantizing ({cfg.quant}, {widths[0]}-{widths[-1]} bits), coding positions "
            "and values, packing")


def run(out: Path, quick: bool = False, epochs: int | None = None) -> RunSummary:
    """Run the demo experiment into ``out``, print every step, write the report.

    Args:
        out: the run directory.
        quick: the experiment's ``[quick]`` version (a few seconds; used by the tests).
        epochs: training epochs instead of the experiment's.

    Returns:
        The sweep's :class:`RunSummary`.
    """
    overrides = [] if epochs is None else [f"train.epochs={epochs}"]
    exp = load_experiment(study_path("demo"), quick=quick, overrides=overrides)

    def log(line: str) -> None:
        kind = line.split(":", 1)[0]
        if kind in STEPS:  # a level starts: announce its step, then the sweep's own line
            _say(kind, _step_text(exp, kind))
            line = f"    {line}"
        print(line, file=sys.stderr, flush=True)

    summary = run_experiment(exp, out, log=log)
    root = paths.stages(out)
    picked = summary.rows[summary.picked] if summary.picked is not None else None
    first = picked or summary.rows[0]
    _print_training(root / first.stages["train"], first)
    for spec in exp.profiles:
        _print_profile(root / spec.relpath)
    if "prune" in first.stages:
        _print_pruning(root, first)
    _print_bits(summary.rows)
    if picked is not None:
        _print_packed(Path(out), picked)
    _say("report", "writing the report")
    files = build_report(out)
    print(f"\nrun:      {out}\nsnapshot: {root / first.stages['train']}")
    if "prune" in first.stages:
        print(f"pruned:   {root / first.stages['prune']}")
    if picked is not None:
        print(f"packed:   {paths.lbits(out)} ({picked.file_bytes:,} bytes, "
              f"{picked.compression:.1f}x smaller than dense float32, "
              f"test acc {picked.test_acc:.4f})")
    print(f"report:   {files.html}")
    return summary


def _print_training(snap: Path, row: Row) -> None:
    epochs = [json.loads(line) for line in
              paths.metrics_log(snap).read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [[e["epoch"], e["train_loss"], e["val_acc"], e["mean_abs_output"],
             max(v["max_abs"] for v in e["layers"].values())] for e in epochs]
    print(table(["epoch", "train loss", "val acc", "mean |out|", "max |w|"], rows,
                title="training"))
    t = row.metrics["train"]
    seconds = stages.read_stage(snap)["seconds"]
    print(f"trained: val acc {t['val_acc']:.4f}, test acc {t['test_acc']:.4f}, "
          f"{t['params']:,} parameters, {seconds:.0f}s")


def _print_profile(stage_dir: Path) -> None:
    doc = json.loads(paths.profile(stage_dir).read_text(encoding="utf-8"))
    print(table(["method", "sparsity", "val acc", "nonzero weights"],
                [[r.axes["method"], r.axes["sparsity"], r.val_acc, r.nonzero_weights]
                 for r in profile_rows(doc)], title="profile"))


def _widths(in_shape: list[int], conv: list[int], fc: list[int], out: int) -> str:
    """Layer widths, input to output: ``784-300-100-10``, or ``1x28x28-c6-c16-120-84-10``."""
    first = "x".join(map(str, in_shape)) if conv else str(math.prod(in_shape))
    return "-".join([first, *(f"c{c}" for c in conv), *map(str, fc), str(out)])


def _print_pruning(root: Path, row: Row) -> None:
    p = row.metrics["prune"]
    d = p["dense"]
    plan = json.loads(paths.model_json(root / row.stages["train"]).read_text(
        encoding="utf-8"))["plan"]
    small = p["compact"]
    print(table(
        ["model", "val acc", "test acc", "nonzero weights", "effective conn.", "MACs/example",
         "widths"],
        [["dense", d["val_acc"], d["test_acc"], d["nonzero_weights"], d["nonzero_weights"],
          d["macs_dense"], _widths(plan["in_shape"], plan["conv"], plan["fc"], plan["out"])],
         [f"{p['method']} @ {p['sparsity']:.3f}", p["val_acc"], p["test_acc"],
          p["nonzero_weights"], p["effective_connections"], p["macs_effective"],
          _widths(plan["in_shape"], small["conv"], small["fc"], plan["out"])]],
        title="before / after snapshot pruning"))
    seconds = stages.read_stage(root / row.stages["prune"])["seconds"]
    print(f"pruning cost: {p['backprop_epochs']} backprop epoch(s) of {p['method']}; the "
          f"stage took {seconds:.1f}s with its search over "
          f"{len(p.get('search', {}).get('evaluations', []))} levels")


def _print_bits(rows: list[Row]) -> None:
    packed = [r for r in rows if r.total_bits is not None]
    print(table(["bits/weight", "total bits", "bytes", "x smaller than f32", "val acc",
                 "test acc"],
                [[r.settings["bits"]["bits"], r.total_bits, r.file_bytes, r.compression,
                  r.val_acc, r.test_acc] for r in packed],
                title="accuracy against total bits (compact pruned model)"))


def _print_packed(out: Path, row: Row) -> None:
    lbits = paths.lbits(out)
    size = lbits.stat().st_size
    account = unpack(lbits).account
    if size != account.total_bytes or size != row.file_bytes:
        raise RuntimeError(f"{lbits}: {size} bytes, but its bit account says "
                           f"{account.total_bytes}")
    print(account.format_table())
    print(table(["file", "bytes", "x smaller than dense float32", "val acc", "test acc"],
                [[str(lbits), size, row.compression, row.val_acc, row.test_acc]],
                title="packed model (accuracy of the unpacked file)"))
