"""The paper's claims as criteria, fixed here before any study runs: one
:class:`leanbits.stats.Criterion` constant per verdict (one metric, two arms, a claimed
direction and a margin), each with a docstring saying what it measures and how it is
decided, the data regimes and arms they are decided on, and the budgets' stated basis. The
tables and verdicts built on them are in the other modules of :mod:`leanbits.report.claims`.
"""

from __future__ import annotations

from collections.abc import Mapping

from leanbits.stats import Criterion

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
:func:`leanbits.report.claims.baseline_budgets` reads from the study's settings: the
numbers come from the experiment, the basis from here."""

#: studies whose section states the budgets of their pruning methods
#: (:func:`leanbits.report.claims.baseline_budgets`)
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


def criteria_text(criteria: Mapping[str, Criterion] = CRITERIA) -> str:
    """Every criterion in words, one Markdown list item each."""
    return "\n".join(f"- {name}: {c.claim} - {c.rule()}" for name, c in criteria.items())
