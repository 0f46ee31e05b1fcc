"""Models: width plans (:mod:`.plan`), the networks built from them (:mod:`.build`) and the
one definition of a weight layer (:mod:`.layers`)."""

from leanbits.models.build import build, feature_size
from leanbits.models.layers import WEIGHT_LAYERS, is_weight_layer, weight_layers
from leanbits.models.plan import FAMILIES, Plan, preset
from leanbits.settings.train import MAX_WIDTH, PRESETS

__all__ = ["FAMILIES", "MAX_WIDTH", "PRESETS", "WEIGHT_LAYERS", "Plan", "build", "feature_size",
           "is_weight_layer", "preset", "weight_layers"]
