"""The statistics of verdicts: t quantiles, mean +- std and CI, pairing by seed, verdicts."""

from __future__ import annotations

import math

import pytest

from leanbits import stats
from leanbits.stats import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, Criterion

# Two-sided 95 % critical values of Student's t (the 97.5 % quantile), as printed in
# standard t tables to 6 digits.
T_975 = {1: 12.706205, 2: 4.302653, 3: 3.182446, 4: 2.776445, 5: 2.570582, 9: 2.262157,
         29: 2.045230, 100: 1.983972}


@pytest.mark.parametrize("df, t", sorted(T_975.items()))
def test_t_critical_matches_the_table(df, t):
    assert stats.t_critical(df) == pytest.approx(t, abs=2e-6)


def test_t_critical_matches_scipy_where_installed():
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 4, 6, 7, 10, 31, 200):
        for conf in (0.8, 0.9, 0.95, 0.99):
            assert stats.t_critical(df, conf) == pytest.approx(
                scipy_stats.t.ppf(0.5 + conf / 2, df), rel=1e-9)


def test_t_cdf_closed_forms():
    # df = 1 is Cauchy: P(|T| <= t) = 2 atan(t) / pi; df = 2: t / sqrt(2 + t^2)
    for t in (0.1, 1.0, 3.0, 50.0):
        assert stats.t_cdf_two_sided(t, 1) == pytest.approx(2 * math.atan(t) / math.pi)
        assert stats.t_cdf_two_sided(t, 2) == pytest.approx(t / math.sqrt(2 + t * t))
    assert stats.t_cdf_two_sided(0.0, 5) == 0.0
    with pytest.raises(ValueError):
        stats.t_cdf_two_sided(1.0, 0)


def test_estimate_by_hand():
    # values 1, 2, 3, 4, 5: mean 3, sample variance (4+1+0+1+4)/4 = 2.5, std 1.5811388;
    # half width 2.776445 * 1.5811388 / sqrt(5) = 1.9632432
    e = stats.estimate([1, 2, 3, 4, 5])
    assert (e.n, e.mean) == (5, 3.0)
    assert e.std == pytest.approx(1.5811388, abs=1e-7)
    assert (e.lo, e.hi) == pytest.approx((3 - 1.9632432, 3 + 1.9632432), abs=1e-6)
    assert e.format() == "3.00 ± 1.58"
    assert e.format(ci=True) == "3.00 ± 1.58 [1.04, 4.96]"


def test_estimate_drops_missing_values_and_degrades_with_few():
    assert stats.estimate([None, math.nan, 2.0]).n == 1
    one = stats.estimate([2.0])
    assert one.mean == 2.0 and math.isnan(one.std) and math.isnan(one.lo)
    assert one.format() == "2.00"
    assert stats.estimate([]).format() == "-"


def test_paired_matches_by_seed_and_removes_shared_seed_variation():
    # Seeds differ a lot (0.90 .. 0.98) but the treatment is 0.01 better on every one:
    # unpaired the arms overlap, paired the difference is exactly 0.01 with zero spread.
    base = {1: 0.90, 2: 0.98, 3: 0.94}
    treat = {3: 0.95, 1: 0.91, 2: 0.99, 7: 0.1}  # other order; seed 7 has no partner
    d = stats.paired(treat, base)
    assert d.n == 3
    assert d.mean == pytest.approx(0.01) and d.std == pytest.approx(0.0, abs=1e-12)
    assert stats.estimate(base.values()).hi > stats.estimate(
        [treat[s] for s in base]).lo  # unpaired CIs overlap


def test_paired_by_hand():
    # differences 0.02, -0.01, 0.03, 0.00: mean 0.01, variance (1+4+4+1)e-4 / 3, std
    # 0.0182574; half width 3.182446 * 0.0182574 / 2 = 0.0290518
    d = stats.paired({1: 0.92, 2: 0.90, 3: 0.95, 4: 0.91}, {1: 0.90, 2: 0.91, 3: 0.92, 4: 0.91})
    assert d.mean == pytest.approx(0.01)
    assert d.std == pytest.approx(0.0182574, abs=1e-7)
    assert d.hi - d.mean == pytest.approx(0.0290518, abs=1e-6)


def est(lo, hi, n=5):
    return stats.Estimate(n, (lo + hi) / 2, 1.0, lo, hi)


@pytest.mark.parametrize("direction, margin, ci, expected", [
    ("greater", 0.0, (0.001, 0.01), SUPPORTED),
    ("greater", 0.0, (-0.001, 0.01), INCONCLUSIVE),
    ("greater", 0.0, (-0.02, -0.001), NOT_SUPPORTED),
    ("less", 0.0, (-0.02, -0.001), SUPPORTED),
    ("less", 0.0, (0.001, 0.01), NOT_SUPPORTED),
    # non-inferiority: at most half a point worse
    ("greater", -0.005, (-0.004, 0.003), SUPPORTED),
    ("greater", -0.005, (-0.006, 0.003), INCONCLUSIVE),
    ("greater", -0.005, (-0.02, -0.006), NOT_SUPPORTED),
    # a margin: the effect must be larger than 0.01
    ("greater", 0.01, (0.005, 0.02), INCONCLUSIVE),
    ("greater", 0.01, (0.0, 0.009), NOT_SUPPORTED),
])
def test_verdict_from_the_ci_in_the_claimed_direction(direction, margin, ci, expected):
    c = Criterion("c", "test_acc", "a", "b", direction, margin)
    assert c.verdict(est(*ci)) == expected


def test_too_few_seeds_is_inconclusive_whatever_the_mean():
    c = Criterion("c", "test_acc", "a", "b", "greater")
    assert c.verdict(stats.paired({1: 0.99}, {1: 0.5})) == INCONCLUSIVE
    assert c.verdict(stats.paired({1: 0.99, 2: 0.98}, {1: 0.5, 2: 0.5})) == SUPPORTED


def test_criterion_checks_direction_and_says_its_rule():
    with pytest.raises(ValueError, match="direction"):
        Criterion("c", "m", "a", "b", "bigger")
    rule = Criterion("c", "test_acc", "llr", "softmax", "less", 0.002).rule()
    assert rule == "llr - softmax of test_acc, paired by seed: 95 % CI below -0.002"


def test_all_of():
    assert stats.all_of([SUPPORTED, SUPPORTED]) == SUPPORTED
    assert stats.all_of([SUPPORTED, INCONCLUSIVE]) == INCONCLUSIVE
    assert stats.all_of([INCONCLUSIVE, NOT_SUPPORTED]) == NOT_SUPPORTED
    assert stats.all_of([]) == INCONCLUSIVE
