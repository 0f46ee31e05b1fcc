"""Expanding an experiment's settings into its grid: the axes of the data and of each stage
section and their cartesian product (:func:`grid_size` before anything is built, refused above
:data:`MAX_POINTS`), every point's chain of stages ``train -> prune -> bits`` with every
config built and checked, stages shared between points by their ``<label>-<hash>`` name,
and the side stages (profile, compress) and ``[pick]`` of each trained model. The result is
an :class:`Experiment`; reading and merging the file is :mod:`.experiment`'s job.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from leanbits.config import make, stage_hash, to_dict
from leanbits.errors import ConfigError
from leanbits.settings.data import DataConfig
from leanbits.sweep import kinds
from leanbits.sweep.pick import PickConfig

#: the stages of a grid point, first to last
POINT_KINDS = ("train", "prune", "bits")
#: the sections that may have axes (``vary``): the data, then each point stage
AXIS_SECTIONS = ("data", *POINT_KINDS)
#: every stage kind, in the order a run executes them (each reads only earlier kinds)
STAGE_KINDS = ("train", "profile", "compress", "prune", "bits")
#: side stages: one per trained model, configured by a table without axes
SIDE_KINDS = ("profile", "compress")
#: keys of a table-valued axis entry that are not config fields
_META_KEYS = {"data": ("name",), "train": ("name",), "prune": ("name", "skip"),
              "bits": ("name",)}
#: the most grid points an experiment may have unless asked for (``--allow-large``): the
#: grid is expanded in memory and checked point by point before anything runs
MAX_POINTS = 10_000
#: longest experiment name in bytes: it names a directory (255 bytes on most file systems),
#: with room for suffixes such as ``-quick``
MAX_NAME_BYTES = 200
#: ``[data] split_seed`` value that seeds each point's split with its train seed
SPLIT_FOLLOWS_SEED = "seed"
#: called with (grid size, [(axis, number of values)]) before the grid is expanded
GridHook = Callable[[int, list[tuple[str, int]]], None]


@dataclass(frozen=True)
class StageSpec:
    """One stage of the DAG: what to run, on which input, and where its output lives.

    Attributes:
        kind: ``train``, ``prune`` or ``bits``.
        config: the stage's config dataclass.
        key: directory name ``<label>-<hash>`` (unique within ``kind``).
        input: the stage this one reads (None for ``train``).
        data: the data settings (every stage evaluates on the same splits).
    """

    kind: str
    config: Any
    key: str
    input: StageSpec | None
    data: dict[str, Any] = field(hash=False, compare=False)

    @property
    def relpath(self) -> str:
        """Path of the stage directory relative to the stage root."""
        return f"{self.kind}/{self.key}"


@dataclass(frozen=True)
class Point:
    """One grid point: its axis values (labels) and its chain of stages, first to last."""

    index: int
    axes: dict[str, Any]
    stages: tuple[StageSpec, ...]

    @property
    def last(self) -> StageSpec:
        return self.stages[-1]


@dataclass(frozen=True)
class Experiment:
    """A validated experiment: its effective settings and its expanded grid.

    Attributes:
        profiles: one profile stage per trained model when the file has ``[profile]``.
        pick: the ``[pick]`` rule, or None.
        compressions: one compress stage per trained model when the file has
            ``[compress]``.
    """

    name: str
    description: str
    settings: dict[str, Any]
    data: dict[str, Any]
    points: tuple[Point, ...]
    profiles: tuple[StageSpec, ...] = ()
    pick: PickConfig | None = None
    compressions: tuple[StageSpec, ...] = ()

    def kinds(self) -> list[str]:
        """The stage kinds a run reports on, in run order: every point kind, and
        ``profile`` when the experiment has one."""
        return [k for k in STAGE_KINDS if k in POINT_KINDS or self.stages(k)]

    def stages(self, kind: str) -> list[StageSpec]:
        """The distinct stages of one kind, in first-use order."""
        if kind == "profile":
            return list(self.profiles)
        if kind == "compress":
            return list(self.compressions)
        seen: dict[str, StageSpec] = {}
        for p in self.points:
            for s in p.stages:
                if s.kind == kind and s.key not in seen:
                    seen[s.key] = s
        return list(seen.values())


def grid_axes(settings: dict[str, Any]) -> list[tuple[str, int]]:
    """Every axis as (name, number of values), in grid order, read without expanding.

    Malformed sections are passed over here; :func:`parse_experiment` reports them.
    """
    axes = []
    for kind in AXIS_SECTIONS:
        section = settings.get(kind)
        vary = section.get("vary") if isinstance(section, dict) else None
        if isinstance(vary, dict):
            axes += [(name, len(v)) for name, v in vary.items() if isinstance(v, list)]
    return axes


def grid_size(settings: dict[str, Any]) -> int:
    """Points of the grid: the product of the axes' lengths (an upper bound: points made
    identical by a skipped stage are counted once after expansion)."""
    return math.prod(n for _, n in grid_axes(settings))


def describe_grid(axes: list[tuple[str, int]]) -> str:
    """``head 2 x sparsity 3`` (or ``no axes``)."""
    return " x ".join(f"{a} {n:,}" for a, n in axes) or "no axes"


def _check_grid(settings: dict[str, Any], max_points: int | None,
                on_grid: GridHook | None) -> None:
    axes = grid_axes(settings)
    size = math.prod(n for _, n in axes)
    if on_grid is not None:
        on_grid(size, axes)
    if max_points is not None and size > max_points:
        raise ConfigError(f"the grid has {size:,} points ({describe_grid(axes)}), more than "
                          f"the limit of {max_points:,}; shrink the axes, or pass "
                          "--allow-large to run it anyway")


def check_name(name: Any) -> str:
    """``name`` if it can name a run directory.

    Raises:
        ConfigError: not a non-empty string, or not usable as one directory name.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"name: {name!r} must be a non-empty string")
    bad = next((c for c in name if unicodedata.category(c) in ("Cc", "Cs")), None)
    if bad is not None:
        raise ConfigError(f"name: {name!r} contains the control character {bad!r}; use "
                          "printable characters (it names the run directory)")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise ConfigError(f"name: {name!r} cannot name a directory: no '/' or '\\', and "
                          "not '.' or '..'")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise ConfigError(f"name: {len(name.encode('utf-8'))} bytes long; at most "
                          f"{MAX_NAME_BYTES} (it names the run directory)")
    return name


def _check_data(data: Any) -> dict[str, Any]:
    """The data settings of a ``[data]`` table without its axes, checked and completed."""
    if not isinstance(data, dict):
        raise ConfigError("[data] must be a table")
    values = {k: v for k, v in data.items() if k != "vary"}
    follow = values.get("split_seed") == SPLIT_FOLLOWS_SEED
    if follow:
        values.pop("split_seed")
    out = to_dict(make(DataConfig, values))  # checks every key and value
    if follow:
        out["split_seed"] = SPLIT_FOLLOWS_SEED
    return out


def _data_combos(data: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every combination of the ``[data.vary]`` axes: (axis labels, checked data settings).

    Without axes, the one combination is the ``[data]`` table itself. The data set is one
    per experiment (it is fetched once, before anything runs), so it cannot be an axis.
    """
    base = _check_data(data)
    vary = data.get("vary", {})
    if not isinstance(vary, dict):
        raise ConfigError("[data.vary] must be a table of axes")
    if "dataset" in vary:
        raise ConfigError("[data.vary] dataset: the data set is one per experiment; run one "
                          "experiment per data set")
    fields = {f.name for f in dataclasses.fields(DataConfig)} - {"dataset"}
    axes = [(name, [(label, over) for label, over, _ in entries])
            for name, entries in _parse_axes("data", vary, fields, "DataConfig")]
    out = []
    for choice in itertools.product(*(entries for _, entries in axes)):
        values, owner, labels = {k: v for k, v in data.items() if k != "vary"}, {}, {}
        for (axis, _), (label, over) in zip(axes, choice, strict=True):
            labels[axis] = label
            for k, v in over.items():
                if k in owner:
                    raise ConfigError(f"[data.vary] axes {owner[k]} and {axis} both set {k}; "
                                      "set each field in one axis only")
                owner[k] = axis
                values[k] = v
        try:
            checked = _check_data(values) if axes else base
        except ConfigError as exc:
            where = ", ".join(f"{a}={lab}" for a, lab in labels.items())
            raise ConfigError(f"{exc} (at {where})") from None
        out.append((labels, checked))
    return out


def _point_data(data: dict[str, Any], cfg: Any) -> dict[str, Any]:
    """The data settings of a train stage: ``split_seed = "seed"`` becomes its seed."""
    if data.get("split_seed") == SPLIT_FOLLOWS_SEED:
        return {**data, "split_seed": cfg.seed}
    return data


def _axes(kind: str, section: dict[str, Any], cls: type) -> tuple[dict[str, Any], list[Any]]:
    """Split a stage section into base values and axes [(name, [(label, overrides)])]."""
    base = {k: v for k, v in section.items() if k != "vary"}
    try:
        make(cls, base)  # every base value is checked, even one that all axes override
    except ConfigError as exc:
        raise ConfigError(f"[{kind}] {exc}") from None
    vary = section.get("vary", {})
    if not isinstance(vary, dict):
        raise ConfigError(f"[{kind}.vary] must be a table of axes")
    fields = {f.name for f in dataclasses.fields(cls)}
    axes = _parse_axes(kind, vary, fields, cls.__name__)
    return base, axes


def _parse_axes(kind: str, vary: dict[str, Any], fields: set[str], cls_name: str,
                ) -> list[tuple[str, list[tuple[Any, dict[str, Any], bool]]]]:
    """The axes of a ``[KIND.vary]`` table: [(name, [(label, overrides, skipped)])].

    An axis named after a field lists its values; any other axis lists tables of field
    values, each optionally with the meta keys of ``_META_KEYS[kind]`` (``name`` labels the
    entry in results, ``skip`` leaves it out of the stages it would run).
    """
    meta = _META_KEYS[kind]
    axes = []
    for name, values in vary.items():
        where = f"[{kind}.vary] {name}"
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: an axis must be a non-empty list of values")
        entries = []
        for i, v in enumerate(values):
            if isinstance(v, dict):
                allowed = sorted(fields) + list(meta)
                bad = [k for k in v if k not in allowed]
                if bad:
                    raise ConfigError(
                        f"{where}[{i}]: unknown key(s) {', '.join(bad)}; valid: "
                        + ", ".join(allowed)
                    )
                over = {k: x for k, x in v.items() if k not in meta}
                skip = v.get("skip", False)
                if not isinstance(skip, bool):
                    raise ConfigError(f"{where}[{i}].skip: {skip!r} must be true or false "
                                      "(a TOML boolean, unquoted)")
                if "name" in v:
                    if not isinstance(v["name"], str) or not v["name"]:
                        raise ConfigError(f"{where}[{i}].name: {v['name']!r} must be a "
                                          "non-empty string (it labels the value in results)")
                    label = v["name"]
                elif len(over) == 1:
                    label = _label(next(iter(over.values())))
                else:
                    label = ",".join(f"{k}={_label(x)}" for k, x in over.items()) or "-"
                entries.append((label, over, skip))
            elif name in fields:
                entries.append((_label(v), {name: v}, False))
            else:
                raise ConfigError(
                    f"{where}: not a {cls_name} field, so its values must be tables of "
                    f"field values; valid fields: {', '.join(sorted(fields))}"
                )
        axes.append((name, entries))
    return axes


def _label(value: Any) -> Any:
    """How an axis value appears in results: numbers and strings as they are."""
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return value


def _combos(kind: str, base: dict[str, Any], axes: list[Any], cls: type,
            ) -> list[tuple[dict[str, Any], Any, bool]]:
    """Every combination of one stage's axes: (axis labels, config or None, skipped)."""
    out = []
    for choice in itertools.product(*(entries for _, entries in axes)):
        values, owner, labels, skip = dict(base), {}, {}, False
        for (axis, _), (label, over, skip_this) in zip(axes, choice, strict=True):
            labels[axis] = label
            skip = skip or skip_this
            for k, v in over.items():
                if k in owner:
                    raise ConfigError(
                        f"[{kind}.vary] axes {owner[k]} and {axis} both set {k}; "
                        "set each field in one axis only"
                    )
                owner[k] = axis
                values[k] = v
        try:
            cfg = None if skip else make(cls, values)
        except ConfigError as exc:
            where = ", ".join(f"{a}={lab}" for a, lab in labels.items())
            raise ConfigError(f"[{kind}] {exc}" + (f" (at {where})" if where else "")) from None
        if cfg is not None:
            _check_together(kind, cfg)
        else:
            # A skipped stage's other axes mean nothing for this point.
            labels = {a: (lab if over_skip else None) for (a, lab), over_skip in zip(
                labels.items(), (c[2] for c in choice), strict=True)}
        out.append((labels, cfg, skip))
    return out


def _check_together(kind: str, cfg: Any) -> None:
    """:func:`leanbits.sweep.stages.check`: whether a stage's settings work together."""
    # Imported here, not at the top: stages loads torch (seconds), and reading a file or
    # refusing a bad key, value or grid size must not wait for it.
    from leanbits.sweep import stages

    stages.check(kind, cfg)


def _sets_seed(section: Any) -> bool:
    """Whether a stage table sets ``seed`` itself: as a value, an axis, or in an axis entry."""
    if not isinstance(section, dict):
        return False
    vary = section.get("vary", {})
    vary = vary if isinstance(vary, dict) else {}
    return "seed" in section or "seed" in vary or any(
        isinstance(v, dict) and "seed" in v
        for values in vary.values() if isinstance(values, list) for v in values)


def _seeded(cfg: Any, train: StageSpec, follows: bool) -> Any:
    """``cfg`` with its train stage's seed when the stage's seed follows the point's."""
    if not follows or cfg is None or cfg.seed == train.config.seed:
        return cfg
    return dataclasses.replace(cfg, seed=train.config.seed)


def _stage(kind: str, cfg: Any, parent: StageSpec | None, data: dict[str, Any]) -> StageSpec:
    label = kinds.label(kind, cfg)
    if kind == "train":
        # The name `leanbits train` gives the same settings (train.run_name); for the
        # data sets of DataConfig it is the name train stages have always had.
        digest = stage_hash(DataConfig(**data), cfg)
    else:
        digest = stage_hash(cfg, parent.key if parent else None)
    return StageSpec(kind, cfg, f"{label}-{digest}", parent, data)


def expand(settings: dict[str, Any], max_points: int | None = MAX_POINTS,
            on_grid: GridHook | None = None) -> Experiment:
    name = check_name(settings.get("name", "experiment"))
    _check_grid(settings, max_points, on_grid)
    description = settings.get("description", "")
    if not isinstance(description, str):
        raise ConfigError("description: must be a string")
    raw_data = settings.get("data", {})
    data = _check_data(raw_data)
    data_combos = _data_combos(raw_data)
    combos: dict[str, list[Any]] = {}
    axis_owner: dict[str, str] = {a: "data" for a in data_combos[0][0]}
    for kind in POINT_KINDS:
        if kind not in settings:
            continue
        section = settings[kind]
        if not isinstance(section, dict):
            raise ConfigError(f"[{kind}] must be a table")
        cls = kinds.config_class(kind)
        base, axes = _axes(kind, section, cls)
        for axis, _ in axes:
            if axis in axis_owner:
                raise ConfigError(f"[{kind}.vary] {axis}: [{axis_owner[axis]}.vary] has an "
                                  "axis of the same name; rename one (axis names label "
                                  "results)")
            axis_owner[axis] = kind
        combos[kind] = _combos(kind, base, axes, cls)
    if "train" not in combos:
        combos["train"] = _combos("train", {}, [], kinds.config_class("train"))

    exclude = _exclusions(settings.get("exclude", []), axis_owner)
    follows = {kind: not _sets_seed(settings.get(kind)) for kind in STAGE_KINDS}
    points = []
    shared: dict[tuple[str, str], StageSpec] = {}
    made: dict[tuple[str, int, str | int], StageSpec] = {}
    seen: set[tuple[Any, ...]] = set()
    grid = [combos[k] for k in POINT_KINDS if k in combos]
    for (d, (data_labels, point_data)), *choice in itertools.product(enumerate(data_combos),
                                                                     *grid):
        axes: dict[str, Any] = dict(data_labels)
        for labels, _cfg, _skip in choice:
            axes.update(labels)
        if any(all(axes.get(a) in allowed for a, allowed in rule.items())
               for rule in exclude):
            continue
        chain: list[StageSpec] = []
        parent = None
        for kind, (_labels, cfg, skip) in zip([k for k in POINT_KINDS if k in combos],
                                             choice, strict=True):
            if skip:
                continue
            # Hash each (config, input) pair once, not once per point that uses it; a
            # train stage's input is its data.
            memo = (kind, id(cfg), parent.key if parent else d)
            spec = made.get(memo)
            if spec is None:
                # A stage evaluates on its train stage's splits, with its seed.
                spec = _stage(kind, cfg if parent is None else
                              _seeded(cfg, chain[0], follows[kind]), parent,
                              parent.data if parent else _point_data(point_data, cfg))
                # One object per distinct stage, so identity and key agree.
                spec = made[memo] = shared.setdefault((kind, spec.key), spec)
            chain.append(spec)
            parent = spec
        ident = (tuple(axes.items()), tuple(s.relpath for s in chain))
        if ident in seen:  # e.g. a skipped prune stage crossed with prune levels
            continue
        seen.add(ident)
        points.append(Point(len(points), axes, tuple(chain)))
    trained = [spec for (kind, _), spec in shared.items() if kind == "train"]
    profiles = ()
    if "profile" in settings:
        cfg = _table_config("profile", settings["profile"])
        profiles = tuple(_stage("profile", _seeded(cfg, t, follows["profile"]), t, t.data)
                         for t in trained)
    compressions = ()
    if "compress" in settings:
        cfg = _table_config("compress", settings["compress"])
        # side stages evaluate on their train stage's split
        compressions = tuple(_stage("compress", _seeded(cfg, t, follows["compress"]), t,
                                    t.data) for t in trained)
    pick = _table_config("pick", settings["pick"]) if "pick" in settings else None
    return Experiment(name, description, settings, data, tuple(points), profiles, pick,
                      compressions)


def _exclusions(raw: Any, axis_owner: dict[str, str]) -> list[dict[str, list[Any]]]:
    """The ``exclude`` rules, checked: each a table of axis name -> a label or a list of
    labels; a point whose labels match every key of a rule is not in the grid.

    A label the grid does not have is allowed (``--set`` may have narrowed an axis the
    file's rules name); an axis it does not have is an error (a misspelt rule would
    silently keep every point).
    """
    where = "exclude"
    if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
        raise ConfigError(f"{where}: must be a list of tables, e.g. exclude = "
                          '[{ model = "lenet5", seed = [4, 5] }]')
    rules = []
    for i, rule in enumerate(raw):
        if not rule:
            raise ConfigError(f"{where}[{i}]: an empty rule would drop every point; name "
                              "at least one axis")
        checked = {}
        for axis, value in rule.items():
            if axis not in axis_owner:
                raise ConfigError(f"{where}[{i}].{axis}: not an axis of this grid; valid: "
                                  f"{', '.join(axis_owner) or 'none (no [*.vary] axes)'}")
            values = value if isinstance(value, list) else [value]
            if not values or any(isinstance(v, dict | list) for v in values):
                raise ConfigError(f"{where}[{i}].{axis}: give a label of the axis (its "
                                  "value, or the name of a table value) or a list of them")
            checked[axis] = [_label(v) for v in values]
        rules.append(checked)
    return rules


def _table_config(kind: str, section: Any) -> Any:
    """The config of a table without axes (``[profile]``, ``[pick]``), checked."""
    if not isinstance(section, dict):
        raise ConfigError(f"[{kind}] must be a table")
    if "vary" in section:
        raise ConfigError(f"[{kind}] has no axes (vary); " + {
            "profile": "its methods and sparsities are its own grid",
            "compress": "its methods, bits and sparsity search are its own grid",
        }.get(kind, "it picks one point of the grid"))
    cls = PickConfig if kind == "pick" else kinds.config_class(kind)
    try:
        cfg = make(cls, section)
    except ConfigError as exc:
        raise ConfigError(f"[{kind}] {exc}") from None
    if kind != "pick":
        _check_together(kind, cfg)
    return cfg
