"""Width plans: the small, JSON-able description from which every leanbits model is built.

A plan names an architecture family and lists the widths of its hidden layers. Pruning
shrinks the widths; :func:`leanbits.models.build` rebuilds a physically smaller model from
the shrunken plan, so a compact model never needs pickles to be loaded again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from leanbits.errors import ConfigError

#: architecture family -> how its conv stack is laid out
#: kernel: conv kernel size; padding: conv padding; pool_every: a 2x2 max-pool after every
#: ``pool_every`` conv layers.
FAMILIES: dict[str, dict[str, int]] = {
    "mlp": {"kernel": 0, "padding": 0, "pool_every": 0},
    "lenet5": {"kernel": 5, "padding": 0, "pool_every": 1},
    "convnet": {"kernel": 3, "padding": 1, "pool_every": 2},
}


@dataclass(frozen=True)
class Plan:
    """Architecture description: family, input shape, conv channels, FC widths, outputs.

    Args:
        family: one of :data:`FAMILIES`.
        in_shape: (channels, height, width) of one input example.
        conv: output channels of each conv layer, in order.
        fc: widths of the hidden fully connected layers, in order.
        out: number of outputs of the last layer (set by the output head).
    """

    family: str
    in_shape: tuple[int, int, int]
    conv: tuple[int, ...] = field(default_factory=tuple)
    fc: tuple[int, ...] = field(default_factory=tuple)
    out: int = 10

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ConfigError(
                f"unknown model family {self.family!r}; valid: {', '.join(sorted(FAMILIES))}"
            )
        if self.family == "mlp" and self.conv:
            raise ConfigError("an mlp plan has no conv layers")
        for w in (*self.conv, *self.fc, self.out):
            if int(w) < 1:
                raise ConfigError(f"every layer width must be >= 1, got {w}")
        object.__setattr__(self, "in_shape", tuple(int(v) for v in self.in_shape))
        object.__setattr__(self, "conv", tuple(int(v) for v in self.conv))
        object.__setattr__(self, "fc", tuple(int(v) for v in self.fc))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        allowed = {"family", "in_shape", "conv", "fc", "out"}
        unknown = set(d) - allowed
        if unknown:
            raise ConfigError(f"unknown plan keys {sorted(unknown)}; valid: {sorted(allowed)}")
        return cls(
            family=str(d["family"]),
            in_shape=tuple(d["in_shape"]),
            conv=tuple(d.get("conv", ())),
            fc=tuple(d.get("fc", ())),
            out=int(d.get("out", 10)),
        )

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


PRESETS = ("lenet-300-100", "mlp", "lenet5", "conv2", "conv4", "conv6")
