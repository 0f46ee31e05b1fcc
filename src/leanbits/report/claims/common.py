"""What every claim's tables share: :class:`StudyResult` (with its :class:`Finding`s),
selecting and summarising per-seed records (by axis, per seed, over seeds), paired
comparisons under a criterion, and the formatting of estimates, differences, regimes and
Markdown tables.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from leanbits.report.claims.criteria import OVERFIT_METRICS, REGIMES
from leanbits.report.seeds import SeedRecord
from leanbits.stats import Criterion, Estimate, estimate, paired


@dataclass(frozen=True)
class Finding:
    """One part of a claim and what a study says of it: a row of an overview.

    Attributes:
        claim: the claim's number, e.g. ``claim 2``.
        statement: what the claim says (its criterion's ``claim``).
        part: the measure, regime or arm the verdict is about, as the study's section
            names it.
        verdict: the criterion's verdict, the word the section prints; for a claim that
            is measured rather than decided, its headline measure.
        key: the verdict's name in :attr:`StudyResult.verdicts` ("" for a measured claim).
        diff: the paired difference the verdict reads, with its arms, 95 % CI and unit
            ("": the verdict combines several, those of ``by``).
        seeds: seeds of that difference (0: not one difference; the study's seeds).
        by: the verdicts this one needs all of, each a Finding (empty: none).
    """

    claim: str
    statement: str
    part: str
    verdict: str
    key: str = ""
    diff: str = ""
    seeds: int = 0
    by: tuple[Finding, ...] = ()


@dataclass(frozen=True)
class StudyResult:
    """What one study's records say.

    Attributes:
        text: Markdown tables (mean ± std over seeds; CIs where a verdict reads them).
        verdict: Markdown paragraph(s) with each claim's verdict and its numbers.
        verdicts: ``{criterion name: verdict}``.
        choices: every choice made on validation (level, cutoff, configuration), by name;
            test accuracy never changes them.
        findings: the claim parts, each with its verdict (or headline measure) and the
            difference it reads, in the order of the verdict paragraphs; with their
            ``by`` they name every entry of ``verdicts``.
    """

    text: str
    verdict: str
    verdicts: dict[str, str] = field(default_factory=dict)
    choices: dict[str, Any] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()


# ----------------------------------------------------------------------------- helpers
def select(records: Iterable[SeedRecord], **where: Any) -> list[SeedRecord]:
    """The records whose axes have every ``where`` value."""
    return [r for r in records if all(r.axes.get(k) == v for k, v in where.items())]


def per_seed(records: Iterable[SeedRecord], metric: str) -> dict[int, float]:
    """``{seed: value}`` of ``metric``; records of one seed must agree (e.g. a trained
    model's metric repeated on each of its grid points).

    Raises:
        ValueError: two records of one seed disagree (the selection is ambiguous).
    """
    out: dict[int, float] = {}
    for r in records:
        v = r.get(metric)
        if v is None:
            continue
        if r.seed in out and not math.isclose(out[r.seed], v, rel_tol=1e-12, abs_tol=0):
            raise ValueError(f"seed {r.seed} has two values of {metric}: {out[r.seed]} and "
                             f"{v}; select one point per seed")
        out[r.seed] = v
    return out


def with_value(records: Iterable[SeedRecord], name: str,
               fn: Callable[[SeedRecord], float | None]) -> list[SeedRecord]:
    """The records with one more measurement ``name`` = ``fn(record)`` (where not None)."""
    out = []
    for r in records:
        v = fn(r)
        out.append(r if v is None else SeedRecord(r.seed, r.axes, {**r.values, name: v}))
    return out


def compare(c: Criterion, records: Sequence[SeedRecord], axis: str, **where: Any,
            ) -> tuple[Estimate, str]:
    """The paired difference ``c.treatment - c.baseline`` of ``c.metric`` along ``axis``
    (other axes fixed by ``where``) and the criterion's verdict on it."""
    rs = select(records, **where)
    d = paired(per_seed(select(rs, **{axis: c.treatment}), c.metric),
               per_seed(select(rs, **{axis: c.baseline}), c.metric))
    return d, c.verdict(d)


def axis_values(records: Iterable[SeedRecord], axis: str) -> list[Any]:
    """The values an axis takes, in first-seen order."""
    return list(dict.fromkeys(r.axes.get(axis) for r in records if axis in r.axes))


def est(records: Iterable[SeedRecord], metric: str) -> Estimate:
    """Mean ± std (and CI) of ``metric`` over the seeds of ``records``."""
    return estimate(per_seed(records, metric).values())


def seed_means(records: Iterable[SeedRecord], metric: str) -> dict[int, float]:
    """``{seed: mean of metric over that seed's records}``: for a quantity every point
    measures anew (e.g. the wall seconds of each pruned model), summarised per seed
    before the spread over seeds is taken."""
    got: dict[int, list[float]] = {}
    for r in records:
        v = r.get(metric)
        if v is not None:
            got.setdefault(r.seed, []).append(v)
    return {seed: sum(vs) / len(vs) for seed, vs in got.items()}


def pts(e: Estimate, ci: bool = False) -> str:
    """An accuracy estimate in percent."""
    return e.format(100, 2, ci)


def diff_text(d: Estimate) -> str:
    """A paired difference in accuracy points with its CI, e.g. ``+0.12 [-0.05, +0.29]``."""
    if d.n < 2:
        return "-" if d.n == 0 else f"{100 * d.mean:+.2f} (1 seed)"
    return f"{100 * d.mean:+.2f} [{100 * d.lo:+.2f}, {100 * d.hi:+.2f}]"


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table; None cells print as ``-``."""
    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        if isinstance(v, float):
            return f"{v:.4g}"
        return f"{v:,}" if isinstance(v, int) else str(v)
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(out)


def regimes(records: Iterable[SeedRecord]) -> list[Any]:
    """The ``regime`` axis' values in :data:`REGIMES` order, then any others; ``[None]`` for
    records without the axis (a study of one regime)."""
    got = axis_values(records, "regime")
    if not got:
        return [None]
    return [r for r in REGIMES if r in got] + [r for r in got if r not in REGIMES]


def fmt_diff(d: Estimate, scale: float = 100.0, digits: int = 2) -> str:
    """A paired difference with its CI, values times ``scale``, e.g. ``+0.12 [-0.05,
    +0.29]``."""
    if d.n < 2:
        return "-" if d.n == 0 else f"{scale * d.mean:+.{digits}f} (1 seed)"
    return (f"{scale * d.mean:+.{digits}f} [{scale * d.lo:+.{digits}f}, "
            f"{scale * d.hi:+.{digits}f}]")


#: how each overfitting measure is shown: (column title, scale, digits)
SHOW = {"test accuracy": ("test acc (%)", 100.0, 2), "test NLL": ("test NLL (nats)", 1.0, 4),
        "test ECE": ("test ECE (%)", 100.0, 2)}
#: the unit of a paired difference of each overfitting measure, as :data:`SHOW` scales it
UNIT = {"test accuracy": "pt", "test NLL": "nats", "test ECE": "pt"}


def overfit_cells(rs: Sequence[SeedRecord]) -> list[str]:
    """Mean ± std over seeds of each measure of :data:`OVERFIT_METRICS`, shown as
    :data:`SHOW` says."""
    return [est(rs, metric).format(scale, digits)
            for name, (metric, _d) in OVERFIT_METRICS.items()
            for _t, scale, digits in [SHOW[name]]]


def regime_label(regime: Any) -> str:
    """A regime as tables and verdict names print it (``-``: a study of one regime)."""
    return "-" if regime is None else str(regime)
