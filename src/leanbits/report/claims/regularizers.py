"""Claim 3 from the regularization study: each regularizer against none, "less overfitting"
of the trained models and "more prunable" at the pruning level chosen on the baseline's
validation accuracy (:func:`prune_level`) - two criteria, never one OR the other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from leanbits.report.claims.common import (
    SHOW,
    UNIT,
    Finding,
    StudyResult,
    axis_values,
    compare,
    est,
    fmt_diff,
    md_table,
    overfit_cells,
    pts,
    regime_label,
    regimes,
    select,
)
from leanbits.report.claims.criteria import (
    CLAIM3_ARMS,
    CLAIM3_LEVEL_DROP,
    CLAIM3_OVERFIT,
    CLAIM3_PRUNABLE,
    OVERFIT_METRICS,
)
from leanbits.report.seeds import SeedRecord
from leanbits.stats import INCONCLUSIVE, Criterion, all_of


def prune_level(records: Sequence[SeedRecord], baseline: str = "none",
                drop: float = CLAIM3_LEVEL_DROP) -> Any:
    """The pruning level at which claim 3's "more prunable" is read (see
    :data:`CLAIM3_LEVEL_DROP`), from the baseline's validation accuracies only.

    Args:
        records: one regime's records of the regularization study.
        baseline: the regularizer whose drop decides.
        drop: the seed-mean validation accuracy loss that counts as "hurts".

    Returns:
        A value of the ``level`` axis (None: no pruned level has validation accuracies).
    """
    base = select(records, regularizer=baseline)
    dense = est(base, "train_val_acc").mean
    chosen = None
    for level in sorted(lv for lv in axis_values(records, "level") if lv != "dense"):
        pruned = est(select(base, level=level), "prune_val_acc").mean
        if math.isnan(pruned):
            continue
        chosen = level
        if dense - pruned > drop:
            break
    return chosen


def regularization(records: Sequence[SeedRecord]) -> StudyResult:
    """Claim 3 from the regularization study (axes ``regime``, ``regularizer``, ``level``)."""
    all_levels = axis_values(records, "level")
    levels = sorted(lv for lv in all_levels if lv != "dense")
    nets = select(records, level=all_levels[0]) if all_levels else list(records)
    regs = regimes(records)
    regularizers = axis_values(records, "regularizer")
    verdicts: dict[str, str] = {}
    shown: dict[str, str] = {}  # verdict name -> its paired difference, as shown
    seeds: dict[str, int] = {}
    choices: dict[str, Any] = {}
    rows, prune_rows = [], []
    for regime in regs:
        rn = select(nets, regime=regime)
        rr = select(records, regime=regime)
        level = prune_level(rr)
        choices[f"level, {regime_label(regime)}"] = level
        at = select(rr, level=level)
        for reg in regularizers:
            cells = overfit_cells(select(rn, regularizer=reg))
            diffs, pdiff = [], ""
            for name, (metric, direction) in OVERFIT_METRICS.items():
                c = CLAIM3_OVERFIT.get((reg, name)) or Criterion(
                    "", metric, reg, "none", direction)
                d, v = compare(c, rn, "regularizer")
                _t, scale, digits = SHOW[name]
                if (reg, name) in CLAIM3_OVERFIT:
                    key = f"claim 3, less overfitting, {reg}, {name}, {regime_label(regime)}"
                    verdicts[key] = v
                    shown[key] = (f"{reg} - none {fmt_diff(d, scale, digits)} "
                                  f"{UNIT[name]}")
                    seeds[key] = d.n
                diffs.append("" if reg == "none" else
                             fmt_diff(d, scale, digits) + (f" {v}" if (reg, name) in
                                                           CLAIM3_OVERFIT else ""))
            rows.append([regime_label(regime), reg, *cells, *diffs])
            c = CLAIM3_PRUNABLE.get(reg) or Criterion("", "prune_test_acc", reg, "none",
                                                      "greater")
            d, v = compare(c, at, "regularizer")
            if reg in CLAIM3_PRUNABLE:
                key = f"claim 3, more prunable, {reg}, {regime_label(regime)}"
                verdicts[key] = v
                shown[key] = f"{reg} - none {fmt_diff(d)} pt at {level}"
                seeds[key] = d.n
            if reg != "none":
                pdiff = fmt_diff(d) + (f" {v}" if reg in CLAIM3_PRUNABLE else "")
            prune_rows.append(
                [regime_label(regime), reg, level, pts(est(select(at, regularizer=reg),
                                                            "prune_test_acc")), pdiff]
                + [pts(est(select(rr, regularizer=reg, level=lv), "prune_test_acc"))
                   for lv in levels])
    def part(statement: str, name: str, keys: list[tuple[str, str]]) -> Finding:
        """The verdict ``name``, all of ``keys`` ([(label, verdict name)]) that exist."""
        got = [(label, k) for label, k in keys if k in verdicts]
        verdicts[name] = all_of(verdicts[k] for _label, k in got)
        return Finding("claim 3", statement, name.removeprefix("claim 3, "),
                       verdicts[name], name, by=tuple(
                           Finding("claim 3", statement, label, verdicts[k], k, shown[k],
                                   seeds[k]) for label, k in got))

    overfit_claim = next(iter(CLAIM3_OVERFIT.values())).claim
    findings = [part(overfit_claim, f"claim 3, less overfitting, {name}", [
        (f"{regime_label(r)} {a}", f"claim 3, less overfitting, {a}, {name}, "
                                   f"{regime_label(r)}") for r in regs for a in CLAIM3_ARMS])
        for name in OVERFIT_METRICS]
    findings.append(part(next(iter(CLAIM3_PRUNABLE.values())).claim,
                         "claim 3, more prunable", [
                             (f"{regime_label(r)} {a}",
                              f"claim 3, more prunable, {a}, {regime_label(r)}")
                             for r in regs for a in CLAIM3_ARMS]))
    text = "Less overfitting: the trained models.\n\n" + md_table(
        ["regime", "regularizer"] + [SHOW[n][0] for n in OVERFIT_METRICS]
        + [f"{SHOW[n][0].split(' (')[0]} - none [95 % CI]" for n in OVERFIT_METRICS], rows)
    text += ("\n\nMore prunable: pruned once and re-fitted, at the level chosen per regime on "
             "the baseline's validation accuracy.\n\n" + md_table(
                 ["regime", "regularizer", "chosen level", "test acc at it (%)",
                  "- none, pt [95 % CI]"]
                 + [f"test acc @ {lv} (%)" for lv in levels], prune_rows))
    text += ("\n\nMean ± std over seeds; differences paired by seed. NLL in nats, ECE over 15 "
             "equal-width confidence bins.")
    arms = " and ".join(CLAIM3_ARMS)
    verdict = (
        f"**Claim 3, less overfitting ({next(iter(CLAIM3_OVERFIT.values())).claim})**, on "
        f"the arms named before the run ({arms}) in every regime, one criterion per "
        "measure: " + "; ".join(f"{n} {verdicts[f'claim 3, less overfitting, {n}']}"
                                for n in OVERFIT_METRICS)
        + " (arm - none, paired by seed: accuracy CI above 0, NLL and ECE CIs below 0; "
        "per arm and regime in the table).\n\n"
        f"**Claim 3, more prunable ({next(iter(CLAIM3_PRUNABLE.values())).claim}): "
        f"{verdicts['claim 3, more prunable']}** (test accuracy after pruning to the level "
        f"chosen on validation, arm - none, CI above 0, every arm in every regime): "
        + "; ".join(f"{regime_label(r)} at {choices[f'level, {regime_label(r)}']}: "
                    + ", ".join(f"{a} {_prunable(verdicts, a, r)}" for a in CLAIM3_ARMS)
                    for r in regs) + ".")
    return StudyResult(text, verdict, verdicts, choices, tuple(findings))


def _prunable(verdicts: Mapping[str, str], arm: str, regime: Any) -> str:
    return verdicts.get(f"claim 3, more prunable, {arm}, {regime_label(regime)}",
                        INCONCLUSIVE)
