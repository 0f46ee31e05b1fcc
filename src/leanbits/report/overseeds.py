"""The results-over-seeds section: what a study's per-seed records say, the same from a run
directory (:func:`leanbits.report.seeds.records_of_run`) as from its committed
``results.csv`` (:func:`leanbits.report.seeds.read_csv`).

A *configuration* is a grid point without its seed; every number here is a mean ± std over
the seeds of a configuration. A *line* is a configuration without its position axes
(:data:`POSITION_AXES`: sparsity level and bit width), i.e. one method / architecture /
head. The section holds the study's verdicts and tables when the study is known
(:data:`leanbits.report.claims.STUDIES`: 95 % CIs of differences paired by seed, every
choice made on validation), test error against total bits and against nonzero weights
(log axes, seed spread as error bars, one line per method / architecture through its
configurations that are Pareto-optimal on mean *validation* error), and a table of every
configuration.

Its cells (:func:`pm`, :class:`SeedColumn`, :func:`seed_cells`) are those of every table of a
multi-seed run: the training, pruning-profile and frontier sections also show one row per
configuration, mean ± std over its seeds, with a line saying where each seed's values are
(:func:`per_seed_note`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from leanbits.report import plots
from leanbits.report.document import Block, Figure, Heading, Table, Text
from leanbits.report.grouping import group, short
from leanbits.report.seeds import SeedRecord
from leanbits.report.tables import markdown_blocks
from leanbits.stats import Estimate, estimate
from leanbits.sweep.frontier import pareto_front

#: axes that move a configuration along its line (how much it is pruned / quantized)
POSITION_AXES = ("level", "sparsity", "bits")
#: the section's heading
HEADING = "Results over seeds"

T = TypeVar("T")


@dataclass(frozen=True)
class Sample:
    """One seed of one configuration, as a frontier figure reads it."""

    line: str
    point: str
    seed: int
    x: float
    val_acc: float | None
    test_acc: float | None


def _label(axes: Iterable[tuple[str, Any]]) -> str:
    return ", ".join(f"{k}={short(v)}" for k, v in axes)


def line_names(records: Sequence[SeedRecord]) -> list[str]:
    """Per record, the name of its line: the values of the non-position axes that differ
    between lines (``lenet5 / llr / refit``), ``all`` when none does.

    Example:
        >>> line_names([SeedRecord(1, {"method": "refit", "bits": 2}),
        ...             SeedRecord(1, {"method": "none", "bits": 2})])
        ['refit', 'none']
    """
    keys = list(dict.fromkeys(k for r in records for k in r.axes if k not in POSITION_AXES))
    varying = [k for k in keys if len({repr(r.axes.get(k)) for r in records}) > 1]
    return [" / ".join(short(r.axes[k]) for k in varying if k in r.axes) or "all"
            for r in records]


def samples_of(records: Sequence[SeedRecord], x_key: str) -> list[Sample]:
    """The records that have ``x_key`` and an accuracy, as samples of their line and
    configuration."""
    names = line_names(records)
    out = []
    for r, line in zip(records, names, strict=True):
        x = r.get(x_key)
        if x is None or (r.get("val_acc") is None and r.get("test_acc") is None):
            continue
        point = _label((k, v) for k, v in r.config() if k in POSITION_AXES)
        out.append(Sample(line, point, r.seed, float(x), r.get("val_acc"), r.get("test_acc")))
    return out


@dataclass(frozen=True)
class ConfigPoint:
    """A configuration of a line, its seeds aggregated."""

    line: str
    point: str
    x: Estimate
    val_error: Estimate
    test_error: Estimate
    on_front: bool


def _error(values: Iterable[float | None]) -> Estimate:
    return estimate(100 * (1 - v) for v in values if v is not None)


def aggregate(samples: Sequence[Sample]) -> list[ConfigPoint]:
    """Mean ± std over seeds per configuration; per line, the configurations that are
    Pareto-optimal on (mean x, mean validation error) are marked ``on_front`` (on test
    error only when no sample has a validation accuracy). First-seen order."""
    configs = group(samples, lambda s: (s.line, s.point))
    on_val = any(s.val_acc is not None for s in samples)
    out = []
    for (line, point), ss in configs.items():
        out.append(ConfigPoint(line, point, estimate(s.x for s in ss),
                               _error(s.val_acc for s in ss), _error(s.test_acc for s in ss),
                               False))
    front: set[tuple[str, str]] = set()
    for line, members in group(out, lambda c: c.line).items():
        pts = [(c.x.mean, -(c.val_error if on_val else c.test_error).mean) for c in members]
        front |= {(line, members[i].point) for i in pareto_front(pts)}
    return [dataclasses.replace(c, on_front=(c.line, c.point) in front) for c in out]


def error_lines(points: Sequence[ConfigPoint]) -> list[plots.ErrorLine]:
    """The figure's lines: one per line name, test error mean ± std at mean x."""
    out = []
    by_line = group(points, lambda c: c.line)
    # several networks with one head, which the head's colour would not tell apart: a
    # colour per network; else "group / arm" lines: one colour per arm, one marker per group
    shared = _shared_head_indices(list(by_line))
    paired = shared or plots.arm_group_indices(list(by_line))
    for i, (line, members) in enumerate(by_line.items()):
        head = None if shared else next(
            (h for h in plots.HEAD_COLORS if line.split(" / ")[-1] == h
             or f" {h} " in f" {line} ".replace("/", " ")), None)
        color_index, marker_index = paired[i] if paired else (i, i)
        out.append(plots.ErrorLine(
            line, [plots.ErrorPoint(c.x.mean, c.test_error.mean,
                                    c.test_error.std if c.test_error.n > 1 else None,
                                    c.on_front)
                   for c in members if not math.isnan(c.test_error.mean)],
            plots.color_for(head, color_index), plots.marker_for(marker_index)))
    return out


def _shared_head_indices(names: Sequence[str]) -> list[tuple[int, int]] | None:
    """Per line named ``head / network[ / method]`` (a frontier over several networks):
    the index of its ``head / network`` and of its method, so each network gets one colour
    and each method one marker - when a head's fixed colour would be shared by lines of
    different networks (e.g. ``llr / lenet5`` and ``llr / lenet-300-100``). None when no
    head colour is shared so, or a name has no network part.

    Example:
        >>> _shared_head_indices(["llr / a", "llr / a / refit", "llr / b / refit"])
        [(0, 0), (0, 1), (1, 1)]
        >>> _shared_head_indices(["llr / a", "softmax / a / refit"]) is None
        True
    """
    parts = [name.split(" / ") for name in names]
    if any(len(p) < 2 or p[0] not in plots.HEAD_COLORS for p in parts):
        return None
    nets = list(dict.fromkeys(" / ".join(p[:2]) for p in parts))
    if len(nets) == len({n.split(" / ")[0] for n in nets}):  # one network per head
        return None
    rests = list(dict.fromkeys(" / ".join(p[2:]) for p in parts))
    return [(nets.index(" / ".join(p[:2])), rests.index(" / ".join(p[2:]))) for p in parts]


def frontier_figure(samples: Sequence[Sample], name: str, xlabel: str, title: str) -> Figure:
    """Test error against ``x`` (log axes), seed spread as error bars, a line per
    method / architecture through its configurations that are Pareto-optimal on mean
    validation error; the caption says exactly that."""
    points = aggregate(samples)
    seeds = sorted({s.seed for s in samples})
    on_val = any(s.val_acc is not None for s in samples)
    png = plots.error_figure(error_lines(points), xlabel, "test error (%)", title)
    spread = (f"means over {len(seeds)} seeds with ± 1 std error bars" if len(seeds) > 1
              else "one seed, so no error bars")
    caption = (f"Test error (%, log scale) against {xlabel.split(' (')[0]} (log scale, mean "
               f"over seeds) of every configuration: {spread}. One colour per "
               "method / architecture; its line joins the configurations that are "
               f"Pareto-optimal on mean {'validation' if on_val else 'test'} error, faint "
               "markers are the others.")
    return Figure(name, png, caption)


def pm(e: Estimate, digits: int = 2) -> str:
    """``mean ± std`` over seeds with ``digits`` decimals: the mean alone for one seed, ``-``
    for none.

    Example:
        >>> pm(estimate([97.0, 98.0])), pm(estimate([5.0]), 0), pm(estimate([]))
        ('97.50 ± 0.71', '5', '-')
    """
    if e.n == 0 or math.isnan(e.mean):
        return "-"
    return e.format(1, digits)


@dataclass(frozen=True)
class SeedColumn(Generic[T]):
    """A column of a table with one row per configuration: each cell is the mean ± std over
    the configuration's seeds of ``value`` (None: not measured for that seed) times
    ``scale``, with ``digits`` decimals."""

    header: str
    value: Callable[[T], float | None]
    scale: float = 1.0
    digits: int = 2


def seed_cells(members: Sequence[T], columns: Sequence[SeedColumn[T]]) -> list[str]:
    """Per column, the mean ± std over ``members``, the seeds of one configuration.

    Example:
        >>> seed_cells([0.97, 0.98], [SeedColumn("acc (%)", lambda v: v, 100)])
        ['97.50 ± 0.71']
    """
    return [pm(estimate(c.scale * v for v in map(c.value, members) if v is not None),
               c.digits) for c in columns]


def per_seed_note(where: str) -> Text:
    """The line under a table aggregated over seeds, saying where each seed's values are."""
    return Text(f"Per-seed values: {where}.")


def configurations_table(records: Sequence[SeedRecord]) -> Table:
    """Every configuration, mean ± std over its seeds."""
    names = line_names(records)
    configs = group(zip(names, records, strict=True), lambda nr: (nr[0], nr[1].config()))
    cols: list[SeedColumn[SeedRecord]] = [
        SeedColumn("val acc (%)", lambda r: r.get("val_acc"), 100),
        SeedColumn("test acc (%)", lambda r: r.get("test_acc"), 100),
    ]
    for key, title, digits in (("total_bits", "total bits", 0), ("compression", "compression "
                               "(x)", 1), ("nonzero_weights", "nonzero weights", 0)):
        if any(r.get(key) is not None for r in records):
            cols.append(SeedColumn(title, lambda r, k=key: r.get(k), digits=digits))
    rows = []
    for (line, config), pairs in configs.items():
        rs = [r for _, r in pairs]
        point = _label((k, v) for k, v in config if k in POSITION_AXES) or "-"
        rows.append([line, point, len({r.seed for r in rs}), *seed_cells(rs, cols)])
    return Table(["line", "point", "seeds", *(c.header for c in cols)], rows,
                 "Every configuration: mean ± std over seeds")


def seeds_section(records: Sequence[SeedRecord], source: str,
                  study: Callable[[Sequence[SeedRecord]], Any] | None = None,
                  study_title: str | None = None) -> list[Block]:
    """The section's blocks.

    Args:
        records: the per-seed records.
        source: where they were read (said in the section's first line).
        study: the study's function of :data:`leanbits.report.claims.STUDIES` (its
            verdicts and tables come first), or None.
        study_title: its title.
    """
    if not records:
        return []
    seeds = sorted({r.seed for r in records})
    n_configs = len({(line, r.config()) for line, r in zip(line_names(records), records,
                                                           strict=True)})
    blocks: list[Block] = [Heading(HEADING), Text(
        f"{len(records)} records from {source}: {n_configs} configurations x seeds "
        f"{', '.join(map(str, seeds))}. Numbers are mean ± std over seeds.")]
    if study is not None:
        result = study(records)
        blocks.append(Heading(study_title or "Verdicts", 3))
        blocks += markdown_blocks(result.verdict) + markdown_blocks(result.text)
    bits = samples_of(records, "total_bits")
    if bits:
        blocks.append(frontier_figure(bits, "frontier", "total bits (log scale)",
                                      "Test error against total bits"))
    weights = samples_of(records, "nonzero_weights")
    if weights and len({s.x for s in weights}) > 1:
        blocks.append(frontier_figure(weights, "error_weights",
                                      "nonzero weights (log scale)",
                                      "Test error against nonzero weights"))
    blocks.append(configurations_table(records))
    return blocks
