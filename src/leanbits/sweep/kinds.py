"""Stage kinds as an experiment file sees them: each kind's config dataclass and the
readable label that starts its directory name.

Nothing here imports torch (the config classes come from :mod:`leanbits.settings`), so an
experiment file is read, checked and refused (an unknown key, a bad value, a grid over the
limit) in a fraction of a second; what a stage *does* is :mod:`.stages`' job.
"""

from __future__ import annotations

from typing import Any

from leanbits.errors import ConfigError
from leanbits.settings.bits import BitsConfig
from leanbits.settings.compress import CompressConfig
from leanbits.settings.prune import ProfileConfig, PruneConfig
from leanbits.settings.train import TrainConfig

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

