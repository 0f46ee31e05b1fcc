"""Experiment files: a TOML grid of settings, expanded into points and their stage chains.

Schema (every key is optional, missing values being the config defaults, but a file must
set at least one table: an empty one is refused rather than training the defaults)::

    name = "heads"                      # default run directory: runs/<name>
    description = "softmax vs LLR"      # free text
    exclude = [                         # points left out of the grid (before any table):
        { model = "lenet5", seed = [2] },  # each rule names axes and labels (a list: any
    ]                                   #   of them); a point matching a whole rule is
                                        #   dropped, e.g. fewer seeds of a costly net

    [data]                              # DataConfig values shared by every point
    dataset = "mnist"                   # mnist | fashion-mnist | synthetic (generated,
                                        #   tiny, no download: for tests and smoke runs)
    limit_train = 10000
    split_seed = "seed"                 # an int, or "seed": each point's train/validation
                                        #   split is seeded by its train seed, so seeds
                                        #   vary the split too
    [data.vary]                         # data axes (any DataConfig field but dataset),
    regime = [                          #   e.g. the regimes where overfitting shows
        { name = "full" },
        { name = "1k", limit_train = 1000 },
        { name = "noise20", label_noise = 0.2 },
    ]

    [train]                             # TrainConfig values shared by every point
    epochs = 20
    [train.vary]                        # axes: the grid is their cartesian product
    model = ["lenet-300-100", "lenet5"] # a field name -> a list of values of that field
    head = ["softmax", "llr"]
    seed = [1, 2]
    regularizer = [                     # any other name -> a list of tables of field values
        { name = "none" },              #   ("name" labels the value in results)
        { name = "l2", l2 = 5e-4 },
    ]

    [prune]                             # PruneConfig values; absent: no prune stage
    [prune.vary]
    sparsity = [0.5, 0.9]
    method = [{ name = "dense", skip = true }, { method = "refit" }]
                                        # skip = true: this value has no prune stage

    [bits]                              # BitsConfig values; absent: no bits stage
    [bits.vary]
    bits = [4, 8]

    [profile]                           # ProfileConfig values; absent: no profile stage.
    methods = ["none", "refit"]         #   Each trained model is pruned once per method
    sparsities = [0.5, 0.9, 0.98]       #   and level (no axes: this is its own grid)

    [compress]                          # CompressConfig values; absent: no compress stage.
    max_drop = 0.002                    #   Each trained model is compressed once
    methods = ["finetune"]              #   (`leanbits compress`: no axes, its own search)

    [pick]                              # keep one packed model as RUN/model.lbits: the
    max_drop = 0.001                    #   fewest bits within max_drop validation accuracy
                                        #   of the model it was quantized from

    [quick]                             # merged over the file by --quick (tables merge
    train = { epochs = 1 }              # key by key; lists and values replace)

Seeds follow the point: a prune, bits, profile or compress stage whose table does not set
``seed`` (as a value, an axis or in an axis entry) takes its train stage's seed, so the
minibatch order of re-fit, fine-tuning and the other pruning methods varies with the seed
as training and the split do, and one seed reproduces the whole chain. A ``seed`` set in
the table is used as given.

The grid's size - the product of every axis' length - is computed before anything is
expanded, and a grid of more than :data:`MAX_POINTS` points is refused unless asked for
(``--allow-large``, ``max_points=None``). ``name`` becomes a directory name, so it must be
one: no ``/`` or ``\\``, not ``.`` or ``..``, no control characters.

Errors name the key and the allowed keys or values, e.g. ``[train] TrainConfig.head:
'sigmoid' is not allowed; valid: softmax, llr, llr-code (at head=sigmoid)``.

Each point of the grid is a chain of stages ``train -> prune -> bits``; a profile stage
and a compress stage hang off each train stage beside them (their results are in their
``profile.json`` / ``compress.json``). A stage is named
``<label>-<hash>`` where the hash covers its own settings (non-default fields, as
:func:`leanbits.config.stage_hash` does) and its input stage's name, so points that share a
stage share its directory and it runs once. Every config dataclass of every point is built
(and so validated) when the file is loaded, before anything runs.

Reading, merging (``[quick]``, ``--set``) and checking the file's keys is this module's
job; expanding the grid into points and stages is :mod:`.grid`'s (its names are
importable from here too).
"""

from __future__ import annotations

import copy
import json
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from leanbits.config import check_keys, load_toml
from leanbits.errors import ConfigError
from leanbits.sweep.grid import (
    AXIS_SECTIONS,
    MAX_NAME_BYTES,
    MAX_POINTS,
    POINT_KINDS,
    SIDE_KINDS,
    SPLIT_FOLLOWS_SEED,
    STAGE_KINDS,
    Experiment,
    GridHook,
    Point,
    StageSpec,
    check_name,
    describe_grid,
    expand,
    grid_axes,
    grid_size,
)
from leanbits.sweep.presets import study_names, study_path  # re-exported: their old home

__all__ = [
    "AXIS_SECTIONS", "MAX_NAME_BYTES", "MAX_POINTS", "POINT_KINDS", "SECTIONS", "SIDE_KINDS",
    "SPLIT_FOLLOWS_SEED", "STAGE_KINDS", "TOP_KEYS", "Experiment", "GridHook", "Point",
    "StageSpec", "check_name", "describe_grid", "differences", "effective_settings",
    "grid_axes", "grid_size", "load_experiment", "parse_experiment", "study_names",
    "study_path",
]

#: the tables an experiment file may set (``--set`` reaches them too)
SECTIONS = ("data", "train", "profile", "compress", "prune", "bits", "pick")
TOP_KEYS = ("name", "description", *SECTIONS, "exclude", "quick")


# ----------------------------------------------------------------------------- loading
def load_experiment(path: str | Path, quick: bool = False, overrides: Sequence[str] = (),
                    max_points: int | None = MAX_POINTS,
                    on_grid: GridHook | None = None) -> Experiment:
    """Read, merge (``--quick``, ``--set``) and validate an experiment file.

    Args:
        path: the TOML file.
        quick: merge the file's ``[quick]`` table over it.
        overrides: ``"section.key=value"`` strings (value in TOML syntax, or a bare string),
            applied last, e.g. ``"data.dataset=synthetic"`` or ``"train.vary.seed=[1,2]"``.
        max_points: refuse a grid of more points (None: no limit).
        on_grid: told the grid's size and axes before the grid is expanded (e.g. to print
            them: a large grid takes a while to expand and check).

    Returns:
        The validated :class:`Experiment`.

    Raises:
        ConfigError: the file is missing or not TOML, or a key or value is invalid; the
            message names the file, the key and the allowed keys or values.
    """
    raw = load_toml(path)
    return parse_experiment(raw, source=str(path), quick=quick, overrides=overrides,
                            max_points=max_points, on_grid=on_grid)


def parse_experiment(raw: dict[str, Any], source: str = "<experiment>", quick: bool = False,
                     overrides: Sequence[str] = (), max_points: int | None = MAX_POINTS,
                     on_grid: GridHook | None = None) -> Experiment:
    """Validate an experiment given as a dict (see :func:`load_experiment`)."""
    settings = effective_settings(raw, source, quick, overrides)
    try:
        return expand(settings, max_points, on_grid)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def effective_settings(raw: dict[str, Any], source: str = "<experiment>", quick: bool = False,
                       overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The experiment after merging ``[quick]`` (when asked) and ``overrides``; no ``quick``."""
    check_keys(source, raw, TOP_KEYS)
    settings = copy.deepcopy({k: v for k, v in raw.items() if k != "quick"})
    if quick:
        q = raw.get("quick", {})
        if not isinstance(q, dict):
            raise ConfigError(f"{source}: [quick] must be a table")
        check_keys(source, q, tuple(k for k in TOP_KEYS if k != "quick"), "quick.")
        settings = _merge(settings, q)
    for item in overrides:
        _apply_override(settings, item, source)
    if not any(k in settings for k in SECTIONS):
        # an empty file (or one of comments) would train the defaults on the whole data set
        raise ConfigError(f"{source} has no settings; add at least a [train] table (e.g. "
                          "[train] epochs = 5), or --set train.epochs=5")
    return settings


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _apply_override(settings: dict[str, Any], item: str, source: str) -> None:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. train.epochs=3")
    key, text = item.split("=", 1)
    parts = key.strip().split(".")
    if parts != ["exclude"] and (len(parts) < 2 or parts[0] not in SECTIONS
                                 or not all(parts)):
        raise ConfigError(f"--set {item!r}: the key must start with one of "
                          f"{', '.join(SECTIONS)} and name a field, e.g. train.epochs (or "
                          "be exclude)")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text  # a bare word, e.g. data.dataset=synthetic
    d = settings
    for p in parts[:-1]:
        d = d.setdefault(p, {})
        if not isinstance(d, dict):
            raise ConfigError(f"--set {item!r}: {p} is not a table in {source}")
    d[parts[-1]] = value


# ----------------------------------------------------------------------------- comparing
#: top-level keys that name or describe an experiment without changing what it runs
_LABELS = ("name", "description")


def differences(exp: Experiment, base: Experiment, base_name: str = "base") -> list[str]:
    """How ``exp`` differs from ``base`` as a run: nothing when both run the same stages
    (same keys) for the same points (same axis values), with the same side stages and
    pick rule - however their settings are written - else one line per setting that
    differs (name and description aside).

    Args:
        exp: the experiment described.
        base: the one it is compared with.
        base_name: how the lines name ``base``.

    Returns:
        E.g. ``["train.vary.model = lenet-300-100 (preset: lenet-300-100, lenet5, conv2)"]``:
        axes by their values' labels (their settings where the labels agree), other
        settings as JSON values; ``[]`` when the experiments run alike.
    """
    def runs(e: Experiment) -> tuple[Any, ...]:
        return (tuple((tuple(p.axes.items()), tuple(s.key for s in p.stages))
                      for p in e.points),
                tuple(s.key for s in e.profiles), tuple(s.key for s in e.compressions),
                e.pick)

    if runs(exp) == runs(base):
        return []
    lines = []
    for path, mine, theirs in _changed(exp.settings, base.settings, ()):
        if path[0] in _LABELS:
            continue
        axis = path[-1] if len(path) == 3 and path[1] == "vary" else None
        a, b = (_axis_labels(e, axis) for e in (exp, base)) if axis else ((), ())
        shown = (a, b) if a and b and a != b else (_show(mine), _show(theirs))
        lines.append(f"{'.'.join(path)} = {shown[0]} ({base_name}: {shown[1]})")
    return lines or [f"the expanded grids differ ({base_name} has "
                     f"{len(base.points):,} points, this one {len(exp.points):,})"]


_MISSING = object()


def _changed(a: Any, b: Any, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any, Any]]:
    """[(dotted path, value in a, value in b)] of every leaf that differs; a table's keys
    are compared one by one, anything else as a whole."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [c for k in dict.fromkeys([*a, *b])
                for c in _changed(a.get(k, _MISSING), b.get(k, _MISSING), (*path, k))]
    return [] if a == b else [(path, a, b)]


def _axis_labels(exp: Experiment, axis: str) -> str:
    """An axis' values as results label them, in grid order ("" when it is not one)."""
    got = dict.fromkeys(str(p.axes[axis]) for p in exp.points
                        if p.axes.get(axis) is not None)  # None: a skipped stage's axis
    return ", ".join(got)


def _show(value: Any) -> str:
    if value is _MISSING:
        return "not set"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
