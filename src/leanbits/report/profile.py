"""The pruning-profile section: accuracy against the weights kept, one line per network
and pruning method.

Its points are profile rows (``profile.json``: one row per method and level) when the run
has any; else a sweep's rows reduced to one per pruned model (:func:`pruned_models`),
since a sweep row's accuracy is that of its packed model. A run of several seeds draws one
line per network (its settings but the seed) and method: mean ± std over seeds at each
pruning level (:func:`profile_panels`), and its table one row per line and level, mean ± std
over the seeds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from leanbits import paths
from leanbits.report import plots
from leanbits.report.document import Block, Figure, Heading, Table
from leanbits.report.grouping import (
    accuracy_key,
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

#: a point of the profile: (pruning method, the row measuring that model)
ProfilePoint = tuple[str | None, Row]


def profile_points(rows: Sequence[Row]) -> list[ProfilePoint]:
    """Profile rows as points: the dense row (not pruned) is method ``dense``."""
    return [(r.method or "dense", r) for r in rows]


def pruned_models(results: Sequence[Row]) -> list[ProfilePoint]:
    """Sweep result rows -> one point per pruned (or dense) model, before quantization.

    A network pruned once appears once per bit width in a sweep; the profile wants the
    pruned model itself, which each row keeps in ``metrics["prune"]``. The dense model
    (``metrics["train"]``) starts the line of each method that pruned it (sparsity 0), or
    stands alone as method ``dense``. Rows with no stage metrics pass through as they are.
    """
    methods = {net: list(dict.fromkeys(r.method for r in rs if "prune" in r.stages))
               for net, rs in group(results, network).items()}
    out: list[ProfilePoint] = []
    seen: set[tuple[str | None, ...]] = set()
    for r in results:
        if "train" not in r.metrics:
            out.append((r.method, r))
            continue
        kinds = ["train", "prune"] if "prune" in r.stages else ["train"]
        m = r.metrics[kinds[-1]]
        model = Row(
            point=r.point, axes=r.axes, stages={k: r.stages[k] for k in kinds},
            settings={k: v for k, v in r.settings.items() if k != "bits"},
            **{k: m.get(k) for k in ("val_acc", "test_acc", "val_loss", "test_loss",
                                     "params", "weights", "nonzero_weights",
                                     "max_abs_weight", "weight_l2", "effective_connections")},
            sparsity=m.get("sparsity", 0.0 if kinds == ["train"] else None),
            metrics={k: r.metrics[k] for k in kinds},
        )
        if "prune" in r.stages:
            if ("prune", r.stages["prune"]) not in seen:
                seen.add(("prune", r.stages["prune"]))
                out.append((r.method, model))
            continue
        for method in methods[network(r)] or ["dense"]:
            if ("train", r.stages["train"], method) not in seen:
                seen.add(("train", r.stages["train"], method))
                out.append((method, dataclasses.replace(model, sparsity=0.0)))
    return out


def drawable(points: Sequence[ProfilePoint]) -> list[ProfilePoint]:
    """Points that can be drawn as accuracy against nonzero weights."""
    acc = accuracy_key([r for _, r in points])
    return [(m, r) for m, r in points if acc and r.nonzero_weights is not None
            and r.accuracy(acc) is not None]


def _level(row: Row) -> Any:
    """Where a point sits on its line: the requested sparsity (the same for every seed,
    also for methods that measure their own), else the measured one."""
    return row.settings.get("prune", {}).get("sparsity", row.sparsity)


def line_labels(points: Sequence[ProfilePoint]) -> list[str]:
    """Per point, its line: network and method (:func:`.grouping.group_names`); with
    several seeds, the seeds of one configuration share their line."""
    rows = [r for _, r in points]
    if len({seed_of(r) for r in rows}) > 1:
        rows = [without_seed(r) for r in rows]
    return group_names(rows, [m for m, _ in points])


def profile_panels(points: Sequence[ProfilePoint], acc: str, acc_label: str,
                   ) -> list[plots.Panel]:
    """Accuracy (%) against nonzero weights and against effective connections: one series
    per line (:func:`line_labels`), one point per pruning level at the mean over its seeds
    of both coordinates, with the std over seeds as its spread when there are several.

    Args:
        points: drawable points (:func:`drawable`).
        acc: the accuracy read (``test_acc`` or ``val_acc``).
        acc_label: the y axis label.
    """
    rows = [r for _, r in points]
    groups = group(zip(line_labels(points), rows, strict=True), lambda lr: lr[0])
    several_seeds = len({seed_of(r) for r in rows}) > 1
    several_heads = len({r.head for r in rows}) > 1
    # "group / arm" lines (e.g. regime / regularizer): one colour per arm, one marker per
    # group, as in the over-seeds figures
    paired = plots.arm_group_indices(list(groups))
    panels = []
    for key, xlabel in (("nonzero_weights", "nonzero weights (count)"),
                        ("effective_connections", "effective connections (count)")):
        series = []
        for i, (label, pairs) in enumerate(groups.items()):
            rs = [r for _, r in pairs if getattr(r, key) is not None]
            if not rs:
                continue
            cells = []
            for members in group(rs, _level).values():
                x = estimate(getattr(r, key) for r in members)
                y = estimate(pct(r.accuracy(acc)) for r in members)
                cells.append((x.mean, y.mean, y.std if y.n > 1 else None))
            cells.sort(key=lambda c: c[0])
            heads = {r.head for r in rs}
            # Colour by head (as in every figure) when lines differ by head; with one
            # head the methods would all share its colour, so colour by line instead.
            color_index, marker_index = paired[i] if paired else (i, i)
            color = plots.color_for(
                heads.pop() if several_heads and len(heads) == 1 else None, color_index)
            series.append(plots.Series(
                label, [c[0] for c in cells], [c[1] for c in cells], color,
                marker=plots.marker_for(marker_index),
                spread=[c[2] for c in cells] if several_seeds else None))
        if series:
            panels.append(plots.Panel(f"Accuracy against {xlabel.split(' (')[0]}", xlabel,
                                      acc_label, series, logx=True, xcounts=True))
    return panels


def prune_section(points: Sequence[ProfilePoint], from_profile: bool,
                  notes: list[str], source: str | None = None) -> list[Block]:
    """Accuracy against nonzero weights (and effective connections), one line per method
    (per network and method; seeds aggregated as mean ± std, also in the table).

    Args:
        points: the profile's points (:func:`profile_points` or :func:`pruned_models`).
        from_profile: they are profile rows (else a sweep's result rows).
        notes: where a skipped section is noted.
        source: the file the points were read from, named under a table aggregated over
            seeds (default: profile.json or results.json).
    """
    usable = drawable(points)
    if not usable:
        where = "profile.json rows" if from_profile else "result rows"
        notes.append(f"Pruning profile: skipped - no {where} with nonzero_weights and "
                     "test_acc / val_acc.")
        return []
    rows = [r for _, r in usable]
    acc = accuracy_key(rows)
    acc_label = f"{'test' if acc == 'test_acc' else 'validation'} accuracy (%)"
    seeds = sorted({seed_of(r) for r in rows}, key=str)
    spread = (f" Means over {len(seeds)} seeds with ± 1 std error bars; x is the mean over "
              "seeds too." if len(seeds) > 1 else "")
    blocks: list[Block] = [Heading("Pruning profile")]
    blocks.append(Figure("prune_profile", plots.line_figure(profile_panels(usable, acc,
                                                                           acc_label)),
                         "Accuracy against the weights kept, per pruning method (log scale). "
                         "Effective connections drop weights into or out of dead units."
                         + spread))
    groups = group(zip(line_labels(usable), rows, strict=True), lambda lr: lr[0])
    if len(seeds) > 1:
        where = source or (paths.profile if from_profile else paths.results)(Path()).name
        blocks += _seed_table(groups, where)
        return blocks
    columns = [(q, h) for q, h in PROFILE_COLUMNS
               if any(getattr(r, q) is not None for r in rows)]
    table_rows = []
    for label, pairs in groups.items():
        for _, r in sorted(pairs, key=lambda lr: -lr[1].nonzero_weights):
            table_rows.append([label, *(getattr(r, q) for q, _ in columns)])
    blocks.append(Table(["group", *(h for _, h in columns)], table_rows, "Pruning profile"))
    return blocks


#: the profile table's columns: (Row attribute, header)
PROFILE_COLUMNS = (("sparsity", "sparsity"), ("nonzero_weights", "nonzero weights"),
                   ("effective_connections", "effective connections"), ("val_acc", "val acc"),
                   ("test_acc", "test acc"), ("total_bits", "total bits"))
#: the same aggregated over seeds: (Row attribute, header, scale, decimals)
SEED_COLUMNS = (("sparsity", "sparsity (%)", 100, 2), ("nonzero_weights", "nonzero weights", 1, 0),
                ("effective_connections", "effective connections", 1, 0),
                ("val_acc", "val acc (%)", 100, 2), ("test_acc", "test acc (%)", 100, 2),
                ("total_bits", "total bits", 1, 0))


def _seed_table(groups: Mapping[str, Sequence[tuple[str, Row]]], where: str) -> list[Block]:
    """The profile table of several seeds: per line, one row per pruning level (mean ± std
    over its seeds), most weights first; and where each seed's values are."""
    rows = [r for pairs in groups.values() for _, r in pairs]
    columns = [SeedColumn(h, lambda r, q=q: getattr(r, q), scale, digits)
               for q, h, scale, digits in SEED_COLUMNS
               if any(getattr(r, q) is not None for r in rows)]
    table_rows = []
    for label, pairs in groups.items():
        levels = list(group((r for _, r in pairs), _level).values())
        levels.sort(key=lambda rs: -estimate(r.nonzero_weights for r in rs).mean)
        table_rows += [[label, len(rs), *seed_cells(rs, columns)] for rs in levels]
    return [Table(["group", "seeds", *(c.header for c in columns)], table_rows,
                  "Pruning profile: mean ± std over seeds"), per_seed_note(where)]
