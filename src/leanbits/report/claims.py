"""The paper's claims: each verdict's criterion, fixed here before its study runs, and the
tables and verdicts computed from a study's per-seed records.

Every criterion is a :class:`leanbits.stats.Criterion` constant: one metric, two arms, a
claimed direction and a margin; the verdict is read off the 95 % CI of the arms'
difference paired by seed (:mod:`leanbits.stats`). Every choice a table makes - the fewest
bits at an accuracy level, the cutoff sparsity of claim 4, the most prunable regularizer -
is made on validation accuracy; test accuracy is read for the chosen point only. The study
functions take :class:`leanbits.report.seeds.SeedRecord` lists (a run's, or a committed
``results.csv``) and return a :class:`StudyResult`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from leanbits.report.seeds import SeedRecord
from leanbits.stats import (
    INCONCLUSIVE,
    SUPPORTED,
    Criterion,
    Estimate,
    all_of,
    estimate,
    paired,
)
from leanbits.sweep.frontier import bits_for_accuracy

# ----------------------------------------------------------------------------- criteria
CLAIM1 = Criterion(
    "softmax normalization in the output layer causes parameter explosion",
    metric="last_growth", treatment="softmax", baseline="llr", direction="greater")
"""Claim 1, explosion study, weight decay off: the output layer's weight L2 norm grows more
from epoch 5 to the end of training with a softmax head than with an llr head
(``last_growth``, softmax - llr, paired by seed: CI above 0)."""

CLAIM2 = Criterion(
    "an LLR output layer reduces overfitting",
    metric="train_test_acc", treatment="llr", baseline="softmax", direction="greater")
"""Claim 2, explosion study, weight decay off: at an equal training budget the llr head's
trained model has higher test accuracy than softmax's (``train_test_acc``, llr - softmax:
CI above 0). One metric: the train-validation gap at 100 % training accuracy is just
validation error, and the heads' losses are on different scales."""

CLAIM3_ARMS = ("l2", "group")
"""The regularization arms claim 3 is decided on (weight decay, group lasso), named before
the run; the other arms of the study are reported but decide nothing."""

CLAIM3_OVERFIT = {arm: Criterion(
    "weight decay and structural regularization reduce overfitting with ReLU networks",
    metric="train_test_acc", treatment=arm, baseline="none", direction="greater")
    for arm in CLAIM3_ARMS}
"""Claim 3 (less overfitting), regularization study: each arm of :data:`CLAIM3_ARMS` has
higher test accuracy of its trained model than no regularization (arm - none: CI above 0).
Supported when every arm is (:func:`leanbits.stats.all_of`)."""

CLAIM3_LEVEL = 0.95
"""The sparsity at which "more prunable" is measured (a ``level`` of the study)."""

CLAIM3_PRUNABLE = {arm: Criterion(
    "a well-regularized snapshot prunes better",
    metric="prune_drop", treatment=arm, baseline="none", direction="less")
    for arm in CLAIM3_ARMS}
"""Claim 3 (more prunable), regularization study: pruning once to :data:`CLAIM3_LEVEL` and
re-fitting biases loses less test accuracy (``prune_drop`` = trained minus pruned test
accuracy) from each arm of :data:`CLAIM3_ARMS` than from no regularization (arm - none:
CI below 0). Kept apart from "less overfitting": a better dense model is not by itself a
more prunable one."""

CLAIM4_MARGIN = -0.005
"""Non-inferiority margin of claim 4: re-fit may be at most half a point of accuracy below
masked fine-tuning."""

CLAIM4 = Criterion(
    "pruning a snapshot once and re-fitting only its non-weights is as good as masked "
    "fine-tuning", metric="test_acc", treatment="refit", baseline="finetune",
    direction="greater", margin=CLAIM4_MARGIN)
"""Claim 4, snapshot study, at the cutoff sparsity: refit - finetune test accuracy, paired
by seed, CI above :data:`CLAIM4_MARGIN`."""

CLAIM4_CUTOFF = Criterion(
    CLAIM4.claim, metric="val_acc", treatment="refit", baseline="finetune",
    direction="greater", margin=CLAIM4_MARGIN)
"""How claim 4's cutoff is chosen: the highest sparsity up to which this criterion - claim
4's on *validation* accuracy - is supported at every level. Test decides only the
verdict at that one sparsity."""

CLAIM4_NONE = Criterion(
    "re-fitting the non-weights helps over pruning alone", metric="test_acc",
    treatment="refit", baseline="none", direction="greater")
"""Reported beside claim 4 at every sparsity: refit - none test accuracy, CI above 0."""

#: every criterion, by the name the summary uses
CRITERIA: dict[str, Criterion] = {
    "claim 1": CLAIM1, "claim 2": CLAIM2,
    **{f"claim 3, less overfitting, {a}": c for a, c in CLAIM3_OVERFIT.items()},
    **{f"claim 3, more prunable, {a}": c for a, c in CLAIM3_PRUNABLE.items()},
    "claim 4": CLAIM4, "claim 4 cutoff (validation)": CLAIM4_CUTOFF,
    "claim 4 against no re-fit": CLAIM4_NONE,
}


@dataclass(frozen=True)
class StudyResult:
    """What one study's records say.

    Attributes:
        text: Markdown tables (mean ± std over seeds; CIs where a verdict reads them).
        verdict: Markdown paragraph(s) with each claim's verdict and its numbers.
        verdicts: ``{criterion name: verdict}``.
        choices: every choice made on validation (level, cutoff, configuration), by name;
            test accuracy never changes them.
    """

    text: str
    verdict: str
    verdicts: dict[str, str] = field(default_factory=dict)
    choices: dict[str, Any] = field(default_factory=dict)


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


def _rule(c: Criterion) -> str:
    return f"criterion: {c.rule()}"


# ----------------------------------------------------------------------------- claims 1, 2
def explosion(records: Sequence[SeedRecord]) -> StudyResult:
    """Claims 1 and 2 from the explosion study (axes ``head``, ``weight_decay``,
    ``bits``)."""
    bits = axis_values(records, "bits")
    nets = select(records, bits=bits[0]) if bits else list(records)
    rows = []
    for head in axis_values(records, "head"):
        for wd in axis_values(records, "weight_decay"):
            rs = select(nets, head=head, weight_decay=wd)
            rows.append([head, wd, est(rs, "growth").format(), est(rs, "last_growth").format(),
                         est(rs, "max_abs_end").format(),
                         est(rs, "mean_abs_output").format(),
                         pts(est(rs, "gap_acc")), pts(est(rs, "train_val_acc")),
                         pts(est(rs, "train_test_acc"))]
                        + [pts(est(select(records, head=head, weight_decay=wd, bits=b),
                                   "test_acc")) for b in bits])
    text = md_table(["head", "weight decay", "weight L2 growth", "output-layer L2 growth",
                     "max abs w", "mean abs output", "train-val acc gap (pt)",
                     "val acc (%)", "test acc (%)"]
                    + [f"test acc, {b}-bit uniform (%)" for b in bits], rows)
    text += ("\n\nMean ± std over seeds. Growth: L2 norm at the end of training over the "
             "norm at epoch 5.")
    d1, v1 = compare(CLAIM1, nets, "head", weight_decay="off")
    d2, v2 = compare(CLAIM2, nets, "head", weight_decay="off")
    off = {h: select(nets, head=h, weight_decay="off") for h in ("softmax", "llr")}
    verdict = (
        f"**Claim 1 ({CLAIM1.claim}): {v1}.** Without weight decay the output layer's "
        f"L2 norm grows by a factor {est(off['softmax'], 'last_growth').format()} with "
        f"softmax and {est(off['llr'], 'last_growth').format()} with llr; paired "
        f"difference {d1.format(ci=True)} ({d1.n} seeds; {_rule(CLAIM1)})."
        f"\n\n**Claim 2 ({CLAIM2.claim}): {v2}.** Test accuracy without weight decay: "
        f"llr {pts(est(off['llr'], 'train_test_acc'))} %, softmax "
        f"{pts(est(off['softmax'], 'train_test_acc'))} %; llr - softmax {diff_text(d2)} "
        f"points ({d2.n} seeds; {_rule(CLAIM2)}).")
    return StudyResult(text, verdict, {"claim 1": v1, "claim 2": v2})


# ----------------------------------------------------------------------------- claim 3
def regularization(records: Sequence[SeedRecord]) -> StudyResult:
    """Claim 3 from the regularization study (axes ``regularizer``, ``level``)."""
    levels = [lv for lv in axis_values(records, "level") if lv != "dense"]
    nets = select(records, level=axis_values(records, "level")[0]) if levels else records
    drops = with_value(records, "prune_drop", lambda r: None if (
        r.get("train_test_acc") is None or r.get("prune_test_acc") is None)
        else r.get("train_test_acc") - r.get("prune_test_acc"))
    at_level = select(drops, level=CLAIM3_LEVEL)
    rows = []
    verdicts: dict[str, str] = {}
    for reg in axis_values(records, "regularizer"):
        rs = select(nets, regularizer=reg)
        overfit = compare(CLAIM3_OVERFIT.get(reg) or Criterion(
            "", "train_test_acc", reg, "none", "greater"), nets, "regularizer")
        prunable = compare(CLAIM3_PRUNABLE.get(reg) or Criterion(
            "", "prune_drop", reg, "none", "less"), at_level, "regularizer")
        if reg in CLAIM3_ARMS:
            verdicts[f"claim 3, less overfitting, {reg}"] = overfit[1]
            verdicts[f"claim 3, more prunable, {reg}"] = prunable[1]
        rows.append([reg, pts(est(rs, "gap_acc")), pts(est(rs, "train_val_acc")),
                     pts(est(rs, "train_test_acc")),
                     "" if reg == "none" else diff_text(overfit[0]),
                     pts(est(select(at_level, regularizer=reg), "prune_drop")),
                     "" if reg == "none" else diff_text(prunable[0])]
                    + [pts(est(select(records, regularizer=reg, level=lv), "prune_test_acc"))
                       for lv in levels])
    text = md_table(["regularizer", "train-val acc gap (pt)", "val acc (%)", "test acc (%)",
                     "test acc - none, pt [95 % CI]", f"drop at {CLAIM3_LEVEL} (pt)",
                     "drop - none, pt [95 % CI]"]
                    + [f"test acc, refit @ {lv} (%)" for lv in levels], rows)
    text += ("\n\nMean ± std over seeds; differences paired by seed. Drop: test accuracy "
             "of the trained model minus after pruning once and re-fitting biases.")
    # The most prunable regularizer is named on validation: the smallest seed-mean loss of
    # validation accuracy from pruning at the claim's level.
    val_drop = {reg: est(with_value(select(records, regularizer=reg, level=CLAIM3_LEVEL),
                                    "val_drop", _val_drop), "val_drop").mean
                for reg in axis_values(records, "regularizer")}
    val_drop = {k: v for k, v in val_drop.items() if not math.isnan(v)}
    best = min(val_drop, key=val_drop.get) if val_drop else None
    v_over = all_of(verdicts.get(f"claim 3, less overfitting, {a}", INCONCLUSIVE)
                    for a in CLAIM3_ARMS)
    v_prune = all_of(verdicts.get(f"claim 3, more prunable, {a}", INCONCLUSIVE)
                     for a in CLAIM3_ARMS)
    verdicts["claim 3, less overfitting"] = v_over
    verdicts["claim 3, more prunable"] = v_prune
    arms = " and ".join(CLAIM3_ARMS)
    verdict = (
        f"**Claim 3 ({next(iter(CLAIM3_OVERFIT.values())).claim}): {v_over}** on the arms "
        f"named before the run ({arms}): "
        + "; ".join(f"{a} {verdicts.get(f'claim 3, less overfitting, {a}', INCONCLUSIVE)}"
                    for a in CLAIM3_ARMS)
        + f" (test accuracy of the trained model against none, paired by seed, 95 % CI "
        f"above 0; table).\n\n**Claim 3, more prunable "
        f"({next(iter(CLAIM3_PRUNABLE.values())).claim}): {v_prune}**: "
        + "; ".join(f"{a} {verdicts.get(f'claim 3, more prunable, {a}', INCONCLUSIVE)}"
                    for a in CLAIM3_ARMS)
        + f" (accuracy lost by pruning to {CLAIM3_LEVEL} against none, CI below 0). "
        + (f"Smallest loss from pruning to {CLAIM3_LEVEL} on validation: {best} (on test "
           f"{pts(est(select(at_level, regularizer=best), 'prune_drop'))} points)."
           if best is not None else ""))
    return StudyResult(text, verdict, verdicts, {"most prunable": best})


def _val_drop(r: SeedRecord) -> float | None:
    a, b = r.get("train_val_acc"), r.get("prune_val_acc")
    return None if a is None or b is None else a - b


# ----------------------------------------------------------------------------- claim 4
def snapshot(records: Sequence[SeedRecord]) -> StudyResult:
    """Claim 4 from the snapshot study (axes ``method``, ``sparsity``)."""
    methods = axis_values(records, "method")
    levels = sorted(axis_values(records, "sparsity"))
    rows = [[m] + [pts(est(select(records, method=m, sparsity=s), "test_acc"))
                   for s in levels]
            + [est(select(records, method=m), "backprop_epochs").format(digits=1),
               est(select(records, method=m), "prune_seconds").format(digits=1)]
            for m in methods]
    text = md_table(["method"] + [f"test acc @ {s} (%)" for s in levels]
                    + ["backprop epochs", "stage seconds"], rows)
    cmp_rows = []
    for s in levels:
        dv, vv = compare(CLAIM4_CUTOFF, records, "method", sparsity=s)
        dt, vt = compare(CLAIM4, records, "method", sparsity=s)
        dn, vn = compare(CLAIM4_NONE, records, "method", sparsity=s)
        cmp_rows.append([s, diff_text(dv), vv, diff_text(dt), vt, diff_text(dn), vn])
    cutoff = _cutoff(levels, records)
    text += "\n\n" + md_table(
        ["sparsity", "refit - finetune, val (pt)", "on validation", "refit - finetune, test "
         "(pt)", "on test", "refit - none, test (pt)", "on test"], cmp_rows)
    dense = est(select(records, method=methods[0]) if methods else [], "train_test_acc")
    text += (f"\n\nDense test accuracy {pts(dense)} %. Mean ± std over seeds; differences "
             "paired by seed with 95 % CIs. Stage seconds: the whole pruning stage (data "
             "loading and evaluations included), not method time.")
    if cutoff is None:
        at = levels[0] if levels else None
        d, v = compare(CLAIM4, records, "method", sparsity=at) if at is not None else (
            estimate([]), INCONCLUSIVE)
        head = f"not supported at any sparsity on validation; at {at} on test: {v}"
        verdicts = {"claim 4": v if v != SUPPORTED else INCONCLUSIVE}
    else:
        d, v = compare(CLAIM4, records, "method", sparsity=cutoff)
        head = f"{v} up to sparsity {cutoff}"
        verdicts = {"claim 4": v}
    verdict = (
        f"**Claim 4 ({CLAIM4.claim}): {head}.** The cutoff is the highest sparsity up to "
        f"which re-fit stays within {-100 * CLAIM4_MARGIN:g} points of masked fine-tuning on "
        "validation (paired CI); at it, refit - finetune test accuracy is "
        f"{diff_text(d)} points ({d.n} seeds; {_rule(CLAIM4)}). Re-fit against no re-fit, "
        "per sparsity, is in the second table.")
    return StudyResult(text, verdict, verdicts, {"cutoff": cutoff})


def _cutoff(levels: Sequence[float], records: Sequence[SeedRecord]) -> float | None:
    """The highest sparsity up to which :data:`CLAIM4_CUTOFF` holds at every level."""
    cutoff = None
    for s in levels:
        if compare(CLAIM4_CUTOFF, records, "method", sparsity=s)[1] != SUPPORTED:
            break
        cutoff = s
    return cutoff


# ----------------------------------------------------------------------------- claim 5
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
        rows.append([model, head, pts(est(_dense(rs), "train_val_acc")), *cells])
    text = md_table(["model", "head", "dense val acc (%)"]
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
        "**Claim 5 (compare networks by accuracy against total bits; a lower bound per "
        "accuracy level): measured, not a yes/no claim.** The fewest bits per level are "
        "chosen on validation and are upper bounds on the true minimum (the lower envelope "
        "of everything tried).")
    return StudyResult(text, verdict, {}, choices)


def _dense(records: Iterable[SeedRecord]) -> list[SeedRecord]:
    """One record per seed of the trained networks (the first point of each)."""
    seen: dict[int, SeedRecord] = {}
    for r in records:
        seen.setdefault(r.seed, r)
    return list(seen.values())


#: study name -> (title, function of the records)
STUDIES: dict[str, tuple[str, Callable[[Sequence[SeedRecord]], StudyResult]]] = {
    "explosion": ("Claims 1 and 2: softmax and weight growth; LLR heads and overfitting",
                  explosion),
    "regularization": ("Claim 3: weight decay and structural regularization",
                       regularization),
    "snapshot": ("Claim 4: snapshot pruning with non-weight re-fit against baselines",
                 snapshot),
    "frontier-mnist": ("Claim 5: accuracy against total bits, MNIST",
                       lambda rs: frontier(rs, [0.97, 0.98, 0.985, 0.99])),
    "frontier-fashion": ("Claim 5: accuracy against total bits, Fashion-MNIST",
                         lambda rs: frontier(rs, [0.85, 0.88, 0.90, 0.91])),
}


def criteria_text(criteria: Mapping[str, Criterion] = CRITERIA) -> str:
    """Every criterion in words, one Markdown list item each."""
    return "\n".join(f"- {name}: {c.claim} - {c.rule()}" for name, c in criteria.items())
