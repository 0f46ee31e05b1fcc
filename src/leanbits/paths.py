"""Every file name inside a leanbits run or snapshot directory, one function each."""

from __future__ import annotations

from pathlib import Path


def weights(d: Path) -> Path:
    return Path(d) / "weights.safetensors"


def masks(d: Path) -> Path:
    return Path(d) / "masks.safetensors"


def model_json(d: Path) -> Path:
    """Plan + head: everything needed to rebuild the network, no pickles."""
    return Path(d) / "model.json"


def config(d: Path) -> Path:
    return Path(d) / "config.toml"


def metrics(d: Path) -> Path:
    """Final metrics of the stage (JSON object)."""
    return Path(d) / "metrics.json"


def metrics_log(d: Path) -> Path:
    """One JSON object per epoch."""
    return Path(d) / "metrics.jsonl"


def early_weights(d: Path) -> Path:
    """Weights saved early in training, for lottery-ticket rewinding."""
    return Path(d) / "weights_early.safetensors"


def report(d: Path) -> Path:
    return Path(d) / "report.json"


def profile(d: Path) -> Path:
    """A pruning profile: ``{"source", "config", "rows"}`` (see :mod:`leanbits.results`)."""
    return Path(d) / "profile.json"


def lbits(d: Path) -> Path:
    """A packed model (a bits stage's output, or the model a run keeps)."""
    return Path(d) / "model.lbits"
