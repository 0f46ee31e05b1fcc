"""The frontier section: accuracy against total bits with the Pareto frontier, the fewest
bits each network needed per accuracy level, the bit breakdown of chosen frontier points
and per-layer sparsity."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

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
    spread,
)
from leanbits.report.overseeds import Sample, frontier_figure
from leanbits.report.training import layers_of, num, run_name
from leanbits.results import Row
from leanbits.sweep.frontier import bits_for_accuracy, pareto_front

#: at most this many points get a bit breakdown / per-layer sparsity bar
CHOSEN_POINTS = 6
#: accuracy levels at which groups are compared by the fewest bits that reached them
ACCURACY_LEVELS = (0.9, 0.95, 0.97, 0.98, 0.985, 0.99, 0.995)


def frontier_section(rows: Sequence[Row], notes: list[str],
                     runs: Sequence[TrainingRun], figure: bool = True) -> list[Block]:
    """Accuracy against total bits with the Pareto frontier, bit breakdowns and per-layer
    sparsity of chosen frontier points.

    Args:
        rows: the run's result (or profile) rows.
        notes: where skipped parts are noted.
        runs: the training runs (their exactly-zero weights when no row has sparsity).
        figure: draw test error against total bits here (False: the results-over-seeds
            section draws it, seeds aggregated).
    """
    acc = accuracy_key(rows)
    usable = [r for r in rows if r.total_bits is not None and acc
              and r.accuracy(acc) is not None]
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
        blocks += breakdown_blocks(chosen)
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
        blocks += _sparsity_blocks(sparsity_points)
    else:
        notes.append("Per-layer sparsity: skipped - no row with layer_sparsity and no "
                     "exactly-zero weights in training snapshots.")
    return blocks


def _levels_table(groups: Mapping[str, Sequence[int]], pts: Sequence[tuple[float, float]],
                  acc_name: str) -> Table:
    """Fewest bits each group needed to reach each accuracy level (claim 5's comparison)."""
    best = max((p[1] for p in pts if p[1] is not None), default=None)
    if best is None:
        return Table(["group"], [], f"No point has a {acc_name} accuracy")
    levels = [lv for lv in ACCURACY_LEVELS if lv <= best] or [best]
    rows = []
    for g, idx in groups.items():
        gpts = [pts[i] for i in idx]
        cells = []
        for lv in levels:
            j = bits_for_accuracy(gpts, lv)
            cells.append(None if j is None else gpts[j][0])
        rows.append([g, *cells])
    return Table(["group", *(f">= {100 * lv:g} %" for lv in levels)], rows,
                 f"Fewest total bits reaching each {acc_name} accuracy (- = never reached)"
                 + ("; chosen on test, so optimistic" if acc_name == "test" else ""))


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
    patterns = group((r for r in rows if r.layer_sparsity),
                     lambda r: tuple(r.layer_sparsity.items()))
    shared = []
    for members in patterns.values():
        common = {k: v for k, v in members[0].axes.items()
                  if all(m.axes.get(k) == v for m in members)}
        shared.append(dataclasses.replace(members[0], axes=common) if common else members[0])
    return [(lbl, dict(key)) for lbl, key in zip(point_labels(shared), patterns, strict=True)]


def _per_weight(row: Row) -> float | None:
    bits, n = row.total_bits, row.nonzero_weights
    return bits / n if bits is not None and n else None


def _sparsity_blocks(points: Sequence[tuple[str, Mapping[str, float]]]) -> list[Block]:
    layers: list[str] = []
    for _, s in points:
        layers += [k for k in s if k not in layers]
    series = {lbl: [pct(s.get(k)) for k in layers] for lbl, s in points}
    return [
        Heading("Per-layer sparsity", 3),
        Figure("sparsity", plots.grouped_bars(layers, series, "weights removed (%)",
                                              "Per-layer sparsity"),
               "Fraction of each layer's weights that are zero: pruned, or driven to exactly "
               "zero in training. Packed points: of the layer as stored (dead units "
               "removed). Profile rows: weights that are not effective connections."),
        Table(["point", *layers], [[lbl, *vals] for lbl, vals in series.items()],
              "Per-layer sparsity (% of weights zero)"),
    ]
