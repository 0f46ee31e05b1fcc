"""Models built from width plans (see :mod:`leanbits.models.plan`)."""

from leanbits.models.build import build, feature_size
from leanbits.models.plan import FAMILIES, MAX_WIDTH, PRESETS, Plan, preset

__all__ = ["FAMILIES", "MAX_WIDTH", "PRESETS", "Plan", "build", "feature_size", "preset"]
