"""Build an ``nn.Sequential`` from a :class:`Plan`.

Every leanbits model is a flat ``nn.Sequential`` of Conv2d / ReLU / MaxPool2d / Flatten /
Linear modules with stable names (``conv1``, ``pool1``, ``fc1``, ..., ``out``), so state
dict keys are readable (``fc1.weight``) and pruning, compaction and bit counting can walk
the chain in order.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from leanbits.models.plan import FAMILIES, Plan


def build(plan: Plan) -> nn.Sequential:
    """Create the (randomly initialised) network described by ``plan``.

    Args:
        plan: the width plan.

    Returns:
        An ``nn.Sequential`` whose last module, ``out``, is a Linear layer with
        ``plan.out`` outputs; its state dict has exactly :meth:`Plan.state_shapes`.

    Example:
        >>> from leanbits.models import preset
        >>> sum(p.numel() for p in build(preset("lenet-300-100")).parameters())
        266610
    """
    spec = FAMILIES[plan.family]
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    channels, height, width = plan.in_shape
    for i, c_out in enumerate(plan.conv, start=1):
        k, pad = spec["kernel"], spec["padding"]
        layers[f"conv{i}"] = nn.Conv2d(channels, c_out, k, padding=pad)
        height, width = height + 2 * pad - k + 1, width + 2 * pad - k + 1
        # LeNet-5-Caffe has no ReLU between conv and pool; the conv nets do.
        if plan.family == "convnet":
            layers[f"relu_c{i}"] = nn.ReLU()
        if spec["pool_every"] and i % spec["pool_every"] == 0:
            layers[f"pool{i}"] = nn.MaxPool2d(2)
            height, width = height // 2, width // 2
        channels = c_out
    layers["flatten"] = nn.Flatten()
    features = channels * height * width
    for j, n_out in enumerate(plan.fc, start=1):
        layers[f"fc{j}"] = nn.Linear(features, n_out)
        layers[f"relu{j}"] = nn.ReLU()
        features = n_out
    layers["out"] = nn.Linear(features, plan.out)
    return nn.Sequential(layers)


def feature_size(plan: Plan) -> int:
    """Number of features entering the first fully connected layer."""
    return next(shape[1] for kind, shape, _ in plan.layers().values() if kind == "linear")
