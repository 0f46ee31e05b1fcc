"""The training section: weight size, output magnitude, losses and the train-validation
gap per epoch, from each snapshot's ``metrics.jsonl`` (written by :mod:`leanbits.train`).

An epoch record holds ``epoch``, ``train_loss`` / ``train_acc`` (running, over the epoch)
and, when a training subset was evaluated, ``train_eval_loss`` / ``train_eval_acc`` (eval
mode: comparable with the validation numbers, so preferred), ``val_loss``, ``val_acc``,
``gap_acc``, ``mean_abs_output``, ``layers`` (``{layer: {l2_norm, max_abs, zero_frac,
numel}}``) and ``dead_units``. A missing number leaves a gap in its curve.

Runs of a sweep that differ only in their seed (:attr:`TrainingRun.config`) are drawn as
one line: the mean over their seeds per epoch, with a shaded band of ± 1 std; lines named
``group / arm`` get one colour per arm and one line style and marker per group, as the
over-seeds figures do. The tables of such runs show one row per configuration, mean ± std
over its seeds after the last epoch (final metrics, the epoch record, each layer, the dead
units); the epochs before are in the figures, each seed's values in its run's
``metrics.jsonl``. A run of one seed per configuration has one table per run, every
epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from leanbits import paths
from leanbits.report import plots
from leanbits.report.collect import TrainingRun
from leanbits.report.document import Block, Figure, Heading, Table
from leanbits.report.grouping import (
    group,
    group_names,
    network,
    pct,
    seed_of,
    without_seed,
)
from leanbits.report.overseeds import SeedColumn, per_seed_note, seed_cells
from leanbits.results import Row
from leanbits.stats import estimate

#: where a sweep keeps stage directories, relative to its run directory
STAGES_DIR = paths.stages(Path()).name
#: the final metrics (a snapshot's metrics.json) the report shows, in this order
FINAL_KEYS = ("val_acc", "test_acc", "params", "weights", "nonzero_weights",
              "epochs_completed", "train_time_s")
#: per final metric, its column aggregated over seeds: (header, scale, decimals)
FINAL_COLUMNS = {"val_acc": ("val acc (%)", 100, 2), "test_acc": ("test acc (%)", 100, 2),
                 "params": ("params", 1, 0), "weights": ("weights", 1, 0),
                 "nonzero_weights": ("nonzero weights", 1, 0),
                 "epochs_completed": ("epochs completed", 1, 0),
                 "train_time_s": ("train time (s)", 1, 1)}


def num(record: Mapping[str, Any], key: str) -> float | None:
    """``record[key]`` when it is a number (bools excluded), else None."""
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def layers_of(rec: Mapping[str, Any]) -> Mapping[str, Mapping[str, Any]]:
    """``{layer: statistics}`` of an epoch record (empty when it has none)."""
    layers = rec.get("layers")
    return layers if isinstance(layers, Mapping) else {}


def _last_layer(rec: Mapping[str, Any]) -> Mapping[str, Any] | None:
    layers = layers_of(rec)
    return list(layers.values())[-1] if layers else None


def total_l2(layers: Mapping[str, Mapping[str, Any]]) -> float | None:
    """L2 norm of all weights together, from per-layer norms: sqrt(sum of squares)."""
    norms = [num(d, "l2_norm") for d in layers.values()]
    if not norms or any(n is None for n in norms):
        return None
    return math.sqrt(sum(n * n for n in norms))


def zero_fraction(layers: Mapping[str, Mapping[str, Any]]) -> float | None:
    """Fraction of all weights that are exactly zero (per-layer fractions weighted by size)."""
    pairs = [(num(d, "zero_frac"), num(d, "numel")) for d in layers.values()]
    if not pairs or any(z is None or n is None for z, n in pairs):
        return None
    total = sum(n for _, n in pairs)
    return sum(z * n for z, n in pairs) / total if total else None


def _max_abs(rec: Mapping[str, Any]) -> float | None:
    vals = [num(d, "max_abs") for d in layers_of(rec).values()]
    vals = [v for v in vals if v is not None]
    return max(vals) if vals else None


def _train_loss(rec: Mapping[str, Any]) -> float | None:
    loss = num(rec, "train_eval_loss")
    return loss if loss is not None else num(rec, "train_loss")


def _train_acc(rec: Mapping[str, Any]) -> float | None:
    acc = num(rec, "train_eval_acc")
    return acc if acc is not None else num(rec, "train_acc")


def _gap(rec: Mapping[str, Any]) -> float | None:
    g = num(rec, "gap_acc")
    if g is None:
        t, v = _train_acc(rec), num(rec, "val_acc")
        g = None if t is None or v is None else t - v
    return pct(g)


def _series(epochs: Sequence[Mapping[str, Any]],
            fn: Callable[[Mapping[str, Any]], float | None]) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for rec in epochs:
        y = fn(rec)
        if y is not None:
            xs.append(int(rec["epoch"]))
            ys.append(y)
    return xs, ys


def _mean_series(runs: Sequence[TrainingRun],
                 fn: Callable[[Mapping[str, Any]], float | None],
                 ) -> tuple[list[int], list[float], list[float | None]]:
    """Per epoch, the mean and std (None for one value) of ``fn`` over the runs that have
    it at that epoch: epochs, means, stds."""
    values: dict[int, list[float]] = {}
    for run in runs:
        for x, y in zip(*_series(run.epochs, fn), strict=True):
            values.setdefault(x, []).append(y)
    xs = sorted(values)
    ests = [estimate(values[x]) for x in xs]
    return xs, [e.mean for e in ests], [e.std if e.n > 1 else None for e in ests]


def _run_styles(runs: Sequence[TrainingRun]) -> list[tuple[str, str, str]]:
    """(colour, linestyle, marker) per run: colour by head; linestyle and marker tell the
    runs of one head apart."""
    others: dict[str | None, int] = {}
    per_head: dict[str | None, int] = {}
    out = []
    for run in runs:
        if run.head not in plots.HEAD_COLORS and run.head not in others:
            others[run.head] = len(others)
        color = plots.color_for(run.head, others.get(run.head, 0))
        n = per_head.get(run.head, 0)
        per_head[run.head] = n + 1
        out.append((color, plots.linestyle_for(n), plots.marker_for(n)))
    return out


def config_lines(runs: Sequence[TrainingRun], names: Sequence[str],
                 ) -> list[tuple[str, list[TrainingRun]]]:
    """The figures' lines, first-seen order: the runs of one configuration together (named
    by it), every other run alone (named by ``names``)."""
    keyed = group(zip(runs, names, strict=True),
                  lambda rn: ("config", rn[0].config) if rn[0].config is not None
                  else ("run", rn[1]))
    # a configuration with one run left is that run (named with its seed)
    return [(key[1] if len(pairs) > 1 else pairs[0][1], [r for r, _ in pairs])
            for key, pairs in keyed.items()]


def _line_styles(lines: Sequence[tuple[str, Sequence[TrainingRun]]],
                 ) -> list[tuple[str, str, str]]:
    """(colour, linestyle, marker) per line: for ``group / arm`` configurations (seeds
    aggregated) one colour per arm (its head's when the arm is a head) and one line style
    and marker per group; else by head, as :func:`_run_styles`."""
    paired = (plots.arm_group_indices([label for label, _ in lines])
              if any(len(members) > 1 for _, members in lines) else None)
    if not paired:
        return _run_styles([members[0] for _, members in lines])
    out = []
    for (label, _), (arm, grp) in zip(lines, paired, strict=True):
        head = label.split(" / ")[-1]
        out.append((plots.color_for(head if head in plots.HEAD_COLORS else None, arm),
                    plots.linestyle_for(grp), plots.marker_for(grp)))
    return out


def run_name(run: TrainingRun, runs: Sequence[TrainingRun]) -> str:
    """How a training run is called in the report: its network's group name in a sweep,
    else its head (with its directory when that does not tell it apart)."""
    if run.name:
        return run.name
    if run.head and sum(r.head == run.head for r in runs) == 1:
        return run.head if len(runs) > 1 else f"{run.head} ({run.label})"
    return f"{run.head} ({run.label})" if run.head else run.label


def name_runs(runs: list[TrainingRun], results: Sequence[Row]) -> None:
    """Name each sweep training run as its network is named in the result groups (e.g.
    ``lenet5 / llr``) rather than by its stage directory; when the sweep trained several
    seeds, also name its configuration (the same without the seed, e.g. ``1k / l2``) and
    put the runs in the sweep's order, so its configurations, their colours and markers
    come in the order of the over-seeds figures."""
    if not results:
        return
    names = group_names(results)
    several = len({seed_of(r) for r in results}) > 1
    configs = (group_names([without_seed(r) for r in results]) if several
               else [None] * len(results))
    by_stage: dict[str, tuple[str | None, str | None]] = {}
    for r, name, config in zip(results, names, configs, strict=True):
        if "train" in r.stages:
            by_stage[f"{STAGES_DIR}/{network(r)}"] = (
                name if name != "all points" else None,
                # seeds were all that differed: the configuration is the whole sweep
                config if config != "all points" else "all seeds")
    for run in runs:
        name, config = by_stage.get(run.label, (None, None))
        run.name = name or run.name
        run.config = config
    if several:
        order = {label: i for i, label in enumerate(by_stage)}
        runs.sort(key=lambda run: order.get(run.label, len(order)))  # stable: others last


def training_section(runs: Sequence[TrainingRun], notes: list[str]) -> list[Block]:
    """Weight size, output magnitude, losses and the train-validation gap per epoch."""
    blocks: list[Block] = [Heading("Training")]
    if not runs:
        notes.append("Training curves: skipped - no metrics.jsonl with epoch records found.")
        return []
    names = [run_name(r, runs) for r in runs]
    lines = config_lines(runs, names)
    styles = _line_styles(lines)
    sizes = sorted({len(members) for _, members in lines if len(members) > 1})
    per_line = "one line per training run"
    if sizes:
        n = str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
        per_line = (f"one line per configuration: runs that differ only in their seed are "
                    f"drawn at their mean over {n} seeds, the shaded band ± 1 std")

    def series(fn) -> list[plots.Series]:
        out = []
        for (label, members), (color, ls, marker) in zip(lines, styles, strict=True):
            if len(members) == 1:
                xs, ys = _series(members[0].epochs, fn)
                if xs:
                    # Markers only on short runs: there a line alone may be a single dot.
                    out.append(plots.Series(label, xs, ys, color, ls,
                                            marker if len(xs) < 4 else None))
                continue
            xs, ys, sd = _mean_series(members, fn)
            if xs:
                # A marker every few epochs tells the groups apart where styles repeat.
                out.append(plots.Series(label, xs, ys, color, ls, marker, spread=sd,
                                        band=True, markevery=max(1, len(xs) // 6)))
        return out

    has_layers = any(layers_of(rec) for run in runs for rec in run.epochs)
    if has_layers:
        panels = [
            plots.Panel("All weights: L2 norm", "epoch", "||w||₂ (weight units)",
                        series(lambda r: total_l2(layers_of(r))), logy=True),
            plots.Panel("Output layer: L2 norm", "epoch", "||w||₂ (weight units)",
                        series(lambda r: num(_last_layer(r) or {}, "l2_norm")),
                        logy=True),
            plots.Panel("Largest weight", "epoch", "max |w| (weight units)",
                        series(_max_abs), logy=True),
            plots.Panel("Exactly-zero weights", "epoch", "zero weights (%)",
                        series(lambda r: pct(zero_fraction(layers_of(r))))),
        ]
        blocks.append(Figure("weights", plots.line_figure(panels, "Weight size per epoch"),
                             "Weight L2 norm (all layers and output layer), largest |w| and "
                             "fraction of exactly-zero weights per epoch (log scale "
                             f"except the last panel), {per_line}."))
    else:
        notes.append("Weight-size plot: skipped - epoch records have no 'layers' "
                     "(l2_norm, max_abs, zero_frac, numel).")
    out_series = series(lambda r: num(r, "mean_abs_output"))
    if out_series:
        blocks.append(Figure("outputs", plots.line_figure([plots.Panel(
            "Output magnitude (validation set)", "epoch", "mean |output| (logit / LLR, nats)",
            out_series)]), "Mean absolute output - logit (softmax) or LLR (LLR heads) - on "
            "the validation set per epoch" + (f", {per_line}." if sizes else ".")))
    else:
        notes.append("Output-magnitude plot: skipped - no 'mean_abs_output' in epoch records.")

    loss_panels = [
        plots.Panel("Training loss", "epoch", "loss (nats per example)", series(_train_loss),
                    logy=True),
        plots.Panel("Validation loss", "epoch", "loss (nats per example)",
                    series(lambda r: num(r, "val_loss")), logy=True),
        plots.Panel("Accuracy gap: training − validation", "epoch", "gap (percentage points)",
                    series(_gap)),
        plots.Panel("Validation accuracy", "epoch", "accuracy (%)",
                    series(lambda r: pct(num(r, "val_acc")))),
    ]
    if any(p.series for p in loss_panels):
        blocks.append(Figure("loss", plots.line_figure(loss_panels,
                                                       "Losses and accuracy per epoch"),
                             "Training loss (eval mode on a training subset where recorded) "
                             "and validation loss, the train - validation accuracy gap, and "
                             "validation accuracy per epoch (losses on a log scale)"
                             + (f"; {per_line}." if sizes else ".")))
    else:
        notes.append("Loss plot: skipped - no train_loss / val_loss in epoch records.")

    if sizes:  # seeds to aggregate: one row per configuration
        blocks += _seed_tables(lines)
        finals = [(label, [r.final for r in members if r.final]) for label, members in lines]
        finals = [(label, fs) for label, fs in finals if fs]
        if finals:
            keys = [k for k in FINAL_KEYS if any(k in f for _, fs in finals for f in fs)]
            cols = [SeedColumn(header, lambda f, k=k: num(f, k), scale, digits)
                    for k in keys for header, scale, digits in [FINAL_COLUMNS[k]]]
            blocks[1:1] = [
                Table(["configuration", "seeds", *(c.header for c in cols)],
                      [[label, len(fs), *seed_cells(fs, cols)] for label, fs in finals],
                      "Final metrics: mean ± std over seeds"),
                per_seed_note(per_run_files(runs, paths.metrics(Path()).name))]
        return blocks

    headers = ["epoch", "train loss", "val loss", "train acc", "val acc", "gap (pp)",
               "mean |out|", "||w|| all", "||w|| out", "max |w|", "zero %"]
    for run, name in zip(runs, names, strict=True):
        rows = []
        for r in run.epochs:
            last = _last_layer(r) or {}
            rows.append([int(r["epoch"]), _train_loss(r), num(r, "val_loss"),
                         _train_acc(r), num(r, "val_acc"), _gap(r),
                         num(r, "mean_abs_output"), total_l2(layers_of(r)),
                         num(last, "l2_norm"), _max_abs(r),
                         pct(zero_fraction(layers_of(r)))])
        where = "" if run.label in name else f" ({run.label})"
        blocks.append(Table(headers, rows, f"Per epoch: {name}{where}"))
        final_layers = layers_of(run.epochs[-1])
        if final_layers:
            blocks.append(Table(
                ["layer", "weights", "L2 norm", "max |w|", "zero %"],
                [[k, num(d, "numel"), num(d, "l2_norm"),
                  num(d, "max_abs"), pct(num(d, "zero_frac"))]
                 for k, d in final_layers.items()],
                f"Per layer after the last epoch: {name}"))
        dead = run.epochs[-1].get("dead_units")
        if isinstance(dead, Mapping) and dead:
            blocks.append(Table(["activation", "dead units"], [[k, v] for k, v in dead.items()],
                                f"Units that never fire on the validation set: {name}"))
    finals = [(name, run.final) for run, name in zip(runs, names, strict=True) if run.final]
    if finals:
        keys = [k for k in FINAL_KEYS if any(k in f for _, f in finals)]
        blocks.insert(1, Table(["run", *keys], [[n, *(f.get(k) for k in keys)]
                                                for n, f in finals], "Final metrics"))
    return blocks


def per_run_files(runs: Sequence[TrainingRun], name: str) -> str:
    """Where each run's ``name`` file is, as the report says it: ``stages/train/*/name``
    when the runs share one parent directory, else each run's own.

    Example:
        >>> per_run_files([TrainingRun("stages/train/a", None, Path(), [])], "metrics.json")
        'stages/train/*/metrics.json'
    """
    parents = {Path(r.label).parent.as_posix() for r in runs}
    return f"{parents.pop()}/*/{name}" if len(parents) == 1 else f"each run's {name}"


#: the columns of the per-configuration table after the last epoch: (header, value of an
#: epoch record, scale, decimals)
LAST_EPOCH_COLUMNS: tuple[SeedColumn[Mapping[str, Any]], ...] = (
    SeedColumn("epoch", lambda r: num(r, "epoch"), digits=0),
    SeedColumn("train loss", _train_loss, digits=4),
    SeedColumn("val loss", lambda r: num(r, "val_loss"), digits=4),
    SeedColumn("train acc (%)", _train_acc, 100),
    SeedColumn("val acc (%)", lambda r: num(r, "val_acc"), 100),
    SeedColumn("gap (pp)", _gap),
    SeedColumn("mean |out|", lambda r: num(r, "mean_abs_output"), digits=3),
    SeedColumn("||w|| all", lambda r: total_l2(layers_of(r)), digits=3),
    SeedColumn("||w|| out", lambda r: num(_last_layer(r) or {}, "l2_norm"), digits=3),
    SeedColumn("max |w|", _max_abs, digits=4),
    SeedColumn("zero %", lambda r: pct(zero_fraction(layers_of(r)))),
)
#: the columns of the per-configuration table of each layer after the last epoch
LAYER_COLUMNS: tuple[SeedColumn[Mapping[str, Any]], ...] = (
    SeedColumn("weights", lambda d: num(d, "numel"), digits=0),
    SeedColumn("L2 norm", lambda d: num(d, "l2_norm"), digits=3),
    SeedColumn("max |w|", lambda d: num(d, "max_abs"), digits=4),
    SeedColumn("zero %", lambda d: pct(num(d, "zero_frac"))),
)


def _seed_tables(lines: Sequence[tuple[str, Sequence[TrainingRun]]]) -> list[Block]:
    """The tables of runs with several seeds, one row per configuration (mean ± std over its
    seeds) after the last epoch: the epoch record, each layer and the dead units. The
    epochs before are in the figures (the same means and stds) and in each run's
    metrics.jsonl."""
    runs = [r for _, members in lines for r in members]
    note = per_seed_note(per_run_files(runs, paths.metrics_log(Path()).name)
                         + " (every epoch)")
    lasts = [(label, [r.epochs[-1] for r in members]) for label, members in lines]
    blocks: list[Block] = [
        Table(["configuration", "seeds", *(c.header for c in LAST_EPOCH_COLUMNS)],
              [[label, len(recs), *seed_cells(recs, LAST_EPOCH_COLUMNS)]
               for label, recs in lasts],
              "After the last epoch: mean ± std over seeds (every epoch: the figures above)"),
        note]
    layer_rows = []
    for label, recs in lasts:
        names = list(dict.fromkeys(k for rec in recs for k in layers_of(rec)))
        for k in names:
            stats = [layers_of(rec)[k] for rec in recs if k in layers_of(rec)]
            layer_rows.append([label, k, len(stats), *seed_cells(stats, LAYER_COLUMNS)])
    if layer_rows:
        blocks += [Table(["configuration", "layer", "seeds",
                          *(c.header for c in LAYER_COLUMNS)], layer_rows,
                         "Per layer after the last epoch: mean ± std over seeds"), note]
    dead = [(label, [d for d in (rec.get("dead_units") for rec in recs)
                     if isinstance(d, Mapping) and d]) for label, recs in lasts]
    dead = [(label, ds) for label, ds in dead if ds]
    if dead:
        acts = list(dict.fromkeys(k for _, ds in dead for d in ds for k in d))
        cols = [SeedColumn(a, lambda d, a=a: num(d, a), digits=1) for a in acts]
        blocks += [Table(["configuration", "seeds", *acts],
                         [[label, len(ds), *seed_cells(ds, cols)] for label, ds in dead],
                         "Units that never fire on the validation set after the last epoch: "
                         "mean ± std over seeds"), note]
    return blocks
