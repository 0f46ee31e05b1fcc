"""The ``[prune]`` and ``[profile]`` settings, and the names they choose from: pruning
methods, scopes, criteria, granularities (:mod:`leanbits.prune` implements them)."""

from __future__ import annotations

from dataclasses import dataclass

from leanbits.config import MAX_SEED, make, option, to_dict
from leanbits.errors import PruneError

#: the methods of :mod:`leanbits.prune.baselines` (``prune_none``, ``prune_refit``, ...)
BASELINES = ("none", "refit", "finetune", "iterative", "rewind")
#: every method's name, in the order the CLI lists them; :mod:`leanbits.prune.methods` maps
#: each name to its function (the baselines, then :mod:`leanbits.prune.gradual`,
#: :mod:`leanbits.prune.variational` and :mod:`leanbits.prune.structured`)
METHODS = (*BASELINES, "gradual", "sparse-vd", "structured")
#: rank weights across all layers, or within each layer
SCOPES = ("global", "layer")
#: what decides which weights go (:mod:`leanbits.prune.magnitude`)
CRITERIA = ("sparsity", "threshold", "std")
#: prune single weights or whole units
GRANULARITIES = ("weight", "unit")


@dataclass(frozen=True)
class PruneConfig:
    """Settings of ``leanbits prune`` / ``leanbits profile``: scoring, method, training."""

    method: str = option("refit", "what to do after pruning", choices=METHODS)
    sparsity: float = option(0.9, "fraction of prunable weights removed, in [0, 1)",
                             minimum=0.0, maximum=0.999999)
    scope: str = option("global", "rank weights across all layers or per layer",
                        choices=SCOPES)
    criterion: str = option("sparsity", "what decides which weights go", choices=CRITERIA)
    threshold: float = option(0.0, "criterion=threshold: remove weights with |w| below this",
                              minimum=0.0)
    std_q: float = option(1.0, "criterion=std: remove |w| < q x std of the layer's weights",
                          minimum=0.0)
    granularity: str = option("weight", "prune single weights or whole units (by norm)",
                              choices=GRANULARITIES)
    exclude: tuple[str, ...] = option((), "layers never pruned, e.g. out")
    # Off by default: on MNIST LeNet-300-100 snapshots (softmax and llr heads) it lowered
    # accuracy at 95-98% sparsity although it preserves every mean pre-activation.
    bias_compensation: bool = option(
        False, "methods none/refit: move removed weights' mean contribution into the biases"
    )
    refit_epochs: int = option(2, "method refit: epochs of non-weight re-fit", minimum=0)
    refit_lr: float = option(1e-3, "method refit: Adam learning rate", minimum=0.0)
    finetune_epochs: int = option(2, "method finetune: epochs of masked retraining",
                                  minimum=0)
    finetune_lr: float = option(5e-4, "method finetune: learning rate", minimum=0.0)
    optimizer: str = option("adam", "methods finetune/iterative: optimizer",
                            choices=("adam", "sgd"))
    # Han et al. 2015 prune and retrain over several rounds; 5 x 3 epochs is the default
    # budget (15 backprop epochs), stated in every record.
    rounds: int = option(5, "method iterative: prune-retrain rounds", minimum=1)
    round_epochs: int = option(3, "method iterative: retraining epochs per round", minimum=0)
    iterative_lr: float = option(5e-4, "method iterative: learning rate", minimum=0.0)
    rewind_lr: float | None = option(
        None, "method rewind: peak learning rate of the resumed schedule (default: the "
        "snapshot's own training rate)", minimum=0.0)
    lr_grid: tuple[float, ...] = option(
        (), "factors of the method's learning rate to try, keeping the run with the best "
        "validation accuracy (e.g. 0.3,1,3; empty: the rate as given)", minimum=1e-6)
    gradual_epochs: int = option(10, "method gradual: epochs of training while the sparsity "
                                 "rises on the cubic schedule", minimum=0)
    gradual_initial: float = option(0.0, "method gradual: sparsity s_i of the first pruning "
                                    "step", minimum=0.0, maximum=0.999999)
    gradual_begin: float = option(0.0, "method gradual: first pruning step, as a fraction of "
                                  "the run's steps", minimum=0.0, maximum=1.0)
    gradual_end: float = option(0.5, "method gradual: last pruning step (reaches --sparsity),"
                                " as a fraction of the run's steps", minimum=0.0, maximum=1.0)
    gradual_frequency: int = option(100, "method gradual: optimizer steps between pruning "
                                    "steps", minimum=1)
    gradual_lr: float = option(1e-3, "method gradual: learning rate (cosine-decayed to 0)",
                               minimum=0.0)
    gradual_reinit: bool = option(False, "method gradual: re-initialise the weights and train "
                                  "from scratch instead of fine-tuning the snapshot")
    vd_epochs: int = option(10, "method sparse-vd: epochs of variational training",
                            minimum=0)
    vd_lr: float = option(1e-3, "method sparse-vd: Adam learning rate (decayed linearly to 0)",
                          minimum=0.0)
    vd_threshold: float = option(3.0, "method sparse-vd: prune weights whose log alpha is at "
                                 "least this")
    vd_clip: float = option(8.0, "method sparse-vd: log alpha is clipped to [-clip, clip]",
                            minimum=1e-6)
    vd_init_log_sigma2: float = option(-10.0, "method sparse-vd: initial log sigma^2 of every "
                                       "weight")
    vd_warmup_epochs: float = option(0.0, "method sparse-vd: epochs over which the KL weight "
                                     "rises from 0 to 1", minimum=0.0)
    vd_finetune_epochs: int = option(0, "method sparse-vd: epochs of masked fine-tuning after "
                                     "thresholding (finetune_lr)", minimum=0)
    structured_retrain: str = option(
        "finetune", "method structured: after removing units, re-fit the non-weights "
        "(refit_epochs) or fine-tune the kept weights (finetune_epochs)",
        choices=("refit", "finetune"))
    remove_dead: bool = option(True, "methods gradual/sparse-vd/structured: also drop weights "
                               "into or out of dead units (exact; constants go into biases)")
    batch_size: int = option(128, "minibatch size of all training", minimum=1)
    seed: int = option(0, "seed of shuffling (results are deterministic on CPU)", minimum=0,
                       maximum=MAX_SEED)
    compensation_examples: int = option(
        10000, "training examples used to measure mean activations", minimum=1
    )
    dead_on_data: bool = option(
        False, "also remove units whose output is zero on all sampled training examples "
        "(exact on those examples only)"
    )
    limit_train: int | None = option(None, "use only this many training examples", minimum=1)
    target_accuracy: float | None = option(
        None, "search: sparsest level whose validation accuracy is at least this",
        minimum=0.0, maximum=1.0,
    )
    max_drop: float | None = option(
        None, "search: sparsest level losing at most this validation accuracy vs dense",
        minimum=0.0, maximum=1.0,
    )
    search_lo: float = option(0.0, "search: lowest sparsity tried", minimum=0.0,
                              maximum=0.999999)
    search_hi: float = option(0.999, "search: highest sparsity tried", minimum=0.0,
                              maximum=0.999999)
    search_tol: float = option(0.005, "search: stop when the bracket is this narrow",
                               minimum=1e-6)


@dataclass(frozen=True)
class ProfileConfig(PruneConfig):
    """A pruning profile: the snapshot pruned once per method and level, every other
    :class:`PruneConfig` setting shared. ``method``, ``sparsity`` and the search fields
    are set per run by the profile, so they must stay at their defaults here."""

    methods: tuple[str, ...] = option(("none", "refit"), "pruning methods profiled",
                                      choices=METHODS)
    sparsities: tuple[float, ...] = option((0.5, 0.8, 0.9, 0.95, 0.98),
                                           "sparsity levels profiled, each in [0, 1)",
                                           minimum=0.0, maximum=0.999999)

    def prune_config(self) -> PruneConfig:
        """The shared settings as a :class:`PruneConfig`.

        Raises:
            PruneError: a per-run field (method, sparsity, search) is set.
        """
        values = to_dict(self)
        default = to_dict(ProfileConfig())
        fixed = [k for k in PROFILE_SET_FIELDS if values[k] != default[k]]
        if fixed:
            raise PruneError(f"a profile sets {', '.join(fixed)} per run; give methods and "
                             "sparsities instead")
        if not self.methods or not self.sparsities:
            raise PruneError("profile needs at least one method and one sparsity")
        return make(PruneConfig, {k: v for k, v in values.items()
                                  if k not in ("methods", "sparsities")})


#: PruneConfig fields a profile sets itself (per run) or does not use
PROFILE_SET_FIELDS = ("method", "sparsity", "target_accuracy", "max_drop", "search_lo",
                      "search_hi", "search_tol")
