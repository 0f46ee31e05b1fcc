"""Claims 1 and 2 from the explosion study: softmax against llr heads, the output layer's
growth after zero training error (claim 1, with its controls) and overfitting in every data
regime (claim 2).
"""

from __future__ import annotations

from collections.abc import Sequence

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
    CLAIM1,
    CLAIM1_CONTROLS,
    CLAIM1_OUTPUT,
    CLAIM1_PARTS,
    CLAIM1_REGIME,
    CLAIM2,
    OVERFIT_METRICS,
)
from leanbits.report.seeds import SeedRecord
from leanbits.stats import Criterion, all_of


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
                     est(rs, "last_l2_end").format(),
                     est(rs, "late_last_growth").format(digits=3),
                     est(rs, "mean_abs_output").format(),
                     est(rs, "late_output_growth").format(digits=3),
                     pts(est(rs, "train_test_acc"))]
                    + [pts(est(select(records, regime=c1_regime, head=head, bits=b),
                                   "test_acc")) for b in bits])
    text = (f"Claim 1, regime {regime_label(c1_regime)}:\n\n" + md_table(
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
    part_findings = []
    for name, c in CLAIM1_PARTS.items():
        d, v = compare(c, c1, "head")
        verdicts[name] = v
        part = name.split(", ", 1)[1]
        parts.append(f"{part}: {v}, softmax - llr {fmt_diff(d, 1, 3)} ({d.n} seeds)")
        part_findings.append(Finding(
            "claim 1", c.claim, f"{part}, {regime_label(c1_regime)}", v, name,
            f"{c.treatment} - {c.baseline} {fmt_diff(d, 1, 3)} (growth ratio)", d.n))
    verdicts["claim 1"] = all_of(verdicts[n] for n in CLAIM1_PARTS)
    findings = [Finding("claim 1", CLAIM1.claim, "both parts needed", verdicts["claim 1"],
                        "claim 1"), *part_findings]
    controls = []
    for arm in CLAIM1_CONTROLS:
        if arm in heads:
            for c in CLAIM1_PARTS.values():
                d, _v = compare(Criterion("", c.metric, arm, c.treatment, c.direction), c1,
                                "head")
                controls.append(f"{arm} - softmax, {c.metric}: {fmt_diff(d, 1, 3)}")
    # Claim 2: llr against softmax, per regime and measure.
    rows, cmp_rows = [], []
    by: dict[str, list[Finding]] = {name: [] for name in CLAIM2}
    for regime in regs:
        for head in heads:
            rows.append([regime_label(regime), head]
                        + overfit_cells(select(nets, regime=regime, head=head)))
        cells = []
        for name, c in CLAIM2.items():
            d, v = compare(c, nets, "head", regime=regime)
            key = f"claim 2, {name}, {regime_label(regime)}"
            verdicts[key] = v
            _t, scale, digits = SHOW[name]
            cells += [fmt_diff(d, scale, digits), v]
            by[name].append(Finding(
                "claim 2", c.claim, regime_label(regime), v, key,
                f"{c.treatment} - {c.baseline} {fmt_diff(d, scale, digits)} {UNIT[name]}",
                d.n))
        cmp_rows.append([regime_label(regime), *cells])
    for name, c in CLAIM2.items():
        verdicts[f"claim 2, {name}"] = all_of(
            verdicts[f"claim 2, {name}, {regime_label(r)}"] for r in regs)
        findings.append(Finding("claim 2", c.claim, f"{name}, every regime",
                                verdicts[f"claim 2, {name}"], f"claim 2, {name}",
                                by=tuple(by[name])))
    text += "\n\nClaim 2, trained models:\n\n" + md_table(
        ["regime", "head"] + [SHOW[n][0] for n in OVERFIT_METRICS], rows)
    text += "\n\nllr - softmax, paired by seed [95 % CI]:\n\n" + md_table(
        ["regime"] + [h for n in OVERFIT_METRICS
                      for h in (f"{SHOW[n][0]}", "verdict")], cmp_rows)
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
            + ", ".join(f"{regime_label(r)} {verdicts[f'claim 2, {name}, {regime_label(r)}']}"
                        for r in regs) + ")" for name in CLAIM2)
        + ". Criteria: " + "; ".join(c.rule() for c in CLAIM2.values()) + ".")
    return StudyResult(text, verdict, verdicts, findings=tuple(findings))
