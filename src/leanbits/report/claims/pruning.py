"""Claim 4 from the snapshot study: re-fit against masked fine-tuning and the other
pruning baselines per sparsity, the cutoff sparsity chosen on validation, and the paragraph
stating every method's budget from the study's settings (:func:`baseline_budgets`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from leanbits.report.claims.common import (
    Finding,
    StudyResult,
    axis_values,
    compare,
    diff_text,
    est,
    md_table,
    pts,
    seed_means,
    select,
)
from leanbits.report.claims.criteria import (
    CLAIM4,
    CLAIM4_BUDGET_BASIS,
    CLAIM4_CUTOFF,
    CLAIM4_MARGIN,
    CLAIM4_NONE,
)
from leanbits.report.seeds import SeedRecord
from leanbits.stats import INCONCLUSIVE, SUPPORTED, Criterion, estimate
from leanbits.sweep.grid import Experiment


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
        where = f"at sparsity {at} (no cutoff on validation)"
    else:
        d, v = compare(CLAIM4, records, "method", sparsity=cutoff)
        head = f"{v} up to sparsity {cutoff}"
        verdicts = {"claim 4": v}
        where = f"up to the cutoff sparsity {cutoff} (chosen on validation)"
    finding = Finding("claim 4", CLAIM4.claim, f"{CLAIM4.treatment} against "
                      f"{CLAIM4.baseline}, test accuracy, {where}", verdicts["claim 4"],
                      "claim 4", f"{CLAIM4.treatment} - {CLAIM4.baseline} {diff_text(d)} pt",
                      d.n)
    verdict = (
        f"**Claim 4 ({CLAIM4.claim}): {head}.** The cutoff is the highest sparsity up to "
        f"which re-fit stays within {-100 * CLAIM4_MARGIN:g} points of masked fine-tuning on "
        "validation (paired CI); at it, refit - finetune test accuracy is "
        f"{diff_text(d)} points ({d.n} seeds; {_rule(CLAIM4)}). Re-fit against no re-fit, "
        "per sparsity, is in the second table.")
    return StudyResult(text, verdict, verdicts, {"cutoff": cutoff}, (finding,))


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


def _rule(c: Criterion) -> str:
    return f"criterion: {c.rule()}"
