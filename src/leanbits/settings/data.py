"""The ``[data]`` settings: which data set, and how the validation split is carved."""

from __future__ import annotations

from dataclasses import dataclass

from leanbits.config import MAX_SEED, option

#: validation examples carved from the official training set unless said otherwise
VAL_SIZE = 5000
#: the real data sets (fetched and cached; :mod:`leanbits.data.sources`)
DATASETS = ("mnist", "fashion-mnist")
#: tiny generated MNIST-shaped data for tests and smoke runs
#: (:func:`leanbits.data.synthetic_splits`); nothing to fetch
SYNTHETIC = "synthetic"
#: the largest label noise rate: at 0.9 a noisy label of 10 classes is uniform, so no rate
#: beyond it means anything
MAX_LABEL_NOISE = 0.9


@dataclass(frozen=True)
class DataConfig:
    """Which data, and how the validation set is carved from the training set."""

    dataset: str = option("mnist", "data set; synthetic is tiny generated data for tests "
                          "and smoke runs", choices=(*DATASETS, SYNTHETIC))
    val_size: int = option(VAL_SIZE, "validation examples carved from the training set",
                           minimum=1)
    split_seed: int = option(0, "seed of the train/validation split", minimum=0,
                             maximum=MAX_SEED)
    limit_train: int | None = option(None, "use only this many training examples", minimum=1)
    label_noise: float = option(
        0.0, "fraction of training labels replaced by a different class drawn uniformly "
        "(symmetric noise, seeded by split_seed); validation and test labels untouched",
        minimum=0.0, maximum=MAX_LABEL_NOISE)
