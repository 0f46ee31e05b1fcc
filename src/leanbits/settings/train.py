"""The ``[train]`` settings, and the names they choose from: model presets, output heads,
optimizers (:mod:`leanbits.models`, :mod:`leanbits.heads` and :mod:`leanbits.loop` build
what these names say)."""

from __future__ import annotations

from dataclasses import dataclass

from leanbits.config import MAX_SEED, option

#: architecture presets (:func:`leanbits.models.preset` builds each)
PRESETS = ("lenet-300-100", "mlp", "lenet5", "conv2", "conv4", "conv6")
#: units (or channels) of any one layer, the output layer and the input channels included;
#: the largest preset has 500 and the ceiling leaves room for far bigger honest models and
#: none for a runaway one (the other ceilings are in :mod:`leanbits.models.plan`)
MAX_WIDTH = 1 << 16
#: output heads (:class:`leanbits.heads.Head`); a ``.lbits`` file stores the index
HEADS = ("softmax", "llr", "llr-code")
#: optimizers :func:`leanbits.loop.make_optimizer` builds
OPTIMIZERS = ("sgd", "adam")
#: momentum of every SGD optimizer leanbits builds unless a config says otherwise
SGD_MOMENTUM = 0.9


@dataclass(frozen=True)
class TrainConfig:
    """Model, output head, regularizers and optimizer for ``leanbits train``."""

    model: str = option("lenet-300-100", "architecture preset", choices=PRESETS)
    fc: tuple[int, ...] | None = option(None, "override hidden FC widths, e.g. 300,100",
                                        minimum=1, maximum=MAX_WIDTH)
    conv: tuple[int, ...] | None = option(None, "override conv channels, e.g. 20,50",
                                          minimum=1, maximum=MAX_WIDTH)
    head: str = option("llr", "output head", choices=HEADS)
    llr_target: float | None = option(
        None, "bound A on LLR targets (+-A instead of +-inf); LLR heads only", minimum=1e-6
    )
    label_smoothing: float | None = option(
        None, "softmax head: label smoothing eps of the cross-entropy (target 1 - eps + eps/K "
        "on the class, eps/K elsewhere); softmax only", minimum=1e-6, maximum=0.999)
    code: str | None = option(
        None, "llr-code: JSON file with a K x M 0/1 code matrix (default: binary code)"
    )
    optimizer: str = option("sgd", "optimizer", choices=OPTIMIZERS)
    lr: float = option(0.05, "learning rate", minimum=0.0)
    momentum: float = option(SGD_MOMENTUM, "SGD momentum", minimum=0.0, maximum=1.0)
    schedule: str = option("cosine", "learning-rate schedule", choices=("none", "step", "cosine"))
    step_size: int = option(10, "step schedule: epochs between decays", minimum=1)
    gamma: float = option(0.1, "step schedule: decay factor", minimum=0.0, maximum=1.0)
    batch_size: int = option(128, "minibatch size", minimum=1)
    epochs: int = option(5, "passes over the training set", minimum=0)
    seed: int = option(1, "seed of initialisation and shuffling", minimum=0, maximum=MAX_SEED)
    l2: float = option(0.0, "L2 weight decay coefficient", minimum=0.0)
    l1: float = option(0.0, "L1 coefficient (proximal: gives exact zeros)", minimum=0.0)
    group: float = option(0.0, "group-lasso coefficient (proximal, whole units)", minimum=0.0)
    group_kind: str = option("neurons", "groups for group lasso", choices=("neurons", "out"))
    per_layer: str | None = option(
        None, "per-layer overrides, e.g. 'fc1.l1=1e-4,out.l2=0'"
    )
    rewind_epoch: int = option(1, "save weights after this epoch for rewinding (0 = init)",
                               minimum=0)
    train_eval_size: int = option(
        5000, "training examples evaluated in eval mode each epoch (overfitting gap)", minimum=0
    )
