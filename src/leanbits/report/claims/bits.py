"""Claim 5 from a frontier study: the fewest total bits per validation accuracy level, per
network and head and over all of them; configurations are chosen on validation and their
test accuracy is read once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from leanbits.report.claims.common import Finding, StudyResult, est, md_table, pts
from leanbits.report.seeds import SeedRecord
from leanbits.sweep.frontier import bits_for_accuracy

#: what claim 5 says (it is measured, not decided by a criterion)
CLAIM5 = ("compare networks by accuracy against total bits; a lower bound per accuracy "
          "level")
MEASURED = "measured, not a yes/no claim"


def configurations(records: Iterable[SeedRecord]) -> dict[tuple[Any, ...], list[SeedRecord]]:
    """Records grouped by configuration (the point without its seed), first-seen order."""
    out: dict[tuple[Any, ...], list[SeedRecord]] = {}
    for r in records:
        out.setdefault(r.config(), []).append(r)
    return out


def fewest_bits(records: Sequence[SeedRecord], level: float,
                ) -> tuple[tuple[Any, ...], list[SeedRecord]] | None:
    """The configuration with the fewest seed-mean total bits whose seed-mean *validation*
    accuracy is at least ``level`` (None: none is)."""
    configs = [(k, rs) for k, rs in configurations(records).items()
               if any(r.get("total_bits") is not None for r in rs)]
    points = [(est(rs, "total_bits").mean, est(rs, "val_acc").mean) for _, rs in configs]
    i = bits_for_accuracy(points, level)
    return None if i is None else configs[i]


def _config_label(config: tuple[Any, ...], drop: Iterable[str] = ("model", "head")) -> str:
    shown = [(k, v) for k, v in config if k not in set(drop)]
    return ", ".join(f"{k}={v}" for k, v in shown) or "-"


def frontier(records: Sequence[SeedRecord], levels: Sequence[float]) -> StudyResult:
    """Claim 5 from a frontier study (axes ``model``, ``head``, ``method``, ``level``,
    ``bits``): the fewest bits per validation accuracy level, test read once."""
    groups: dict[tuple[Any, Any], list[SeedRecord]] = {}
    for r in records:
        if r.get("total_bits") is not None:
            groups.setdefault((r.axes.get("model"), r.axes.get("head")), []).append(r)
    rows, choices = [], {}
    seeds: dict[tuple[Any, Any], int] = {}
    best: dict[float, tuple[float, str, list[SeedRecord]]] = {}
    for (model, head), rs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        cells = []
        for lv in levels:
            got = fewest_bits(rs, lv)
            choices[(model, head, lv)] = got and got[0]
            if got is None:
                cells.append("-")
                continue
            bits = est(got[1], "total_bits").mean
            cells.append(f"{bits:,.0f} (test {pts(est(got[1], 'test_acc'))})")
            if lv not in best or bits < best[lv][0]:
                best[lv] = (bits, f"{model}/{head}, {_config_label(got[0])}", got[1])
        seeds[(model, head)] = len({r.seed for r in rs})
        rows.append([model, head, seeds[(model, head)], pts(est(_dense(rs), "train_val_acc")),
                     *cells])
    text = md_table(["model", "head", "seeds", "dense val acc (%)"]
                    + [f"fewest bits, val acc >= {lv}" for lv in levels], rows)
    text += ("\n\nA configuration is a grid point without its seed. It is chosen by its "
             "seed-mean validation accuracy; its test accuracy (%, mean ± std over seeds) "
             "is read once, after the choice.\n\nFewest bits over all models and heads:\n\n")
    text += md_table(["val acc level", "mean total bits", "bytes", "test acc (%)",
                      "configuration"],
                     [[lv, round(b), math.ceil(b / 8), pts(est(rs, "test_acc")), c]
                      for lv, (b, c, rs) in sorted(best.items())])
    for lv, (_b, c, _rs) in best.items():
        choices[("overall", lv)] = c
    verdict = (
        f"**Claim 5 ({CLAIM5}): {MEASURED}.** The fewest bits per level are "
        "chosen on validation and are upper bounds on the true minimum (the lower envelope "
        "of everything tried).")
    headline = "; ".join(f">= {lv}: {round(best[lv][0]):,} bits" if lv in best else
                         f">= {lv}: none reached" for lv in levels)
    # networks compared by separate runs may have different numbers of seeds: the fewest
    finding = Finding("claim 5", CLAIM5, f"{MEASURED}: the fewest mean total bits per "
                      "validation accuracy level (their test accuracy in the section)",
                      headline, seeds=min(seeds.values(), default=0))
    return StudyResult(text, verdict, {}, choices, (finding,))


def _dense(records: Iterable[SeedRecord]) -> list[SeedRecord]:
    """One record per seed of the trained networks (the first point of each)."""
    seen: dict[int, SeedRecord] = {}
    for r in records:
        seen.setdefault(r.seed, r)
    return list(seen.values())
