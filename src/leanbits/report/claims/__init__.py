"""The paper's claims: each verdict's criterion, fixed before its study runs
(:mod:`.criteria`), and the tables and verdicts computed from a study's per-seed records,
one module per study (:mod:`.heads`: claims 1 and 2; :mod:`.regularizers`: claim 3;
:mod:`.pruning`: claim 4; :mod:`.bits`: claim 5) on what they share (:mod:`.common`).

Every criterion is a :class:`leanbits.stats.Criterion` constant: one metric, two arms, a
claimed direction and a margin; the verdict is read off the 95 % CI of the arms'
difference paired by seed (:mod:`leanbits.stats`). Every choice a table makes - the fewest
bits at an accuracy level, the cutoff sparsity of claim 4, the most prunable regularizer -
is made on validation accuracy; test accuracy is read for the chosen point only. The study
functions take :class:`leanbits.report.seeds.SeedRecord` lists (a run's, or a committed
``results.csv``) and return a :class:`StudyResult`. Everything is importable from here;
:data:`STUDIES` names each study's function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from leanbits.report.claims.bits import CLAIM5, MEASURED, configurations, fewest_bits, frontier
from leanbits.report.claims.common import (
    Finding,
    StudyResult,
    axis_values,
    compare,
    diff_text,
    est,
    fmt_diff,
    md_table,
    per_seed,
    pts,
    regimes,
    seed_means,
    select,
    with_value,
)
from leanbits.report.claims.criteria import (
    BUDGETED_STUDIES,
    CLAIM1,
    CLAIM1_CONTROLS,
    CLAIM1_OUTPUT,
    CLAIM1_PARTS,
    CLAIM1_REGIME,
    CLAIM2,
    CLAIM3_ARMS,
    CLAIM3_LEVEL_DROP,
    CLAIM3_OVERFIT,
    CLAIM3_PRUNABLE,
    CLAIM4,
    CLAIM4_BUDGET_BASIS,
    CLAIM4_CUTOFF,
    CLAIM4_MARGIN,
    CLAIM4_NONE,
    CRITERIA,
    OVERFIT_METRICS,
    REGIMES,
    criteria_text,
)
from leanbits.report.claims.heads import explosion
from leanbits.report.claims.pruning import baseline_budgets, snapshot
from leanbits.report.claims.regularizers import prune_level, regularization
from leanbits.report.seeds import SeedRecord

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


__all__ = [
    "BUDGETED_STUDIES",
    "CLAIM1",
    "CLAIM1_CONTROLS",
    "CLAIM1_OUTPUT",
    "CLAIM1_PARTS",
    "CLAIM1_REGIME",
    "CLAIM2",
    "CLAIM3_ARMS",
    "CLAIM3_LEVEL_DROP",
    "CLAIM3_OVERFIT",
    "CLAIM3_PRUNABLE",
    "CLAIM4",
    "CLAIM4_BUDGET_BASIS",
    "CLAIM4_CUTOFF",
    "CLAIM4_MARGIN",
    "CLAIM4_NONE",
    "CLAIM5",
    "CRITERIA",
    "MEASURED",
    "OVERFIT_METRICS",
    "REGIMES",
    "STUDIES",
    "Finding",
    "StudyResult",
    "axis_values",
    "baseline_budgets",
    "compare",
    "configurations",
    "criteria_text",
    "diff_text",
    "est",
    "explosion",
    "fewest_bits",
    "fmt_diff",
    "frontier",
    "md_table",
    "per_seed",
    "prune_level",
    "pts",
    "regimes",
    "regularization",
    "seed_means",
    "select",
    "snapshot",
    "with_value",
]
