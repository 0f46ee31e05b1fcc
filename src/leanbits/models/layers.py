"""What leanbits calls a *weight layer*: a module whose ``.weight`` is pruned, regularized,
quantized and counted - every ``nn.Linear`` and every convolution (``nn.Conv1d/2d/3d`` and
their transposes). This is the one definition; masks, regularizers, structure analysis and
the ``.lbits`` container all ask it.
"""

from __future__ import annotations

from torch import nn

#: module types whose ``.weight`` is a weight (everything else is a non-weight parameter)
WEIGHT_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.modules.conv._ConvNd)


def is_weight_layer(module: nn.Module) -> bool:
    """True when ``module`` is a Linear or convolution layer with a weight tensor."""
    return isinstance(module, WEIGHT_LAYERS) and getattr(module, "weight", None) is not None


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(module name, module)`` of every weight layer of ``model``, in registration order.

    Example:
        >>> from torch import nn
        >>> [n for n, _ in weight_layers(nn.Sequential(nn.Linear(2, 3), nn.ReLU(),
        ...                                            nn.Linear(3, 1)))]
        ['0', '2']
    """
    return [(n, m) for n, m in model.named_modules() if is_weight_layer(m)]
