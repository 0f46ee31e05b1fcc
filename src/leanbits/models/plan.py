"""Width plans: the small, JSON-able description from which every leanbits model is built.

A plan names an architecture family and lists the widths of its hidden layers. Pruning
shrinks the widths; :func:`leanbits.models.build` rebuilds a physically smaller model from
the shrunken plan, so a compact model never needs pickles to be loaded again.

A plan is checked when it is made, before any tensor exists: every number must be a whole
number within the ceilings below, every feature map must keep at least one pixel, and the
whole model must stay under :data:`MAX_PARAMETERS`. So a forged ``model.json`` or ``.lbits``
header, or a mistyped ``--fc``, is refused in microseconds instead of allocating gigabytes.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from leanbits.errors import ConfigError
from leanbits.settings.train import MAX_WIDTH

#: architecture family -> how its conv stack is laid out
#: kernel: conv kernel size; padding: conv padding; pool_every: a 2x2 max-pool after every
#: ``pool_every`` conv layers.
FAMILIES: dict[str, dict[str, int]] = {
    "mlp": {"kernel": 0, "padding": 0, "pool_every": 0},
    "lenet5": {"kernel": 5, "padding": 0, "pool_every": 1},
    "convnet": {"kernel": 3, "padding": 1, "pool_every": 2},
}

# Ceilings. The largest preset (conv2 on 3x32x32) has 4.3 M parameters and 256 units per
# layer; these leave room for far bigger honest models and none for a runaway one.
# MAX_WIDTH (units or channels of any one layer) is in leanbits.settings.train: the
# train flags --fc / --conv are checked against it before anything is built.
#: height or width of the input, in pixels
MAX_SIDE = 1 << 14
#: conv layers, and separately hidden FC layers
MAX_LAYERS = 64
#: parameters of the whole model (512 MiB as float32)
MAX_PARAMETERS = 1 << 27
#: values in the input or in one layer's output, for one example (64 MiB as float32)
MAX_ACTIVATIONS = 1 << 24


def _check_count(what: str, value: Any, high: int, unit: str) -> int:
    """``value`` as an int in ``[1, high]``, or a ConfigError naming it and the range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(
            f"{what} = {value!r} is not a whole number; {unit} must be from 1 to {high:,}"
        )
    v = int(value)
    if v < 1:
        raise ConfigError(f"{what} = {v} is below 1; {unit} must be from 1 to {high:,}")
    if v > high:
        raise ConfigError(
            f"{what} = {v:,} is above the ceiling of {high:,} {unit}; use 1 to {high:,}"
        )
    return v


def _check_list(what: str, value: Any, high: int, unit: str) -> tuple[int, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ConfigError(
            f"{what} = {value!r} is not a list of {unit}; write it like [300, 100]"
        )
    if len(value) > MAX_LAYERS:
        raise ConfigError(
            f"{what} lists {len(value):,} layers, above the ceiling of {MAX_LAYERS}"
        )
    return tuple(_check_count(f"{what}[{i}]", v, high, unit) for i, v in enumerate(value))


def _check_in_shape(value: Any) -> tuple[int, int, int]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 3:
        raise ConfigError(
            f"plan in_shape = {value!r} is not [channels, height, width] (3 whole numbers, "
            "e.g. [1, 28, 28])"
        )
    c = _check_count("plan in_shape[0] (channels)", value[0], MAX_WIDTH, "input channels")
    h = _check_count("plan in_shape[1] (height)", value[1], MAX_SIDE, "pixels")
    w = _check_count("plan in_shape[2] (width)", value[2], MAX_SIDE, "pixels")
    return c, h, w


@dataclass(frozen=True)
class Plan:
    """Architecture description: family, input shape, conv channels, FC widths, outputs.

    Args:
        family: one of :data:`FAMILIES`.
        in_shape: (channels, height, width) of one input example.
        conv: output channels of each conv layer, in order.
        fc: widths of the hidden fully connected layers, in order.
        out: number of outputs of the last layer (set by the output head).

    Raises:
        ConfigError: a value of the wrong type, out of its range or above a ceiling
            (:data:`MAX_WIDTH`, :data:`MAX_SIDE`, :data:`MAX_LAYERS`, :data:`MAX_PARAMETERS`,
            :data:`MAX_ACTIVATIONS`), or an input too small for the conv stack.
    """

    family: str
    in_shape: tuple[int, int, int]
    conv: tuple[int, ...] = field(default_factory=tuple)
    fc: tuple[int, ...] = field(default_factory=tuple)
    out: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.family, str) or self.family not in FAMILIES:
            raise ConfigError(
                f"unknown model family {self.family!r}; valid: {', '.join(sorted(FAMILIES))}"
            )
        object.__setattr__(self, "in_shape", _check_in_shape(self.in_shape))
        object.__setattr__(self, "conv",
                           _check_list("plan conv", self.conv, MAX_WIDTH, "channels per layer"))
        object.__setattr__(self, "fc",
                           _check_list("plan fc", self.fc, MAX_WIDTH, "units per layer"))
        object.__setattr__(self, "out",
                           _check_count("plan out", self.out, MAX_WIDTH, "outputs"))
        if self.family == "mlp" and self.conv:
            raise ConfigError("an mlp plan has no conv layers")
        self._check_size()

    def _check_size(self) -> None:
        c, h, w = self.in_shape
        if c * h * w > MAX_ACTIVATIONS:
            raise ConfigError(
                f"plan in_shape {c}x{h}x{w} has {c * h * w:,} values per example, above the "
                f"ceiling of {MAX_ACTIVATIONS:,}"
            )
        for name, (_kind, _shape, size) in self.layers().items():
            if size > MAX_ACTIVATIONS:
                raise ConfigError(
                    f"plan layer {name} outputs {size:,} values per example, above the "
                    f"ceiling of {MAX_ACTIVATIONS:,}; use fewer channels or a smaller input"
                )
        total = self.num_parameters()
        if total > MAX_PARAMETERS:
            raise ConfigError(
                f"the plan has {total:,} parameters, above the ceiling of "
                f"{MAX_PARAMETERS:,}; use narrower layers"
            )

    def layers(self) -> dict[str, tuple[str, tuple[int, ...], int]]:
        """Every weighted layer ``build`` makes, in order, without making it.

        Returns:
            name -> ``(kind, weight shape, values it outputs per example)``, kind
            ``"conv"`` or ``"linear"``; each layer also has a bias of ``weight shape[0]``.

        Raises:
            ConfigError: a feature map would shrink below one pixel.

        Example:
            >>> Plan("mlp", (1, 28, 28), (), (300,), 10).layers()["fc1"]
            ('linear', (300, 784), 300)
        """
        spec = FAMILIES[self.family]
        out: dict[str, tuple[str, tuple[int, ...], int]] = {}
        channels, height, width = self.in_shape
        k, pad = spec["kernel"], spec["padding"]
        for i, c_out in enumerate(self.conv, start=1):
            height, width = height + 2 * pad - k + 1, width + 2 * pad - k + 1
            if spec["pool_every"] and i % spec["pool_every"] == 0:
                height, width = height // 2, width // 2
            if height < 1 or width < 1:
                c, h, w = self.in_shape
                raise ConfigError(
                    f"plan in_shape {c}x{h}x{w} is too small for {len(self.conv)} "
                    f"{self.family} conv layers: conv{i} would leave no pixels; use a larger "
                    "input or fewer conv layers"
                )
            out[f"conv{i}"] = ("conv", (c_out, channels, k, k), c_out * height * width)
            channels = c_out
        features = channels * height * width
        for j, n_out in enumerate(self.fc, start=1):
            out[f"fc{j}"] = ("linear", (n_out, features), n_out)
            features = n_out
        out["out"] = ("linear", (self.out, features), self.out)
        return out

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """State-dict key -> shape of the model :func:`leanbits.models.build` makes."""
        shapes: dict[str, tuple[int, ...]] = {}
        for name, (_kind, shape, _size) in self.layers().items():
            shapes[f"{name}.weight"] = shape
            shapes[f"{name}.bias"] = (shape[0],)
        return shapes

    def num_parameters(self) -> int:
        """Parameters of the built model (weights and biases)."""
        total = 0
        for shape in self.state_shapes().values():
            n = 1
            for d in shape:
                n *= d
            total += n
        return total

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Any) -> Plan:
        """The plan a :meth:`to_dict` dict describes (as read from JSON: checked, not trusted).

        Raises:
            ConfigError: not a dict, a missing or unknown key, or any value :class:`Plan`
                refuses.
        """
        if not isinstance(d, dict):
            raise ConfigError(f"a plan must be a JSON object, got {type(d).__name__}")
        allowed = {"family", "in_shape", "conv", "fc", "out"}
        unknown = set(d) - allowed
        if unknown:
            raise ConfigError(f"unknown plan keys {sorted(unknown)}; valid: {sorted(allowed)}")
        missing = {"family", "in_shape"} - set(d)
        if missing:
            raise ConfigError(f"the plan lacks {', '.join(sorted(missing))}")
        return cls(family=d["family"], in_shape=d["in_shape"], conv=d.get("conv", ()),
                   fc=d.get("fc", ()), out=d.get("out", 10))

    def with_widths(self, conv: tuple[int, ...], fc: tuple[int, ...]) -> Plan:
        """The same architecture with other hidden widths (used by compaction)."""
        return Plan(self.family, self.in_shape, tuple(conv), tuple(fc), self.out)


def preset(name: str, in_shape: tuple[int, int, int] = (1, 28, 28), out: int = 10) -> Plan:
    """A named architecture as a plan.

    Presets: ``lenet-300-100`` (784-300-100-out MLP), ``lenet5`` (Caffe LeNet-5:
    conv5x5 20, pool, conv5x5 50, pool, FC 500), ``conv2``/``conv4``/``conv6`` (the
    VGG-style nets of the lottery-ticket paper: 3x3 convs 64,64 | 128,128 | 256,256 with a
    max-pool after each pair, then FC 256-256), and ``mlp`` (same as lenet-300-100).

    Example:
        >>> preset("lenet-300-100").fc
        (300, 100)
    """
    table: dict[str, tuple[str, tuple[int, ...], tuple[int, ...]]] = {
        "lenet-300-100": ("mlp", (), (300, 100)),
        "mlp": ("mlp", (), (300, 100)),
        "lenet5": ("lenet5", (20, 50), (500,)),
        "conv2": ("convnet", (64, 64), (256, 256)),
        "conv4": ("convnet", (64, 64, 128, 128), (256, 256)),
        "conv6": ("convnet", (64, 64, 128, 128, 256, 256), (256, 256)),
    }
    if name not in table:
        raise ConfigError(f"unknown model {name!r}; valid: {', '.join(sorted(table))}")
    family, conv, fc = table[name]
    return Plan(family, in_shape, conv, fc, out)

