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
from leanbits.sweep.grid import Experiment

# ----------------------------------------------------------------------------- criteria
REGIMES = ("full", "1k", "5k", "noise20")
"""The data regimes of claims 2 and 3 (the ``regime`` axis of the explosion and
regularization studies), named before the run: the full training split; its first 1,000
and 5,000 examples (small sets, where overfitting shows); the full split with 20 %
symmetric label noise (``label_noise = 0.2``). Validation and test are never changed."""

CLAIM1_REGIME = "full"
"""The regime claim 1 is measured in: the full training split."""

CLAIM1 = Criterion(
    "softmax normalization in the output layer causes parameter explosion",
    metric="late_last_growth", treatment="softmax", baseline="llr", direction="greater")
"""Claim 1 (output-layer weights), explosion study, :data:`CLAIM1_REGIME`: after training
error reaches zero, the output layer's weight L2 norm grows more with a softmax head than
with an llr head. ``late_last_growth`` is the norm at the end of training over the norm at
the middle epoch, for runs whose eval-mode training error reached zero by that epoch
(:func:`leanbits.report.seeds.history_values`; one window for every arm, so an arm that
fits sooner gains no longer window); softmax - llr, paired by seed: CI above 0."""

CLAIM1_OUTPUT = Criterion(
    CLAIM1.claim, metric="late_output_growth", treatment="softmax", baseline="llr",
    direction="greater")
"""Claim 1 (output magnitude): the same for the mean |output| on validation (logit
magnitude of softmax, LLR magnitude of llr) over the same window."""

CLAIM1_PARTS = {"claim 1, output-layer weights": CLAIM1,
                "claim 1, output magnitude": CLAIM1_OUTPUT}
"""Claim 1 is supported only when both parts are (:func:`leanbits.stats.all_of`)."""

CLAIM1_CONTROLS = ("llr-bounded", "softmax-ls")
"""Arms reported beside claim 1 against softmax (paired CIs), deciding nothing: the llr head
with bounded targets (``llr_target``) and softmax with label smoothing. They tell a bounded
target apart from the normalization itself."""

OVERFIT_METRICS = {"test accuracy": ("train_test_acc", "greater"),
                   "test NLL": ("train_test_nll", "less"),
                   "test ECE": ("train_test_ece", "less")}
"""The three measures of "less overfitting" of claims 2 and 3, each its own criterion (no OR):
test accuracy, test negative log-likelihood and test expected calibration error (15
equal-width bins) of the trained model, on the common probability output of every head
(:meth:`leanbits.heads.Head.log_probs`: softmax's softmax; llr's ``sigmoid(L_k)``
renormalised to sum to 1), at an equal training budget (same epochs, optimizer, learning
rate and schedule for every arm)."""

CLAIM2 = {name: Criterion("an LLR output layer reduces overfitting", metric=metric,
                          treatment="llr", baseline="softmax", direction=direction)
          for name, (metric, direction) in OVERFIT_METRICS.items()}
"""Claim 2, explosion study, in each regime of :data:`REGIMES`: llr - softmax of each
measure of :data:`OVERFIT_METRICS`, paired by seed: accuracy CI above 0, NLL and ECE CIs
below 0. A measure's verdict over the claim is :func:`leanbits.stats.all_of` its regimes
(supported only when it holds in every regime)."""

CLAIM3_ARMS = ("l2", "group")
"""The regularization arms claim 3 is decided on (weight decay, group lasso), named before
the run; other arms of the study are reported but decide nothing."""

CLAIM3_OVERFIT = {(arm, name): Criterion(
    "weight decay and structural regularization reduce overfitting with ReLU networks",
    metric=metric, treatment=arm, baseline="none", direction=direction)
    for arm in CLAIM3_ARMS for name, (metric, direction) in OVERFIT_METRICS.items()}
"""Claim 3 (less overfitting), regularization study, in each regime of :data:`REGIMES`:
arm - none of each measure of :data:`OVERFIT_METRICS` of the trained (unpruned) model,
paired by seed. A measure's verdict is :func:`leanbits.stats.all_of` every arm of
:data:`CLAIM3_ARMS` in every regime."""

CLAIM3_LEVEL_DROP = 0.01
"""How the sparsity of claim 3's "more prunable" is chosen, per regime and on validation
only: the lowest pruning level of the study at which the *baseline* (no regularization)
loses more than this much seed-mean validation accuracy from pruning once and re-fitting -
where pruning starts to hurt the unregularized net (the highest level when none does).
Chosen from the baseline alone, it favours no arm; test accuracy is read at it once."""

CLAIM3_PRUNABLE = {arm: Criterion(
    "a well-regularized snapshot prunes better", metric="prune_test_acc", treatment=arm,
    baseline="none", direction="greater") for arm in CLAIM3_ARMS}
"""Claim 3 (more prunable), regularization study, in each regime: test accuracy after
pruning once to the level :data:`CLAIM3_LEVEL_DROP` chooses and re-fitting the
non-weights, arm - none, paired by seed: CI above 0. Supported when every arm of
:data:`CLAIM3_ARMS` is in every regime. Kept apart from "less overfitting": two criteria,
never one OR the other."""

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

CLAIM4_BUDGET_BASIS = {
    "iterative": "Han et al. 2015 prune and retrain iteratively; they give no round counts "
                 "for LeNet, so the rounds and epochs are ours, stated here",
    "rewind": "lottery-ticket rewinding as in Frankle et al. 2020 and Renda et al. 2020, "
              "not a short retrain",
}
"""Whose budget each of claim 4's baselines follows, stated beside the budget
:func:`baseline_budgets` reads from the study's settings: the numbers come from the
experiment, the basis from here."""

#: studies whose section states the budgets of their pruning methods (:func:`baseline_budgets`)
BUDGETED_STUDIES = ("snapshot",)

#: every criterion, by the name the summary uses
CRITERIA: dict[str, Criterion] = {
    **CLAIM1_PARTS,
    **{f"claim 2, {name}": c for name, c in CLAIM2.items()},
    **{f"claim 3, less overfitting, {arm}, {name}": c
       for (arm, name), c in CLAIM3_OVERFIT.items()},
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


def _rule(c: Criterion) -> str:
    return f"criterion: {c.rule()}"


# ----------------------------------------------------------------------------- claims 1, 2
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
_SHOW = {"test accuracy": ("test acc (%)", 100.0, 2), "test NLL": ("test NLL (nats)", 1.0, 4),
         "test ECE": ("test ECE (%)", 100.0, 2)}


def _overfit_cells(rs: Sequence[SeedRecord]) -> list[str]:
    return [est(rs, metric).format(scale, digits)
            for name, (metric, _d) in OVERFIT_METRICS.items()
            for _t, scale, digits in [_SHOW[name]]]


def _regime_label(regime: Any) -> str:
    return "-" if regime is None else str(regime)


def explosion(records: Sequence[SeedRecord]) -> StudyResult:
    """Claims 1 and 2 from the explosion study (axes ``regime``, ``head`` and ``bits``)."""
    bits = axis_values(records, "bits")
    nets = select(records, bits=bits[0]) if bits else list(records)
    regs = regimes(records)
    heads = axis_values(records, "head")
    # Claim 1: growth after zero training error, full training split.
    c1_regime = CLAIM1_REGIME if CLAIM1_REGIME in regs else regs[0]
    c1 = select(nets, regime=c1_regime)
    rows = []
    for head in heads:
        rs = select(c1, head=head)
        rows.append([head, est(rs, "zero_error_epoch").format(digits=1),
                     est(rs, "late_epoch").format(digits=0),
                     est(rs, "last_l2_end").format(), est(rs, "late_last_growth").format(3),
                     est(rs, "mean_abs_output").format(), est(rs, "late_output_growth").format(3),
                     pts(est(rs, "train_test_acc"))]
                    + [pts(est(select(records, regime=c1_regime, head=head, bits=b),
                                   "test_acc")) for b in bits])
    text = (f"Claim 1, regime {_regime_label(c1_regime)}:\n\n" + md_table(
        ["head", "zero train error at epoch", "window from epoch", "output-layer L2 at end",
         "output-layer L2 growth in window", "mean abs output at end",
         "mean abs output growth in window", "test acc (%)"]
        + [f"test acc, {b}-bit uniform (%)" for b in bits], rows))
    text += ("\n\nMean ± std over seeds. Zero train error: first epoch at which eval-mode "
             "accuracy on the training subset is 100 %. The window runs from the middle "
             "epoch to the end; growth is the value at the end over the value at its start, "
             "for runs whose training error reached zero by its start.")
    verdicts: dict[str, str] = {}
    parts = []
    for name, c in CLAIM1_PARTS.items():
        d, v = compare(c, c1, "head")
        verdicts[name] = v
        parts.append(f"{name.split(', ', 1)[1]}: {v}, softmax - llr {fmt_diff(d, 1, 3)} "
                     f"({d.n} seeds)")
    verdicts["claim 1"] = all_of(verdicts[n] for n in CLAIM1_PARTS)
    controls = []
    for arm in CLAIM1_CONTROLS:
        if arm in heads:
            for c in CLAIM1_PARTS.values():
                d, _v = compare(Criterion("", c.metric, arm, c.treatment, c.direction), c1,
                                "head")
                controls.append(f"{arm} - softmax, {c.metric}: {fmt_diff(d, 1, 3)}")
    # Claim 2: llr against softmax, per regime and measure.
    rows, cmp_rows = [], []
    for regime in regs:
        for head in heads:
            rows.append([_regime_label(regime), head]
                        + _overfit_cells(select(nets, regime=regime, head=head)))
        cells = []
        for name, c in CLAIM2.items():
            d, v = compare(c, nets, "head", regime=regime)
            verdicts[f"claim 2, {name}, {_regime_label(regime)}"] = v
            _t, scale, digits = _SHOW[name]
            cells += [fmt_diff(d, scale, digits), v]
        cmp_rows.append([_regime_label(regime), *cells])
    for name in CLAIM2:
        verdicts[f"claim 2, {name}"] = all_of(
            verdicts[f"claim 2, {name}, {_regime_label(r)}"] for r in regs)
    text += "\n\nClaim 2, trained models:\n\n" + md_table(
        ["regime", "head"] + [_SHOW[n][0] for n in OVERFIT_METRICS], rows)
    text += "\n\nllr - softmax, paired by seed [95 % CI]:\n\n" + md_table(
        ["regime"] + [h for n in OVERFIT_METRICS
                      for h in (f"{_SHOW[n][0]}", "verdict")], cmp_rows)
    text += ("\n\nMean ± std over seeds. NLL and ECE (15 equal-width confidence bins) are "
             "measured on each head's class probabilities (llr: sigmoid of each LLR, "
             "renormalised to sum to 1).")
    verdict = (
        f"**Claim 1 ({CLAIM1.claim}): {verdicts['claim 1']}** (both parts needed): "
        + "; ".join(parts) + f". Criteria: {CLAIM1.rule()}; {CLAIM1_OUTPUT.rule()}."
        + (f" Controls (decide nothing): {'; '.join(controls)}." if controls else "")
        + f"\n\n**Claim 2 ({next(iter(CLAIM2.values())).claim})**, each measure in every "
        "regime: " + "; ".join(
            f"{name} {verdicts[f'claim 2, {name}']} ("
            + ", ".join(f"{_regime_label(r)} {verdicts[f'claim 2, {name}, {_regime_label(r)}']}"
                        for r in regs) + ")" for name in CLAIM2)
        + ". Criteria: " + "; ".join(c.rule() for c in CLAIM2.values()) + ".")
    return StudyResult(text, verdict, verdicts)


# ----------------------------------------------------------------------------- claim 3
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
    choices: dict[str, Any] = {}
    rows, prune_rows = [], []
    for regime in regs:
        rn = select(nets, regime=regime)
        rr = select(records, regime=regime)
        level = prune_level(rr)
        choices[f"level, {_regime_label(regime)}"] = level
        at = select(rr, level=level)
        for reg in regularizers:
            cells = _overfit_cells(select(rn, regularizer=reg))
            diffs, pdiff = [], ""
            for name, (metric, direction) in OVERFIT_METRICS.items():
                c = CLAIM3_OVERFIT.get((reg, name)) or Criterion(
                    "", metric, reg, "none", direction)
                d, v = compare(c, rn, "regularizer")
                if (reg, name) in CLAIM3_OVERFIT:
                    verdicts[f"claim 3, less overfitting, {reg}, {name}, "
                             f"{_regime_label(regime)}"] = v
                _t, scale, digits = _SHOW[name]
                diffs.append("" if reg == "none" else
                             fmt_diff(d, scale, digits) + (f" {v}" if (reg, name) in
                                                           CLAIM3_OVERFIT else ""))
            rows.append([_regime_label(regime), reg, *cells, *diffs])
            c = CLAIM3_PRUNABLE.get(reg) or Criterion("", "prune_test_acc", reg, "none",
                                                      "greater")
            d, v = compare(c, at, "regularizer")
            if reg in CLAIM3_PRUNABLE:
                verdicts[f"claim 3, more prunable, {reg}, {_regime_label(regime)}"] = v
            if reg != "none":
                pdiff = fmt_diff(d) + (f" {v}" if reg in CLAIM3_PRUNABLE else "")
            prune_rows.append(
                [_regime_label(regime), reg, level, pts(est(select(at, regularizer=reg),
                                                            "prune_test_acc")), pdiff]
                + [pts(est(select(rr, regularizer=reg, level=lv), "prune_test_acc"))
                   for lv in levels])
    for name in OVERFIT_METRICS:
        verdicts[f"claim 3, less overfitting, {name}"] = all_of(
            verdicts[f"claim 3, less overfitting, {a}, {name}, {_regime_label(r)}"]
            for a in CLAIM3_ARMS for r in regs
            if f"claim 3, less overfitting, {a}, {name}, {_regime_label(r)}" in verdicts)
    verdicts["claim 3, more prunable"] = all_of(
        verdicts[f"claim 3, more prunable, {a}, {_regime_label(r)}"]
        for a in CLAIM3_ARMS for r in regs
        if f"claim 3, more prunable, {a}, {_regime_label(r)}" in verdicts)
    text = "Less overfitting: the trained models.\n\n" + md_table(
        ["regime", "regularizer"] + [_SHOW[n][0] for n in OVERFIT_METRICS]
        + [f"{_SHOW[n][0].split(' (')[0]} - none [95 % CI]" for n in OVERFIT_METRICS], rows)
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
        + "; ".join(f"{_regime_label(r)} at {choices[f'level, {_regime_label(r)}']}: "
                    + ", ".join(f"{a} {_prunable(verdicts, a, r)}" for a in CLAIM3_ARMS)
                    for r in regs) + ".")
    return StudyResult(text, verdict, verdicts, choices)


def _prunable(verdicts: Mapping[str, str], arm: str, regime: Any) -> str:
    return verdicts.get(f"claim 3, more prunable, {arm}, {_regime_label(regime)}",
                        INCONCLUSIVE)


# ----------------------------------------------------------------------------- claim 4
def snapshot(records: Sequence[SeedRecord]) -> StudyResult:
    """Claim 4 from the snapshot study (axes ``method``, ``sparsity``)."""
    methods = axis_values(records, "method")
    levels = sorted(axis_values(records, "sparsity"))
    rows = [[m] + [pts(est(select(records, method=m, sparsity=s), "test_acc"))
                   for s in levels]
            + [est(select(records, method=m), "backprop_epochs").format(digits=1),
               *(estimate(seed_means(select(records, method=m), key).values()).format(
                   digits=2) for key in ("method_seconds", "prune_seconds"))]
            for m in methods]
    text = md_table(["method"] + [f"test acc @ {s} (%)" for s in levels]
                    + ["backprop epochs", "method seconds", "whole-stage seconds"], rows)
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
             "paired by seed with 95 % CIs. Method seconds: wall time of the pruning "
             "method alone (its own training and scoring, of the run kept from the "
             "learning-rate grid; no data loading or evaluation), per pruned model: the "
             "mean over sparsities per seed, then mean ± std over seeds. Whole-stage "
             "seconds: the same of the whole pruning stage (data loading, evaluations and "
             "the whole grid included; stages share the cores), not method time.")
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


def _method_configs(experiment: Experiment) -> tuple[Any, dict[str, Any]]:
    """The train config of the experiment's first point and ``{method: prune config}`` of
    the first prune stage of each method, in grid order."""
    train, prune = None, {}
    for point in experiment.points:
        for stage in point.stages:
            if stage.kind == "train" and train is None:
                train = stage.config
            elif stage.kind == "prune":
                prune.setdefault(stage.config.method, stage.config)
    return train, prune


def baseline_budgets(experiment: Experiment, source: str) -> str:
    """The paragraph stating what each pruning method of a study may spend: backprop
    epochs, learning rates and the grid they are picked from, and whose budget each
    baseline follows (:data:`CLAIM4_BUDGET_BASIS`).

    Args:
        experiment: the study's experiment (its shipped preset, or the run's effective
            ``experiment.toml``): every number is read from its train and prune configs.
        source: where those settings were read, as the paragraph names it.

    Returns:
        One Markdown paragraph (empty when the experiment prunes nothing).
    """
    train, prune = _method_configs(experiment)
    if not prune or train is None:
        return ""
    opt = {"adam": "Adam", "sgd": "SGD"}
    remaining = max(0, train.epochs - train.rewind_epoch)
    train_opt = opt.get(train.optimizer, train.optimizer) + (
        f" ({train.lr:g}, momentum {train.momentum:g})" if train.optimizer == "sgd"
        else f" ({train.lr:g})")
    parts, rates = [], []
    for method, c in prune.items():
        basis = CLAIM4_BUDGET_BASIS.get(method)
        tail = f" ({basis})" if basis else ""
        if method == "none":
            parts.append("none 0")
        elif method == "refit":
            parts.append(f"re-fit {c.refit_epochs}")
            rates.append(f"re-fit Adam {c.refit_lr:g}")
        elif method == "finetune":
            parts.append(f"fine-tune {c.finetune_epochs}")
            rates.append(f"fine-tune {opt.get(c.optimizer, c.optimizer)} {c.finetune_lr:g}")
        elif method == "iterative":
            parts.append(f"iterative {c.rounds} rounds x {c.round_epochs} epochs = "
                         f"{c.rounds * c.round_epochs} on a geometric schedule{tail}")
            rates.append(f"iterative {opt.get(c.optimizer, c.optimizer)} {c.iterative_lr:g}")
        elif method == "rewind":
            parts.append(
                f"rewind {remaining}: back to the weights after epoch {train.rewind_epoch}, "
                f"then the remaining {remaining} epochs of the {train.epochs}-epoch run "
                f"with its own {train_opt}, L2 {train.l2:g} and {train.schedule} schedule "
                f"resumed at epoch {train.rewind_epoch}{tail}")
            rates.append("rewind " + (f"{c.rewind_lr:g}" if c.rewind_lr is not None
                                      else f"the training's {train.lr:g}"))
        else:
            parts.append(f"{method}: see `backprop_epochs` in its rows")
    if "refit" in prune and "finetune" in prune:
        equal = prune["refit"].refit_epochs == prune["finetune"].finetune_epochs
        i = next(i for i, p in enumerate(parts) if p.startswith("fine-tune"))
        parts[i] += (" (equal, as they are compared head to head)" if equal else
                     " (not equal: the head-to-head comparison is not at equal budget)")
    own = "each method's own rate" + (f" ({', '.join(rates)})" if rates else "")
    grids = {tuple(c.lr_grid) for c in prune.values()}
    if grids == {()}:
        how = f"{own}, no grid"
    else:
        grid = " / ".join(sorted({f"{f:g}" for g in grids for f in g}, key=float))
        how = (f"{own} times {grid}, the run with the best validation accuracy kept and "
               "test read once (the grid multiplies each method's cost: "
               "`grid_backprop_epochs` in each row)")
    return (f"**Budgets of the baselines ({source}).** In backprop epochs over the "
            "training set, per pruned model: " + "; ".join(parts) + f". Learning rates: "
            f"{how}. Method time: `method_seconds` in each row, the method alone (no data "
            "loading, no evaluation).")


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
