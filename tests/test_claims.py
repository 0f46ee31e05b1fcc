"""Per-seed records and the claims' verdicts: CSV round trip, run reading, choices made on
validation only (shuffling test accuracies moves none), verdicts from paired CIs."""

from __future__ import annotations

import json
import random
import statistics

import pytest

from leanbits.errors import LeanbitsError
from leanbits.report import claims
from leanbits.report.seeds import (
    SeedRecord,
    format_csv,
    history_values,
    parse_csv,
    read_csv,
    record_of_row,
    records_of_run,
    write_csv,
)
from leanbits.results import Row
from leanbits.stats import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED

SEEDS = (1, 2, 3, 4, 5)
TEST_KEYS = ("test_acc", "train_test_acc", "prune_test_acc")


def noise(rng: random.Random) -> float:
    return rng.uniform(-0.001, 0.001)


def snapshot_records(rng: random.Random) -> list[SeedRecord]:
    """refit within ~0.1 pt of finetune up to 0.8, 3 points behind at 0.9; none far behind.
    Test accuracy follows validation with its own noise."""
    out = []
    for seed in SEEDS:
        base = 0.97 + 0.005 * rng.random()  # seeds differ more than the arms do
        for s in (0.5, 0.8, 0.9):
            for method, delta in (("finetune", 0.0), ("refit", -0.001 if s < 0.9 else -0.03),
                                  ("none", -0.05)):
                v = base - s / 100 + delta + noise(rng)
                out.append(SeedRecord(seed, {"method": method, "sparsity": s},
                                      {"val_acc": v, "test_acc": v + noise(rng),
                                       "train_test_acc": base, "backprop_epochs": 1}))
    return out


def frontier_records(rng: random.Random) -> list[SeedRecord]:
    out = []
    for seed in SEEDS:
        for model, size in (("lenet-300-100", 1.0), ("lenet5", 0.5)):
            for level in (0.8, 0.9, 0.95):
                for bits in (2, 4):
                    acc = 0.995 - level / 20 - (0.02 if bits == 2 else 0) + noise(rng)
                    out.append(SeedRecord(seed, {"model": model, "head": "llr",
                                                 "method": "refit", "level": level,
                                                 "bits": bits},
                                          {"val_acc": acc, "test_acc": acc + noise(rng),
                                           "train_val_acc": 0.99,
                                           "total_bits": round(size * (1 - level) * bits * 1e6
                                                               + rng.randint(0, 100))}))
    return out


def regularization_records(rng: random.Random) -> list[SeedRecord]:
    """none / l2 / group in every regime: the regularized arms are better trained models
    and keep more accuracy when pruned; the baseline starts losing > 1 point at 0.95."""
    out = []
    for seed in SEEDS:
        for regime in claims.REGIMES:
            for reg, gain, keeps in (("none", 0, 0.80), ("l2", 0.004, 0.95),
                                     ("group", 0.003, 0.99)):
                dense = 0.978 + gain + noise(rng)
                net = {"train_val_acc": dense + noise(rng), "train_test_acc": dense,
                       "train_test_nll": 0.1 - gain + noise(rng) / 10,
                       "train_test_ece": 0.02 - gain + noise(rng) / 10, "gap_acc": 0.02}
                for level in ("dense", 0.8, 0.95):
                    pruned = None if level == "dense" else dense - (1 - keeps) * level / 10
                    vals = dict(net)
                    if pruned is not None:
                        vals |= {"prune_val_acc": pruned + noise(rng),
                                 "prune_test_acc": pruned}
                    out.append(SeedRecord(seed, {"regime": regime, "regularizer": reg,
                                                 "level": level}, vals))
    return out


def shuffle_test(records: list[SeedRecord], rng: random.Random) -> list[SeedRecord]:
    """The records with every test accuracy permuted: each distinct value of a test column
    is replaced by another one of that column (so a trained model's test accuracy, repeated
    on each of its points, stays one value)."""
    out = list(records)
    for key in TEST_KEYS:
        old = sorted({r.values[key] for r in out if key in r.values})
        new = list(old)
        rng.shuffle(new)
        to = dict(zip(old, new, strict=True))
        out = [SeedRecord(r.seed, r.axes, {**r.values, key: to[r.values[key]]})
               if key in r.values else r for r in out]
    return out


@pytest.mark.parametrize("make, study", [
    (snapshot_records, lambda rs: claims.snapshot(rs)),
    (frontier_records, lambda rs: claims.frontier(rs, [0.9, 0.94, 0.95, 0.96])),
    (regularization_records, lambda rs: claims.regularization(rs)),
])
@pytest.mark.parametrize("seed", range(5))
def test_shuffling_test_accuracies_changes_no_choice(make, study, seed):
    """Issue 12: cutoffs, fewest-bits choices and the most prunable arm are chosen on
    validation, so permuting the test accuracies leaves every one of them where it was."""
    rng = random.Random(seed)
    records = make(rng)
    before = study(records).choices
    assert before and any(v is not None for v in before.values())
    shuffled = shuffle_test(records, rng)
    assert shuffled != records
    assert study(shuffled).choices == before


def test_claim4_cutoff_is_chosen_on_validation_and_decided_on_test():
    r = claims.snapshot(snapshot_records(random.Random(0)))
    assert r.choices == {"cutoff": 0.8}
    assert r.verdicts == {"claim 4": SUPPORTED}
    assert "supported up to sparsity 0.8" in r.verdict


def test_claim4_not_supported_when_refit_is_clearly_worse_at_every_level():
    rs = [SeedRecord(r.seed, r.axes, {**r.values, "val_acc": r.values["val_acc"] - (
        0.05 if r.axes["method"] == "refit" else 0)}) for r in snapshot_records(
        random.Random(1))]
    rs = [SeedRecord(r.seed, r.axes, {**r.values, "test_acc": r.values["val_acc"]})
          for r in rs]
    out = claims.snapshot(rs)
    assert out.choices == {"cutoff": None}
    assert out.verdicts["claim 4"] == NOT_SUPPORTED


def test_frontier_choice_is_the_fewest_mean_bits_reaching_the_validation_level():
    r = claims.frontier(frontier_records(random.Random(0)), [0.94])
    # acc = 0.995 - level/20 - (0.02 at 2 bits): level 0.95 reaches 0.9475 at 4 bits
    # (0.9275 at 2 bits), so the fewest bits >= 0.94 are level 0.95, 4 bits
    assert r.choices[("lenet5", "llr", 0.94)] == (
        ("bits", 4), ("head", "llr"), ("level", 0.95), ("method", "refit"),
        ("model", "lenet5"))
    assert r.choices[("overall", 0.94)].startswith("lenet5/llr")


def test_regularization_verdicts_per_named_arm():
    r = claims.regularization(regularization_records(random.Random(0)))
    for name in claims.OVERFIT_METRICS:
        assert r.verdicts[f"claim 3, less overfitting, {name}"] == SUPPORTED
    assert r.verdicts["claim 3, more prunable"] == SUPPORTED
    # none loses (1 - 0.8) * 0.8 / 10 = 1.6 points at 0.8 already: the lowest level hurting
    assert r.choices == {f"level, {g}": 0.8 for g in claims.REGIMES}


def test_per_seed_refuses_an_ambiguous_selection():
    rs = [SeedRecord(1, {"bits": 2}, {"test_acc": 0.9}),
          SeedRecord(1, {"bits": 4}, {"test_acc": 0.95})]
    with pytest.raises(ValueError, match="two values"):
        claims.per_seed(rs, "test_acc")
    assert claims.per_seed(rs[:1] * 2, "test_acc") == {1: 0.9}


def test_too_few_seeds_is_inconclusive():
    rs = [r for r in snapshot_records(random.Random(0)) if r.seed == 1]
    assert claims.snapshot(rs).verdicts == {"claim 4": INCONCLUSIVE}


def test_claim4_table_shows_method_seconds_of_the_rows_over_seeds():
    """The claim-4 table reads each row's method-only wall time (Row.method_seconds): per
    seed the mean over its sparsities, then mean ± std over seeds; the whole stage's
    seconds stay apart, under their own label."""
    rows = []
    for seed, base in ((1, 1.0), (2, 2.0), (3, 3.0)):
        for method, factor in (("refit", 1.0), ("finetune", 4.0)):
            for s, extra in ((0.5, -0.5), (0.9, 0.5)):
                rows.append(Row(point=len(rows), axes={"seed": seed, "method": method,
                                                       "sparsity": s},
                                settings={"train": {"seed": seed}}, val_acc=0.97,
                                test_acc=0.97, method_seconds=factor * base + extra,
                                metrics={"prune": {"backprop_epochs": 2}}))
    records = [record_of_row(r, prune_seconds=100.0 + r.point) for r in rows]
    table = claims.snapshot(records).text.split("\n\n")[0].splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
             for line in table[2:]}
    seconds = header.index("method seconds")
    # refit: seeds 1, 2, 3 (their two sparsities average to base): 2.00 ± 1.00
    assert cells["refit"][seconds] == "2.00 ± 1.00"
    assert cells["finetune"][seconds] == "8.00 ± 4.00"
    stage = header.index("whole-stage seconds")
    assert stage != seconds and float(cells["refit"][stage].split(" ± ")[0]) > 100
    assert "stage seconds" not in header


# ----------------------------------------------------------------------------- CSV
def test_csv_round_trip_is_exact(tmp_path):
    records = snapshot_records(random.Random(3)) + [
        SeedRecord(7, {"method": "none", "level": "dense"}, {"total_bits": 123})]
    text = format_csv(records)
    assert text.splitlines()[0].startswith("seed,axis.method,axis.sparsity,axis.level,")
    assert parse_csv(text) == records
    write_csv(tmp_path / "results.csv", records)
    assert read_csv(tmp_path / "results.csv") == records


@pytest.mark.parametrize("text, words", [
    ("", "first column"),
    ("head,seed\n", "first column"),
    ("seed,test_acc\n1,0.9,3\n", "3 cells, the header has 2"),
    ("seed,test_acc\nx,0.9\n", "not an integer"),
    ("seed,test_acc\n1,high\n", "not a number"),
])
def test_bad_csv_says_where(text, words):
    with pytest.raises(LeanbitsError, match=words):
        parse_csv(text)


def test_missing_csv_says_how_to_make_it(tmp_path):
    with pytest.raises(LeanbitsError, match="--write"):
        read_csv(tmp_path / "results.csv")


def epoch(n, l2s, acc=0.99):
    return {"epoch": n, "layers": {f"fc{i}": {"l2_norm": v, "max_abs": v / 10}
                                   for i, v in enumerate(l2s)},
            "mean_abs_output": 2.0 * n, "gap_acc": 0.01, "val_loss": 0.1,
            "train_eval_loss": 0.02, "val_acc": acc}


def test_history_values_by_hand():
    h = history_values([epoch(n, [3.0 * n, 4.0 * n]) for n in range(1, 8)])
    # epoch 5: layers 15 and 20 -> all-layer norm 25, output layer 20; epoch 7: 35 and 28
    assert h["l2_ref"] == pytest.approx(25.0) and h["l2_end"] == pytest.approx(35.0)
    assert h["last_l2_ref"] == 20.0 and h["last_l2_end"] == 28.0
    assert h["growth"] == pytest.approx(1.4) and h["last_growth"] == pytest.approx(1.4)
    assert h["max_abs_end"] == pytest.approx(2.8)
    assert h["loss_gap"] == pytest.approx(0.08) and h["epochs"] == 7
    short = history_values([epoch(1, [1.0, 1.0]), epoch(2, [2.0, 2.0])])
    assert short["growth"] == 1.0  # shorter than epoch 5: the last epoch is the reference
    assert history_values([]) == {}


def test_records_of_run_reads_rows_histories_and_seconds(tmp_path):
    run = tmp_path / "run"
    rows = []
    for seed in (1, 2):
        t, p = f"train/t{seed}", f"prune/p{seed}"
        for stage in (t, p):
            (run / "stages" / stage).mkdir(parents=True)
        (run / "stages" / t / "metrics.jsonl").write_text(
            "\n".join(json.dumps(epoch(n, [1.0 * n * seed, 2.0])) for n in range(1, 6)))
        (run / "stages" / p / "stage.json").write_text(json.dumps({"seconds": 3.5}))
        rows.append(Row(point=len(rows), axes={"seed": seed, "method": "refit"},
                        stages={"train": t, "prune": p},
                        settings={"train": {"seed": seed}}, val_acc=0.9, test_acc=0.8,
                        metrics={"train": {"test_acc": 0.85},
                                 "prune": {"test_acc": 0.8, "backprop_epochs": 2}}))
    (run / "results.json").write_text(json.dumps({"rows": [r.to_dict() for r in rows]}))
    recs = records_of_run(run)
    assert [r.seed for r in recs] == [1, 2]
    assert recs[1].axes == {"method": "refit"}
    assert recs[1].values["train_test_acc"] == 0.85
    assert recs[1].values["backprop_epochs"] == 2 and recs[1].values["prune_seconds"] == 3.5
    assert recs[1].values["l2_end"] == pytest.approx((100 + 4) ** 0.5)
    assert parse_csv(format_csv(recs)) == recs
    with pytest.raises(LeanbitsError, match="not finished"):
        records_of_run(tmp_path)


# ----------------------------------------------------------------------------- criteria
#: per-seed differences (in the claimed direction) of the three outcomes
OUTCOMES = {SUPPORTED: [0.50, 0.60, 0.55, 0.45, 0.52],
            NOT_SUPPORTED: [-0.50, -0.60, -0.55, -0.45, -0.52],
            INCONCLUSIVE: [0.50, -0.50, 0.40, -0.40, 0.05]}


def paired_arms(c, diffs, scale=0.01, base=0.5):
    """{seed: value} of c's treatment and baseline whose differences are ``diffs`` (times
    ``scale``) in c's claimed direction, the baseline varying from seed to seed."""
    sign = 1 if c.direction == "greater" else -1
    baseline = {s: base + 0.1 * s for s in SEEDS}
    treatment = {s: baseline[s] + sign * (scale * d - c.margin * (0 if d else 1))
                 for s, d in zip(SEEDS, diffs, strict=True)}
    return treatment, baseline


@pytest.mark.parametrize("outcome", list(OUTCOMES))
@pytest.mark.parametrize("name", [n for n, c in claims.CRITERIA.items() if c.margin == 0])
def test_every_criterion_gives_each_outcome_on_synthetic_paired_data(name, outcome):
    from leanbits.stats import paired
    c = claims.CRITERIA[name]
    t, b = paired_arms(c, OUTCOMES[outcome])
    assert c.verdict(paired(t, b)) == outcome


def explosion_records(outcome1: str, outcome2: str) -> list[SeedRecord]:
    """The four heads in every regime: softmax - llr growth differences (claim 1) and
    llr - softmax improvements of accuracy, NLL and ECE (claim 2) set by the outcomes."""
    out = []
    for i, seed in enumerate(SEEDS):
        d1 = OUTCOMES[outcome1][i] / 10
        d2 = OUTCOMES[outcome2][i] / 100
        for regime in claims.REGIMES:
            for head in ("softmax", "llr", "llr-bounded", "softmax-ls"):
                llr = head.startswith("llr")
                base = 1.2 + 0.05 * seed  # seeds differ more than the arms do
                vals = {"late_last_growth": base + (0 if llr else d1),
                        "late_output_growth": base + 0.1 + (0 if llr else d1),
                        "zero_error_epoch": 20, "late_epoch": 50, "last_l2_end": 9.0,
                        "mean_abs_output": 7.0,
                        "train_test_acc": 0.97 + 0.002 * seed + (d2 if llr else 0),
                        "train_test_nll": 0.1 + 0.01 * seed - (d2 if llr else 0),
                        "train_test_ece": 0.02 + 0.001 * seed - (d2 / 10 if llr else 0)}
                out.append(SeedRecord(seed, {"regime": regime, "head": head, "bits": 4},
                                      {**vals, "test_acc": vals["train_test_acc"] - 0.01}))
    return out


@pytest.mark.parametrize("outcome", list(OUTCOMES))
def test_explosion_verdicts_follow_the_paired_differences(outcome):
    r = claims.explosion(explosion_records(outcome, outcome))
    assert r.verdicts["claim 1, output-layer weights"] == outcome
    assert r.verdicts["claim 1, output magnitude"] == outcome
    assert r.verdicts["claim 1"] == outcome
    for name in claims.OVERFIT_METRICS:
        for regime in claims.REGIMES:
            assert r.verdicts[f"claim 2, {name}, {regime}"] == outcome
        assert r.verdicts[f"claim 2, {name}"] == outcome
    assert f"**Claim 1 ({claims.CLAIM1.claim}): {outcome}**" in r.verdict


def test_claim1_table_shows_the_growth_ratios_of_the_records():
    """The claim-1 table prints each head's growth as the records hold it (a scale given
    where digits were meant once printed every growth three times too large)."""
    rs = explosion_records(SUPPORTED, SUPPORTED)
    table = claims.explosion(rs).text.split("Claim 2")[0]
    for head in ("softmax", "llr"):
        row = next(line for line in table.splitlines() if line.startswith(f"| {head} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        full = [x for x in rs if x.axes["regime"] == "full" and x.axes["head"] == head]
        for col, key in ((4, "late_last_growth"), (6, "late_output_growth")):
            mean = statistics.mean(x.values[key] for x in full)
            assert float(cells[col].split(" ± ")[0]) == pytest.approx(mean, abs=5e-4)


def test_claim1_needs_both_parts_and_claim2_every_regime():
    rs = explosion_records(SUPPORTED, SUPPORTED)
    # outputs grow alike with both heads; llr loses its edge in one regime
    rs = [SeedRecord(x.seed, x.axes, {**x.values, "late_output_growth": 1.3 + 0.05 * x.seed
                                      + (0.01 if x.seed % 2 else -0.01)}
                     if x.axes["head"] == "softmax" else {**x.values, "late_output_growth":
                                                         1.3 + 0.05 * x.seed})
          for x in rs]
    rs = [SeedRecord(x.seed, x.axes, {**x.values, "train_test_acc": 0.97 + 0.002 * x.seed})
          if x.axes["regime"] == "1k" else x for x in rs]
    r = claims.explosion(rs)
    assert r.verdicts["claim 1, output-layer weights"] == SUPPORTED
    assert r.verdicts["claim 1, output magnitude"] == INCONCLUSIVE
    assert r.verdicts["claim 1"] == INCONCLUSIVE
    assert r.verdicts["claim 2, test accuracy, 1k"] == INCONCLUSIVE
    assert r.verdicts["claim 2, test accuracy, full"] == SUPPORTED
    assert r.verdicts["claim 2, test accuracy"] == INCONCLUSIVE
    assert r.verdicts["claim 2, test NLL"] == SUPPORTED


@pytest.mark.parametrize("outcome", list(OUTCOMES))
def test_regularization_verdicts_follow_the_paired_differences(outcome):
    out = []
    for i, seed in enumerate(SEEDS):
        d = OUTCOMES[outcome][i] / 100
        for regime in claims.REGIMES:
            for reg in ("none", "l2", "group"):
                gain = 0 if reg == "none" else d
                dense = 0.97 + 0.003 * seed
                for level in ("dense", 0.9, 0.95):
                    vals = {"train_val_acc": dense, "train_test_acc": dense + gain,
                            "train_test_nll": 0.1 - gain, "train_test_ece": 0.03 - gain / 10}
                    if level != "dense":
                        # the baseline loses 2 points at 0.9 on validation: level 0.9
                        vals |= {"prune_val_acc": dense - 0.02 - (level - 0.9),
                                 "prune_test_acc": dense - 0.03 + gain}
                    out.append(SeedRecord(seed, {"regime": regime, "regularizer": reg,
                                                 "level": level}, vals))
    r = claims.regularization(out)
    assert r.choices["level, full"] == 0.9
    for name in claims.OVERFIT_METRICS:
        assert r.verdicts[f"claim 3, less overfitting, {name}"] == outcome
    assert r.verdicts["claim 3, more prunable"] == outcome
    assert r.verdicts["claim 3, more prunable, group, noise20"] == outcome


def test_prune_level_reads_the_baseline_on_validation_only():
    rs = regularization_records(random.Random(1))
    full = claims.select(rs, regime="full")
    assert claims.prune_level(full) == 0.8
    # the regularized arms collapsing on validation does not move the level
    worse = [SeedRecord(x.seed, x.axes, {**x.values, "prune_val_acc": 0.1})
             if x.axes["regularizer"] != "none" and "prune_val_acc" in x.values else x
             for x in full]
    assert claims.prune_level(worse) == 0.8
    # a baseline that never loses more than the margin: the highest level
    flat = [SeedRecord(x.seed, x.axes, {**x.values, "prune_val_acc": x.values["train_val_acc"]})
            if "prune_val_acc" in x.values else x for x in full]
    assert claims.prune_level(flat) == 0.95


def test_history_values_late_growth_after_zero_training_error():
    hist = []
    for n in range(1, 11):
        e = epoch(n, [1.0, 2.0 + n])
        e["train_eval_acc"] = 1.0 if n >= 4 else 0.99
        e["mean_abs_output"] = float(n)
        hist.append(e)
    h = history_values(hist)
    # window: epoch 5 (ceil(10 / 2)) to 10; output layer 7 -> 12, |output| 5 -> 10
    assert h["zero_error_epoch"] == 4 and h["late_epoch"] == 5
    assert h["late_last_growth"] == pytest.approx(12 / 7)
    assert h["late_output_growth"] == pytest.approx(2.0)
    # training error reaching zero only after the window starts: no growth measured
    for e in hist:
        e["train_eval_acc"] = 1.0 if e["epoch"] >= 6 else 0.99
    h = history_values(hist)
    assert h["zero_error_epoch"] == 6 and "late_last_growth" not in h
    for e in hist:
        e["train_eval_acc"] = 0.99
    assert "zero_error_epoch" not in history_values(hist)

