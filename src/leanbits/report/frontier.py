"""The frontier section: accuracy against total bits with the Pareto frontier, the fewest
bits each network needed per accuracy level, the bit breakdown of chosen frontier points
and per-layer sparsity.

A run of several seeds has the same tables with one row per configuration (a grid point
without its seed), mean ± std over its seeds; its frontier, fewest bits per level and
chosen points are those of the seed means, chosen on validation accuracy where the rows
have it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leanbits import paths
from leanbits.report import plots
from leanbits.report.bits import bit_breakdown, breakdown_blocks
from leanbits.report.collect import TrainingRun
from leanbits.report.document import Block, Figure, Heading, Table
from leanbits.report.grouping import (
    accuracy_key,
    group,
    group_names,
    pct,
    point_labels,
    seed_of,
    spread,
    without_seed,
)
from leanbits.report.overseeds import (
    Sample,
    SeedColumn,
    frontier_figure,
    per_seed_note,
    seed_cells,
)
from leanbits.report.training import (
    config_lines,
    layers_of,
    num,
    per_run_files,
    run_name,
)
from leanbits.results import Row
from leanbits.stats import estimate
from leanbits.sweep.frontier import bits_for_accuracy, pareto_front

#: at most this many points get a bit breakdown / per-layer sparsity bar
CHOSEN_POINTS = 6
#: accuracy levels at which groups are compared by the fewest bits that reached them
ACCURACY_LEVELS = (0.9, 0.95, 0.97, 0.98, 0.985, 0.99, 0.995)


def frontier_section(rows: Sequence[Row], notes: list[str],
                     runs: Sequence[TrainingRun], figure: bool = True,
                     source: str | None = None) -> list[Block]:
    """Accuracy against total bits with the Pareto frontier, bit breakdowns and per-layer
    sparsity of chosen frontier points; with several seeds, of configurations
    (:func:`configurations`), mean ± std over their seeds.

    Args:
        rows: the run's result (or profile) rows.
        notes: where skipped parts are noted.
        runs: the training runs (their exactly-zero weights when no row has sparsity).
        figure: draw test error against total bits here (False: the results-over-seeds
            section draws it, seeds aggregated).
        source: the file the rows were read from, named under tables aggregated over
            seeds (default: results.json).
    """
    acc = accuracy_key(rows)
    usable = [r for r in rows if r.total_bits is not None and acc
              and r.accuracy(acc) is not None]
    if len({seed_of(r) for r in rows}) > 1:
        return _seeds_section(rows, usable, acc, notes, runs, figure,
                              source or paths.results(Path()).name)
    blocks: list[Block] = []
    chosen: list[tuple[str, Row]] = []
    if not usable:
        if figure:  # else the results-over-seeds section drew it
            notes.append("Accuracy-vs-bits frontier: skipped - no row with total_bits and "
                         "test_acc / val_acc.")
    else:
        pts = [(r.total_bits, r.accuracy(acc)) for r in usable]
        front = pareto_front(pts)
        on_front = set(front)
        labels = point_labels(usable)
        groups_of = group_names(usable)
        groups = group(range(len(usable)), lambda i: groups_of[i])
        blocks.append(Heading("Accuracy against total bits"))
        if figure:
            samples = [Sample(groups_of[i], labels[i], 0, float(r.total_bits), r.val_acc,
                              r.test_acc) for i, r in enumerate(usable)]
            blocks.append(frontier_figure(samples, "frontier", "total bits (log scale)",
                                          "Test error against total bits"))
        order = sorted(range(len(usable)), key=lambda i: (pts[i][0], -pts[i][1]))
        blocks.append(Table(
            ["point", "group", "total bits", "bits/weight", "nonzero weights", "val acc",
             "test acc", "frontier"],
            [[labels[i], groups_of[i], usable[i].total_bits, _per_weight(usable[i]),
              usable[i].nonzero_weights, usable[i].val_acc, usable[i].test_acc,
              "yes" if i in on_front else ""] for i in order],
            "All points, fewest bits first"))
        if len(groups) > 1:
            # Which point reaches a level is a choice: made on validation, never on test.
            sel = "val_acc" if any(r.val_acc is not None for r in usable) else acc
            sel_pts = [(r.total_bits, r.accuracy(sel)) for r in usable]
            blocks.append(_levels_table(groups, sel_pts,
                                        "test" if sel == "test_acc" else "validation"))
        with_parts = [i for i in front if bit_breakdown(usable[i])]
        if not with_parts:
            with_parts = [i for i in order if bit_breakdown(usable[i])]
        chosen = [(labels[i], usable[i]) for i in spread(with_parts, CHOSEN_POINTS)]
        if not chosen:
            notes.append("Bit breakdown: skipped - no row has a bits_breakdown.")
    if chosen:
        blocks += breakdown_blocks([(label, [r]) for label, r in chosen])
    sparsity_points = sparsity_of([r for _, r in chosen])
    if not sparsity_points:
        candidates = [r for r in rows if r.layer_sparsity]
        candidates.sort(key=lambda r: r.nonzero_weights or 0, reverse=True)
        sparsity_points = sparsity_of(spread(candidates, CHOSEN_POINTS))
    if not sparsity_points:
        # Training with L1 or group lasso leaves exact zeros: show where they are.
        sparsity_points = [(run_name(run, runs), {k: float(num(d, "zero_frac")) for k, d in
                                                  layers_of(run.epochs[-1]).items()
                                                  if num(d, "zero_frac") is not None})
                           for run in runs]
        sparsity_points = [(n, s) for n, s in sparsity_points if any(s.values())]
    if sparsity_points:
        blocks += _sparsity_blocks([(n, {k: [v] for k, v in s.items()})
                                    for n, s in sparsity_points])
    else:
        notes.append("Per-layer sparsity: skipped - no row with layer_sparsity and no "
                     "exactly-zero weights in training snapshots.")
    return blocks


def _levels_table(groups: Mapping[str, Sequence[int]], pts: Sequence[tuple[float, float]],
                  acc_name: str, cell: Callable[[int], Any] | None = None,
                  how: str = "") -> Table:
    """Fewest bits each group needed to reach each accuracy level (claim 5's comparison).

    Args:
        groups: each group's points, indices into ``pts``.
        pts: ``(total bits, accuracy)`` of each point.
        acc_name: the accuracy's name (``test`` or ``validation``).
        cell: the cell of the point chosen (default: its total bits).
        how: said after the title (how the point was chosen).
    """
    best = max((p[1] for p in pts if p[1] is not None and not math.isnan(p[1])),
               default=None)
    if best is None:
        return Table(["group"], [], f"No point has a {acc_name} accuracy")
    levels = [lv for lv in ACCURACY_LEVELS if lv <= best] or [best]
    rows = []
    for g, idx in groups.items():
        gpts = [pts[i] for i in idx]
        cells = []
        for lv in levels:
            j = bits_for_accuracy(gpts, lv)
            cells.append(None if j is None else gpts[j][0] if cell is None else cell(idx[j]))
        rows.append([g, *cells])
    return Table(["group", *(f">= {100 * lv:g} %" for lv in levels)], rows,
                 f"Fewest total bits reaching each {acc_name} accuracy (- = never reached)"
                 + how + ("; chosen on test, so optimistic" if acc_name == "test" else ""))


def sparsity_of(rows: Sequence[Row]) -> list[tuple[str, dict[str, float]]]:
    """``(label, {layer: sparsity})`` of the rows that state it, one entry per distinct
    sparsity pattern: points that differ only in bit width share their pruned model, so
    they are shown once, named by the axes they have in common.

    Example:
        >>> sparsity_of([Row(axes={"s": 0.9, "bits": 2}, layer_sparsity={"fc1": 0.9}),
        ...              Row(axes={"s": 0.9, "bits": 4}, layer_sparsity={"fc1": 0.9}),
        ...              Row(axes={"s": 0.5, "bits": 2}, layer_sparsity={"fc1": 0.5})])
        [('s=0.9', {'fc1': 0.9}), ('s=0.5', {'fc1': 0.5})]
    """
    return [(label, {k: v[0] for k, v in layers.items()})
            for label, layers in _sparsity_points([[r] for r in rows])]


def _sparsity_points(configs: Sequence[Sequence[Row]],
                     ) -> list[tuple[str, dict[str, list[float]]]]:
    """:func:`sparsity_of` of configurations, each the rows of its seeds (one row: a point
    of a single-seed run): ``(label, {layer: [sparsity of each seed]})``, one entry per
    distinct pattern of its seeds' sparsities, named by the axes (but the seed) its
    configurations have in common."""
    patterns = group((c for c in configs if all(r.layer_sparsity for r in c)),
                     lambda c: tuple(tuple(r.layer_sparsity.items()) for r in c))
    shared = []
    for members in patterns.values():
        several = len(members[0]) > 1
        reps = [without_seed(c[0]) if several else c[0] for c in members]
        common = {k: v for k, v in reps[0].axes.items()
                  if all(m.axes.get(k) == v for m in reps)}
        shared.append(dataclasses.replace(reps[0], axes=common) if common else reps[0])
    out = []
    for label, members in zip(point_labels(shared), patterns.values(), strict=True):
        seeds = members[0]
        layers = list(dict.fromkeys(k for r in seeds for k in r.layer_sparsity))
        out.append((label, {k: [r.layer_sparsity[k] for r in seeds if k in r.layer_sparsity]
                            for k in layers}))
    return out


def _per_weight(row: Row) -> float | None:
    bits, n = row.total_bits, row.nonzero_weights
    return bits / n if bits is not None and n else None


def _sparsity_blocks(points: Sequence[tuple[str, Mapping[str, Sequence[float]]]],
                     note: Block | None = None) -> list[Block]:
    """The per-layer sparsity figure and table of ``(label, {layer: [fraction of each
    seed]})`` points: with one seed each, the fractions as they are; else the figure at the
    mean and the table mean ± std over the seeds, followed by ``note``."""
    several = any(len(v) > 1 for _, s in points for v in s.values())
    layers: list[str] = []
    for _, s in points:
        layers += [k for k in s if k not in layers]
    means = {lbl: [pct(estimate(s[k]).mean) if s.get(k) else None for k in layers]
             for lbl, s in points}
    if several:
        col = SeedColumn[float]("", lambda v: v, 100)
        cells = [[lbl, max(map(len, s.values())),
                  *(seed_cells(s.get(k, []), [col])[0] for k in layers)] for lbl, s in points]
        table = Table(["point", "seeds", *layers], cells,
                      "Per-layer sparsity (% of weights zero): mean ± std over seeds")
    else:
        table = Table(["point", *layers], [[lbl, *vals] for lbl, vals in means.items()],
                      "Per-layer sparsity (% of weights zero)")
    return [
        Heading("Per-layer sparsity", 3),
        Figure("sparsity", plots.grouped_bars(layers, means, "weights removed (%)",
                                              "Per-layer sparsity"),
               "Fraction of each layer's weights that are zero: pruned, or driven to exactly "
               "zero in training. Packed points: of the layer as stored (dead units "
               "removed). Profile rows: weights that are not effective connections."
               + (" Means over seeds." if several else "")),
        table,
        *([note] if several and note is not None else []),
    ]


@dataclass(frozen=True)
class Configuration:
    """A grid point without its seed: the rows of its seeds, named as in the tables."""

    point: str
    group: str
    members: list[Row]

    def mean(self, fn: Callable[[Row], float | None]) -> float:
        """The mean of ``fn`` over the seeds (NaN when none has it)."""
        return estimate(fn(r) for r in self.members).mean


def configurations(rows: Sequence[Row]) -> list[Configuration]:
    """The rows of a multi-seed run as configurations, first-seen order: the rows that
    differ only in their seed (:func:`.grouping.without_seed`) together, named by the
    axes but the seed that tell points apart (:func:`.grouping.point_labels`) and by the
    group of their network (:func:`.grouping.group_names`)."""
    plain = [without_seed(r) for r in rows]
    labels, groups_of = point_labels(plain), group_names(plain)
    by = group(range(len(rows)), lambda i: (groups_of[i], labels[i]))
    return [Configuration(label, grp, [rows[i] for i in idx])
            for (grp, label), idx in by.items()]


def _seeds_section(rows: Sequence[Row], usable: Sequence[Row], acc: str | None,
                   notes: list[str], runs: Sequence[TrainingRun], figure: bool,
                   source: str) -> list[Block]:
    """:func:`frontier_section` of a run of several seeds: every table one row per
    configuration (mean ± std over its seeds), chosen on the seed means (of validation
    accuracy where the rows have it, as every choice of a study), each table followed by
    a line saying where each seed's values are."""
    note = per_seed_note(source)
    blocks: list[Block] = []
    chosen: list[Configuration] = []
    if not usable:
        if figure:
            notes.append("Accuracy-vs-bits frontier: skipped - no row with total_bits and "
                         "test_acc / val_acc.")
    else:
        configs = configurations(usable)
        sel = "val_acc" if any(r.val_acc is not None for r in usable) else acc
        pts = [(c.mean(lambda r: r.total_bits), c.mean(lambda r: r.accuracy(sel)))
               for c in configs]
        front = pareto_front(pts)
        on_front = set(front)
        blocks.append(Heading("Accuracy against total bits"))
        if figure:
            samples = [Sample(c.group, c.point, seed_of(r), float(r.total_bits), r.val_acc,
                              r.test_acc) for c in configs for r in c.members]
            blocks.append(frontier_figure(samples, "frontier", "total bits (log scale)",
                                          "Test error against total bits"))
        order = sorted(range(len(configs)), key=lambda i: (pts[i][0], -pts[i][1]))
        sel_name = "test" if sel == "test_acc" else "validation"
        blocks += [Table(
            ["point", "group", "seeds", *(c.header for c in POINT_COLUMNS), "frontier"],
            [[configs[i].point, configs[i].group, len(configs[i].members),
              *seed_cells(configs[i].members, POINT_COLUMNS),
              "yes" if i in on_front else ""] for i in order],
            "All configurations, fewest bits first: mean ± std over seeds; frontier: "
            f"Pareto-optimal in mean total bits and mean {sel_name} accuracy"), note]
        groups = group(range(len(configs)), lambda i: configs[i].group)
        if len(groups) > 1:
            bits = SeedColumn[Row]("", lambda r: r.total_bits, digits=0)
            blocks += [_levels_table(
                groups, pts, sel_name,
                lambda i: seed_cells(configs[i].members, [bits])[0],
                f"; chosen on the seed-mean {sel_name} accuracy of each configuration, its "
                "total bits mean ± std over seeds"), note]
        with_parts = [i for i in front if all(bit_breakdown(r) for r in configs[i].members)]
        if not with_parts:
            with_parts = [i for i in order if all(bit_breakdown(r)
                                                  for r in configs[i].members)]
        chosen = [configs[i] for i in spread(with_parts, CHOSEN_POINTS)]
        if chosen:
            blocks += breakdown_blocks([(c.point, c.members) for c in chosen], note)
        else:
            notes.append("Bit breakdown: skipped - no row has a bits_breakdown.")
    points = _sparsity_points([c.members for c in chosen])
    if not points:
        candidates = [c for c in configurations(rows)
                      if all(r.layer_sparsity for r in c.members)]
        candidates.sort(key=lambda c: c.mean(lambda r: r.nonzero_weights or 0), reverse=True)
        points = _sparsity_points([c.members for c in spread(candidates, CHOSEN_POINTS)])
    if not points:
        # exactly-zero weights after training, per configuration of the training runs
        names = [run_name(r, runs) for r in runs]
        points = [(label, {k: [float(num(d, "zero_frac")) for d in ds
                               if num(d, "zero_frac") is not None]
                           for k, ds in _last_layers(members).items()})
                  for label, members in config_lines(runs, names)]
        points = [(n, s) for n, s in points if any(any(v) for v in s.values())]
        note = per_seed_note(per_run_files(runs, paths.metrics_log(Path()).name))
    if points:
        blocks += _sparsity_blocks(points, note)
    else:
        notes.append("Per-layer sparsity: skipped - no row with layer_sparsity and no "
                     "exactly-zero weights in training snapshots.")
    return blocks


def _last_layers(runs: Sequence[TrainingRun]) -> dict[str, list[Mapping[str, Any]]]:
    """Per layer, its statistics after the last epoch of each run that has it."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for run in runs:
        for k, d in layers_of(run.epochs[-1]).items():
            out.setdefault(k, []).append(d)
    return out


#: the columns of a configuration in the all-points table of several seeds
POINT_COLUMNS: tuple[SeedColumn[Row], ...] = (
    SeedColumn("total bits", lambda r: r.total_bits, digits=0),
    SeedColumn("bits/weight", lambda r: _per_weight(r), digits=3),
    SeedColumn("nonzero weights", lambda r: r.nonzero_weights, digits=0),
    SeedColumn("val acc (%)", lambda r: r.val_acc, 100),
    SeedColumn("test acc (%)", lambda r: r.test_acc, 100),
)
