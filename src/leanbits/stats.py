"""The statistics of a study's verdicts: spread over seeds, confidence intervals, paired
differences and the three-way verdict of a claim.

A study runs every arm with the same seeds; each seed fixes initialisation, shuffling and
the train/validation split. An arm's result is summarised by its mean, sample standard
deviation and a 95 % confidence interval of the mean (Student t, n - 1 degrees of
freedom). Two arms are compared *paired by seed*: the per-seed differences are summarised
the same way, which removes the seed-to-seed variation both arms share.

A claim's verdict comes from a :class:`Criterion` fixed in code before the study runs: the
metric, the two arms, the claimed direction and a margin. From the CI of the paired
difference (treatment - baseline) in the claimed direction it is *supported* when the
whole CI lies beyond the margin, *not supported* when the whole CI lies short of it, and
*inconclusive* otherwise (also with fewer than two seeds). One metric per criterion: no
OR of metrics.

Pure Python, no torch: every layer may use it.

Example:
    >>> e = estimate([0.9, 1.1, 1.0])
    >>> round(e.mean, 6), round(e.std, 6), round(e.hi - e.mean, 4)
    (1.0, 0.1, 0.2484)
    >>> Criterion("x", "acc", "new", "old", "greater").verdict(e)
    'supported'
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass

#: the confidence level of every interval a study publishes
CONFIDENCE = 0.95
#: the three verdicts
SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"
#: the claimed direction of a difference: treatment greater, or less, than baseline
DIRECTIONS = {"greater": 1.0, "less": -1.0}


def t_cdf_two_sided(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with ``df`` (a positive integer) degrees of freedom.

    Exact finite series in theta = atan(t / sqrt(df)) (Abramowitz & Stegun 26.7.3-4):
    odd ``df`` adds a cos-power series to theta, even ``df`` multiplies one by sin(theta).

    Example:
        >>> round(t_cdf_two_sided(1.0, 1), 6)  # Cauchy: 2 atan(1) / pi
        0.5
    """
    if df < 1 or int(df) != df:
        raise ValueError(f"degrees of freedom must be a positive integer, not {df!r}")
    if t <= 0:
        return 0.0
    if math.isinf(t):
        return 1.0
    theta = math.atan(t / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 1:
        term, total = math.cos(theta), 0.0
        if df > 1:
            total = term
            for k in range(3, df - 1, 2):  # coefficients 2/3, 2*4/(3*5), ...
                term *= c2 * (k - 1) / k
                total += term
        return min(1.0, 2 / math.pi * (theta + s * total))
    term = total = 1.0
    for k in range(2, df - 1, 2):  # coefficients 1/2, 1*3/(2*4), ...
        term *= c2 * (k - 1) / k
        total += term
    return min(1.0, s * total)


def t_critical(df: int, confidence: float = CONFIDENCE) -> float:
    """The two-sided critical value t such that P(|T| <= t) = ``confidence``.

    Found by bisection on :func:`t_cdf_two_sided` to 1e-12 relative.

    Example:
        >>> round(t_critical(4), 4)  # the 97.5 % quantile with 4 degrees of freedom
        2.7764
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), not {confidence!r}")
    lo, hi = 0.0, 1.0
    while t_cdf_two_sided(hi, df) < confidence:
        lo, hi = hi, 2 * hi
    while hi - lo > 1e-12 * hi:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf_two_sided(mid, df) < confidence else (lo, mid)
    return (lo + hi) / 2


@dataclass(frozen=True)
class Estimate:
    """Mean, spread and confidence interval of one quantity over seeds.

    Attributes:
        n: number of values (seeds).
        mean: their mean (NaN when n = 0).
        std: sample standard deviation, n - 1 in the denominator (NaN when n < 2).
        lo, hi: the :data:`CONFIDENCE` interval of the mean, mean -+ t * std / sqrt(n)
            (NaN when n < 2).
    """

    n: int
    mean: float
    std: float
    lo: float
    hi: float

    def format(self, scale: float = 1.0, digits: int = 2, ci: bool = False) -> str:
        """``mean ± std`` (and ``[lo, hi]`` when ``ci``), values times ``scale``.

        Example:
            >>> estimate([0.97, 0.98]).format(100)
            '97.50 ± 0.71'
        """
        if self.n == 0:
            return "-"
        f = f"{{:.{digits}f}}"
        text = f.format(scale * self.mean)
        if self.n > 1:
            text += " ± " + f.format(scale * self.std)
            if ci:
                text += f" [{f.format(scale * self.lo)}, {f.format(scale * self.hi)}]"
        return text


def estimate(values: Iterable[float], confidence: float = CONFIDENCE) -> Estimate:
    """Mean, sample std and the Student-t confidence interval of the mean of ``values``.

    None and NaN values are dropped (a seed that has no measurement does not count).

    Args:
        values: one value per seed.
        confidence: confidence level of the interval.

    Returns:
        The :class:`Estimate`.
    """
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(xs)
    if n == 0:
        return Estimate(0, math.nan, math.nan, math.nan, math.nan)
    mean = math.fsum(xs) / n
    if n == 1:
        return Estimate(1, mean, math.nan, math.nan, math.nan)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_critical(n - 1, confidence) * std / math.sqrt(n)
    return Estimate(n, mean, std, mean - half, mean + half)


def paired(treatment: Mapping[Hashable, float], baseline: Mapping[Hashable, float],
           confidence: float = CONFIDENCE) -> Estimate:
    """The treatment-minus-baseline difference, matched by seed, as an :class:`Estimate`.

    Only seeds both arms measured count (a seed missing on one side drops out).

    Args:
        treatment: ``{seed: value}`` of the arm the claim is about.
        baseline: ``{seed: value}`` of the arm it is compared with.
        confidence: confidence level of the interval.

    Example:
        >>> paired({1: 0.98, 2: 0.97, 3: 0.99}, {1: 0.97, 2: 0.96, 4: 0.5}).format(100)
        '1.00 ± 0.00'
    """
    seeds = [s for s in treatment if s in baseline]
    return estimate((treatment[s] - baseline[s] for s in seeds), confidence)


@dataclass(frozen=True)
class Criterion:
    """How one claim is decided, fixed before its study runs.

    The claim holds when ``treatment - baseline`` of ``metric`` (paired by seed) lies in
    ``direction`` beyond ``margin``: for ``"greater"``, the difference exceeds ``margin``;
    for ``"less"``, it is below ``-margin``. A negative margin states non-inferiority
    (e.g. -0.005: at most half a point worse).

    Attributes:
        claim: what is claimed, in words.
        metric: the one quantity compared (a column of the study's per-seed results).
        treatment: the arm the claim is about.
        baseline: the arm it is compared with.
        direction: ``"greater"`` or ``"less"``.
        margin: the smallest difference that counts, in the metric's units (0: any).
    """

    claim: str
    metric: str
    treatment: str
    baseline: str
    direction: str
    margin: float = 0.0

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction {self.direction!r}; valid: {', '.join(DIRECTIONS)}")

    def verdict(self, diff: Estimate) -> str:
        """:data:`SUPPORTED`, :data:`NOT_SUPPORTED` or :data:`INCONCLUSIVE` from the CI of
        the paired difference ``diff`` (treatment - baseline)."""
        if diff.n < 2 or math.isnan(diff.lo):
            return INCONCLUSIVE
        sign = DIRECTIONS[self.direction]
        lo, hi = sorted((sign * diff.lo, sign * diff.hi))
        if lo > self.margin:
            return SUPPORTED
        if hi < self.margin:
            return NOT_SUPPORTED
        return INCONCLUSIVE

    def rule(self) -> str:
        """The criterion in words, e.g. ``llr - softmax of test_acc: CI above 0``."""
        side = "above" if self.direction == "greater" else "below"
        # + 0.0: a zero margin reads "0", not "-0"
        bound = (self.margin if self.direction == "greater" else -self.margin) + 0.0
        return (f"{self.treatment} - {self.baseline} of {self.metric}, paired by seed: "
                f"{100 * CONFIDENCE:g} % CI {side} {bound:g}")


def all_of(verdicts: Iterable[str]) -> str:
    """A claim that needs every part: supported when all are, not supported when any is
    not, else inconclusive (no part: inconclusive).

    Example:
        >>> all_of([SUPPORTED, INCONCLUSIVE]), all_of([SUPPORTED, NOT_SUPPORTED])
        ('inconclusive', 'not supported')
    """
    vs = list(verdicts)
    if vs and all(v == SUPPORTED for v in vs):
        return SUPPORTED
    return NOT_SUPPORTED if NOT_SUPPORTED in vs else INCONCLUSIVE
