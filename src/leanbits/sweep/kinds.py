"""Stage kinds as an experiment file sees them: each kind's config dataclass, the readable
label that starts its directory name, the data sets a sweep can use and what of the data
settings names a train stage.

Nothing here imports torch (the config classes come from :mod:`leanbits.settings`), so an
experiment file is read, checked and refused (an unknown key, a bad value, a grid over the
limit) in a fraction of a second; what a stage *does* is :mod:`.stages`' job.
"""

from __future__ import annotations

from typing import Any

from leanbits.errors import ConfigError
from leanbits.settings import data as data_settings
from leanbits.settings.bits import BitsConfig
from leanbits.settings.compress import CompressConfig
from leanbits.settings.data import DataConfig
from leanbits.settings.prune import ProfileConfig, PruneConfig
from leanbits.settings.train import TrainConfig

#: data sets a sweep can use; "synthetic" is tiny generated data for tests and smoke runs
DATASETS = (*data_settings.DATASETS, "synthetic")

_CONFIGS: dict[str, type] = {"train": TrainConfig, "profile": ProfileConfig,
                             "prune": PruneConfig, "bits": BitsConfig,
                             "compress": CompressConfig}


def config_class(kind: str) -> type:
    """The config dataclass of a stage kind.

    Raises:
        ConfigError: not a stage kind.
    """
    try:
        return _CONFIGS[kind]
    except KeyError:
        raise ConfigError(f"unknown stage kind {kind!r}; valid: "
                          + ", ".join(_CONFIGS)) from None


#: fields whose values start a stage directory's name, so the name is readable
_LABEL_FIELDS = {"train": ("model", "head"), "profile": (), "prune": ("method", "sparsity"),
                 "bits": ("quant", "bits", "index"), "compress": ()}


def label(kind: str, cfg: Any) -> str:
    """Readable prefix of a stage directory name, e.g. ``lenet5-llr``."""
    parts = [str(getattr(cfg, f)) for f in _LABEL_FIELDS[kind] if hasattr(cfg, f)]
    return "-".join(parts).replace("/", "_") or kind


def data_hash_parts(data: dict[str, Any]) -> list[Any]:
    """What of the data settings goes into a train stage's hash.

    For a real data set it is the :class:`DataConfig`, so a sweep's train stage has the
    name ``leanbits train`` would give the same run.

    Args:
        data: checked data settings (``dataset`` and the other :class:`DataConfig` fields).

    Returns:
        ``[DataConfig]``, or ``[DataConfig, "synthetic"]`` for the synthetic data set.
    """
    if data["dataset"] == "synthetic":
        values = {k: v for k, v in data.items() if k != "dataset"}
        return [DataConfig(**values), "synthetic"]
    return [DataConfig(**data)]
