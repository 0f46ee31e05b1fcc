"""Data: IDX files (:mod:`.idx`), the known datasets (:mod:`.registry`), the cache
(:mod:`.sources`) and what fills it - mirrors, offline packages (:mod:`.providers`) - and
the train/validation/test splits every command loads through :func:`load_data`
(:mod:`.datasets`).
"""

from leanbits.data.datasets import (
    DATASETS,
    VAL_SIZE,
    DataConfig,
    Split,
    Splits,
    load_data,
    load_splits,
    snapshot_data,
    symmetric_label_noise,
    synthetic_splits,
)

__all__ = ["DATASETS", "VAL_SIZE", "DataConfig", "Split", "Splits", "load_data", "load_splits",
           "snapshot_data", "symmetric_label_noise", "synthetic_splits"]
