"""The studies shipped with leanbits: experiment files in ``leanbits/sweep/studies/`` that
``leanbits study NAME`` runs. Nothing heavy is imported here, so that the command line can
list them in its help at once."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from leanbits.errors import ConfigError


def study_names() -> list[str]:
    """Names of the studies shipped with leanbits (``leanbits study NAME``)."""
    root = resources.files("leanbits.sweep") / "studies"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def study_path(name: str) -> Path:
    """Path of a shipped study's experiment file.

    Raises:
        ConfigError: unknown study (the message lists the valid ones).
    """
    names = study_names()
    if name not in names:
        raise ConfigError(f"unknown study {name!r}; valid: {', '.join(names)}")
    return Path(str(resources.files("leanbits.sweep") / "studies" / f"{name}.toml"))
