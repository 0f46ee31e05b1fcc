"""Collect what a run directory holds and turn it into a report (Markdown + HTML + PNGs).

Three kinds of directory are understood, alone or mixed:

* a **snapshot** (``metrics.jsonl``, ``config.toml``, ``metrics.json``) - training curves;
* a ``leanbits profile`` output (``profile.json``) - accuracy against nonzero weights;
* a **sweep** run directory (``results.json`` or ``results.jsonl``, one row per evaluated
  point, plus stage directories holding snapshots) - everything, including the
  accuracy-vs-bits frontier and bit breakdowns.

Snapshots are found anywhere up to :data:`MAX_DEPTH` directories below the root. Rows are
read tolerantly: :data:`ROW_KEYS`, :data:`BIT_PARTS` and :data:`LAYER_KEYS` list the keys
looked for (the single place to update when a writer renames one); a section whose keys are
missing is left out and a note in the report says which keys it needed.

Example:
    >>> result = build_report("runs/sweep-1")  # doctest: +SKIP
    >>> result.html  # doctest: +SKIP
    PosixPath('runs/sweep-1/report.html')
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leanbits import paths
from leanbits.errors import LeanbitsError
from leanbits.fileio import write_bytes_atomic, write_text_atomic
from leanbits.report.tables import markdown_table

# ----------------------------------------------------------------------------- file names
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
FIGURES_DIR = "figures"
RESULTS_FILES = ("results.json", "results.jsonl")  # the first present is read
PROFILE_FILE = "profile.json"
#: how deep below the root snapshots (metrics.jsonl) and profiles are searched
MAX_DEPTH = 4
#: figure file stems this module writes; stale ones from an earlier report are removed
FIGURE_NAMES = ("weights", "outputs", "loss", "prune_profile", "frontier", "sparsity", "bits")
#: at most this many points get a bit breakdown / per-layer sparsity bar
CHOSEN_POINTS = 6
#: longer config files are cut in the report (the file itself stays the reference)
MAX_CONFIG_CHARS = 20_000

# ----------------------------------------------------------------------------- key mapping
# Written against: leanbits.sweep.run (results rows: axes, stages, settings, val_acc,
# test_acc, nonzero_weights, weights, total_bits, bits_breakdown, metrics), the sweep's bits
# stages (stages/bits/<key>/account.json = leanbits.bits.account.Account.to_dict()),
# leanbits.prune.cli (profile.json: source, config, rows of leanbits.prune.search.measure)
# and leanbits.train (metrics.jsonl). Aliases after the first of each list keep older or
# hand-made files readable.

#: Where each quantity is looked for in a result or profile row: the first key present with
#: a usable value wins; a dotted name reaches into nested objects ("axes.head").
ROW_KEYS: dict[str, tuple[str, ...]] = {
    "label": ("name", "label", "id"),
    "head": ("head", "axes.head", "settings.train.head", "train.head", "config.train.head"),
    "method": ("method", "axes.method", "settings.prune.method", "prune_method",
               "prune.method"),
    "sparsity": ("sparsity", "axes.sparsity", "metrics.prune.sparsity", "amount",
                 "sparsity_requested", "settings.prune.sparsity"),
    "val_acc": ("val_acc", "metrics.val_acc"),
    "test_acc": ("test_acc", "metrics.test_acc"),
    "nonzero": ("nonzero_weights", "nonzero", "kept_weights", "weights_nonzero",
                "_account.nonzero"),
    "effective": ("effective_connections", "metrics.prune.effective_connections"),
    "weights": ("weights", "total_weights", "dense_weights", "_account.weights"),
    # never plain "bits": in a sweep that is the bits-per-weight axis
    "total_bits": ("total_bits", "_account.total_bits", "bits_breakdown.total",
                   "account.total_bits", "account.total", "bits.total_bits", "bits.total"),
}
#: Objects in a row that hold its bit account, most detailed first (else the row itself is
#: searched). ``_account`` is the bits stage's account.json, attached by :func:`collect`.
ACCOUNT_KEYS = ("_account", "bits_breakdown", "account", "bits", "bit_account", "breakdown")
#: Where a sweep keeps stage directories (relative to RUN), and a bits stage its account.
STAGES_DIR = "stages"
ACCOUNT_FILE = "account.json"
#: Bit categories, in stacking order. Each category is a tuple of alias groups: every group
#: adds its first present key (so "codebook" + "scales" add up, "values"/"value_bits" do
#: not double-count). Looked up at the account's top level, else summed over its layers.
BIT_PARTS: dict[str, tuple[tuple[str, ...], ...]] = {
    "values": (("values", "value_bits", "values_bits"),),
    "positions": (("positions", "position_bits", "position", "positions_bits",
                   "index_bits"),),
    "codebook": (("codebook", "codebook_bits"), ("scales", "scale_bits", "scales_bits")),
    "non-weight": (("non_weight", "nonweight", "non_weight_bits", "nonweight_bits"),),
    "header": (("header", "header_bits", "shapes", "shape_bits"),),
}
#: Per-layer information: where layers are, and the keys read from each layer.
LAYER_KEYS: dict[str, tuple[str, ...]] = {
    "container": ("layers", "per_layer"),
    "name": ("name", "layer"),
    "sparsity": ("sparsity", "zero_frac"),
    "nonzero": ("nonzero", "nonzero_weights", "kept"),
    "numel": ("numel", "n_weights", "weights", "size"),
    # row-level {layer: sparsity} shortcuts
    "mapping": ("layer_sparsity", "sparsity_per_layer", "per_layer_sparsity"),
    # row-level {layer: effective connections} (leanbits.prune.search.measure), read
    # against {layer: numel} that collect() attaches as "_numel" from the source snapshot
    "connections": ("connections",),
}
#: Keys of a ``profile.json`` object that hold its rows (a bare list is the rows itself).
PROFILE_ROW_KEYS = ("rows", "profile", "points", "results", "levels")
#: Keys of a ``profile.json`` object naming the snapshot it profiled (for head and curves).
PROFILE_SOURCE_KEYS = ("source", "snapshot")
#: Keys of ``metrics.jsonl`` records (leanbits.train), first present wins. The eval-mode
#: loss / accuracy on a training subset comes before the running one: it is the one
#: comparable with the validation numbers.
EPOCH_KEYS: dict[str, tuple[str, ...]] = {
    "epoch": ("epoch",),
    "train_loss": ("train_eval_loss", "train_loss"),
    "train_acc": ("train_eval_acc", "train_acc"),
    "val_loss": ("val_loss",),
    "val_acc": ("val_acc",),
    "gap_acc": ("gap_acc",),
    "mean_abs_output": ("mean_abs_output",),
    "layers": ("layers",),          # {layer: {l2_norm, max_abs, zero_frac, numel}}
    "dead_units": ("dead_units",),  # {activation module: units that never fire}
    # per-layer statistics inside "layers"
    "l2_norm": ("l2_norm",),
    "max_abs": ("max_abs",),
    "zero_frac": ("zero_frac",),
    "numel": ("numel",),
}


def ep(record: Mapping[str, Any], quantity: str) -> float | None:
    """A number from a metrics.jsonl record (or one of its layers) by :data:`EPOCH_KEYS`."""
    return lookup(record, EPOCH_KEYS[quantity], numeric=True)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def _get_path(obj: Mapping[str, Any], name: str) -> Any:
    if name in obj:
        return obj[name]
    cur: Any = obj
    for part in name.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def lookup(row: Mapping[str, Any], names: Iterable[str], numeric: bool = False) -> Any:
    """The value of the first of ``names`` present in ``row`` (dotted names go deeper).

    Args:
        row: a result or profile row.
        names: candidate keys, in order of preference (e.g. ``ROW_KEYS["head"]``).
        numeric: accept only numbers (bools excluded).

    Returns:
        The value, or None when no candidate gives one.

    Example:
        >>> lookup({"axes": {"head": "llr"}}, ROW_KEYS["head"])
        'llr'
    """
    for name in names:
        value = _get_path(row, name)
        if numeric:
            value = _number(value)
        if value is not None:
            return value
    return None


def get(row: Mapping[str, Any], quantity: str) -> Any:
    """``lookup`` of one quantity of :data:`ROW_KEYS`; numbers only for numeric quantities."""
    numeric = quantity not in ("label", "head", "method")
    value = lookup(row, ROW_KEYS[quantity], numeric=numeric)
    if value is None and quantity == "nonzero":
        # A row that states only its sparsity and size still says how many weights remain.
        s, n = get(row, "sparsity"), get(row, "weights")
        if s is not None and n is not None:
            value = round((1.0 - s) * n)
    if value is None and quantity == "total_bits":
        acct = account_of(row)
        if acct is not row:
            value = lookup(acct, ("total", "total_bits"), numeric=True)
    return value


def account_of(row: Mapping[str, Any]) -> Mapping[str, Any]:
    """The object in ``row`` holding its bit account (the row itself when none is nested)."""
    for key in ACCOUNT_KEYS:
        value = row.get(key)
        if isinstance(value, Mapping):
            return value
    return row


def layers_of(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """``{layer name: layer dict}`` from ``obj["layers"]`` (a dict, or a list of named dicts)."""
    container = lookup(obj, LAYER_KEYS["container"])
    out: dict[str, Mapping[str, Any]] = {}
    if isinstance(container, Mapping):
        out = {str(k): v for k, v in container.items() if isinstance(v, Mapping)}
    elif isinstance(container, list):
        for i, item in enumerate(container):
            if isinstance(item, Mapping):
                out[str(lookup(item, LAYER_KEYS["name"]) or f"layer{i}")] = item
    return out


def bit_breakdown(row: Mapping[str, Any]) -> dict[str, float] | None:
    """Bits per category of :data:`BIT_PARTS` (plus ``other`` when the parts fall short of
    the row's total), or None when the row has no breakdown.

    Example:
        >>> bit_breakdown({"total_bits": 130, "bits": {"values": 100, "header": 20}})
        {'values': 100, 'header': 20, 'other': 10}
    """
    acct = account_of(row)
    layers = layers_of(acct)
    out: dict[str, float] = {}
    for part, groups in BIT_PARTS.items():
        total: float | None = None
        for aliases in groups:
            value = lookup(acct, aliases, numeric=True)
            if value is None and layers:
                per_layer = [lookup(d, aliases, numeric=True) for d in layers.values()]
                if any(v is not None for v in per_layer):
                    value = sum(v for v in per_layer if v is not None)
            if value is not None:
                total = (total or 0) + value
        if total is not None:
            out[part] = total
    if not out:
        return None
    grand = get(row, "total_bits")
    # Be honest about bits no category claims: show them rather than drop them.
    if grand is not None and grand - sum(out.values()) > 0.5:
        out["other"] = grand - sum(out.values())
    return out


def layer_breakdowns(row: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Per layer: bits per category (only categories a layer states)."""
    out: dict[str, dict[str, float]] = {}
    for name, d in layers_of(account_of(row)).items():
        parts: dict[str, float] = {}
        for part, groups in BIT_PARTS.items():
            values = [lookup(d, aliases, numeric=True) for aliases in groups]
            if any(v is not None for v in values):
                parts[part] = sum(v for v in values if v is not None)
        if parts:
            out[name] = parts
    return out


def layer_sparsity(row: Mapping[str, Any]) -> dict[str, float]:
    """Per layer: the fraction of weights that are zero (empty when the row does not say).

    Read from a ``{layer: sparsity}`` mapping, else from per-layer dicts (``sparsity``,
    ``zero_frac`` or ``1 - nonzero / numel``) of the row, then of its bit account, else
    from ``{layer: effective connections}`` against the layer sizes in ``_numel`` (then
    weights into or out of dead units count as removed too).
    """
    mapping = lookup(row, LAYER_KEYS["mapping"])
    if isinstance(mapping, Mapping):
        return {str(k): float(v) for k, v in mapping.items() if _number(v) is not None}
    for source in (row, account_of(row)):
        out: dict[str, float] = {}
        for name, d in layers_of(source).items():
            s = lookup(d, LAYER_KEYS["sparsity"], numeric=True)
            if s is None:
                nz = lookup(d, LAYER_KEYS["nonzero"], numeric=True)
                n = lookup(d, LAYER_KEYS["numel"], numeric=True)
                if nz is not None and n:
                    s = 1.0 - nz / n
            if s is not None:
                out[name] = float(s)
        if out:
            return out
    conns, numel = lookup(row, LAYER_KEYS["connections"]), row.get("_numel")
    if isinstance(conns, Mapping) and isinstance(numel, Mapping):
        return {str(k): 1.0 - c / numel[k] for k, c in conns.items()
                if _number(c) is not None and _number(numel.get(k))}
    return {}


# ----------------------------------------------------------------------------- pure helpers
def pareto_indices(points: Sequence[tuple[float | None, float | None]]) -> list[int]:
    """Indices of the Pareto-optimal ``(bits, accuracy)`` points, fewest bits first.

    Uses :func:`leanbits.sweep.frontier.pareto_front`, so the report marks exactly the
    frontier the sweep computes.
    """
    from leanbits.sweep.frontier import pareto_front

    return pareto_front(points)


def spread(items: Sequence[Any], k: int) -> list[Any]:
    """Up to ``k`` items evenly spaced over ``items``, first and last included.

    Example:
        >>> spread(list(range(10)), 4)
        [0, 3, 6, 9]
    """
    if k <= 0 or not items:
        return []
    if len(items) <= k:
        return list(items)
    if k == 1:
        return [items[-1]]
    idx = sorted({round(i * (len(items) - 1) / (k - 1)) for i in range(k)})
    return [items[i] for i in idx]


def accuracy_key(rows: Sequence[Mapping[str, Any]]) -> str | None:
    """``"test_acc"`` when any row has it, else ``"val_acc"`` when any has that, else None."""
    for key in ("test_acc", "val_acc"):
        if any(get(r, key) is not None for r in rows):
            return key
    return None


def point_label(row: Mapping[str, Any], index: int,
                axes_shown: Iterable[str] | None = None) -> str:
    """A short readable name of a row: its own name, else its sweep axes (only
    ``axes_shown`` when given), else what it is."""
    label = get(row, "label")
    if label is not None:
        return str(label)
    axes = row.get("axes")
    if isinstance(axes, Mapping) and axes:
        keys = list(axes) if axes_shown is None else [k for k in axes if k in set(axes_shown)]
        return ", ".join(f"{k}={_short(axes[k])}" for k in keys or axes)
    parts = [str(v) for v in (get(row, "head"), get(row, "method")) if v is not None]
    s = get(row, "sparsity")
    if s is not None:
        parts.append(f"s={s:.3g}")
    return " ".join(parts) or f"point {index}"


def point_labels(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """:func:`point_label` of each row, naming only the sweep axes that differ between rows
    (an axis with one value says nothing and makes every label longer).

    Example:
        >>> point_labels([{"axes": {"head": "llr", "bits": 2}},
        ...               {"axes": {"head": "llr", "bits": 4}}])
        ['bits=2', 'bits=4']
    """
    values: dict[str, set[str]] = {}
    for r in rows:
        axes = r.get("axes")
        if isinstance(axes, Mapping):
            for k, v in axes.items():
                values.setdefault(k, set()).add(repr(v))
    varying = [k for k, vs in values.items() if len(vs) > 1]
    return [point_label(r, i, varying) for i, r in enumerate(rows)]


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def total_l2(layers: Mapping[str, Mapping[str, Any]]) -> float | None:
    """L2 norm of all weights together, from per-layer norms: sqrt(sum of squares)."""
    norms = [ep(d, "l2_norm") for d in layers.values()]
    if not norms or any(n is None for n in norms):
        return None
    return math.sqrt(sum(n * n for n in norms))


def zero_fraction(layers: Mapping[str, Mapping[str, Any]]) -> float | None:
    """Fraction of all weights that are exactly zero (per-layer fractions weighted by size)."""
    pairs = [(ep(d, "zero_frac"), ep(d, "numel")) for d in layers.values()]
    if not pairs or any(z is None or n is None for z, n in pairs):
        return None
    total = sum(n for _, n in pairs)
    return sum(z * n for z, n in pairs) / total if total else None


# ----------------------------------------------------------------------------- reading
@dataclass
class TrainingRun:
    """One snapshot's per-epoch history (``metrics.jsonl``)."""

    label: str
    head: str | None
    path: Path
    epochs: list[dict[str, Any]]
    final: dict[str, Any] = field(default_factory=dict)
    #: display name (e.g. the sweep axes of its train stage); None: derived from head/label
    name: str | None = None


@dataclass
class RunData:
    """Everything reportable found under a root directory."""

    root: Path
    runs: list[TrainingRun] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    profile: list[dict[str, Any]] = field(default_factory=list)
    configs: list[tuple[str, str, str]] = field(default_factory=list)  # title, lang, text
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.runs or self.results or self.profile)


def _walk(root: Path, max_depth: int) -> list[Path]:
    """Directories under ``root`` (itself included), sorted, down to ``max_depth``."""
    found = []
    for d, subdirs, _ in os.walk(root):
        depth = len(Path(d).relative_to(root).parts)
        # Hidden directories and our own figures never hold runs; pruning them keeps big
        # run trees fast to scan.
        subdirs[:] = sorted(s for s in subdirs if not s.startswith(".") and s != FIGURES_DIR
                            and depth < max_depth)
        found.append(Path(d))
    return sorted(found)


def _rel(path: Path, root: Path) -> str:
    rel = path.relative_to(root).as_posix()
    return root.resolve().name if rel == "." else rel


def _read_json(path: Path, notes: list[str]) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        notes.append(f"{path.name}: unreadable, skipped ({exc})")
        return None


def read_jsonl(path: Path, notes: list[str]) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file; a bad line (e.g. a killed writer's last, half
    written line) is skipped with a note instead of failing the whole report."""
    records: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        notes.append(f"{path}: unreadable, skipped ({exc})")
        return records
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            notes.append(f"{path.name} line {n}: not JSON, skipped")
            continue
        if isinstance(obj, dict):
            records.append(obj)
    return records


def _rows_of(obj: Any) -> list[dict[str, Any]]:
    if isinstance(obj, list):
        return [r for r in obj if isinstance(r, dict)]
    if isinstance(obj, Mapping):
        for key in PROFILE_ROW_KEYS:
            if isinstance(obj.get(key), list):
                return [r for r in obj[key] if isinstance(r, dict)]
    return []


def _head_of_snapshot(d: Path) -> str | None:
    """The output head a snapshot was trained with (config.toml, else model.json)."""
    try:
        if paths.config(d).is_file():
            head = tomllib.loads(paths.config(d).read_text(encoding="utf-8")).get(
                "train", {}).get("head")
            if head:
                return str(head)
        if paths.model_json(d).is_file():
            head = json.loads(paths.model_json(d).read_text(encoding="utf-8")).get("head", {})
            if isinstance(head, Mapping) and head.get("kind"):
                return str(head["kind"])
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError,
            AttributeError):
        pass
    return None


def _config_text(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if len(text) > MAX_CONFIG_CHARS:
        text = text[:MAX_CONFIG_CHARS] + f"\n# ... cut at {MAX_CONFIG_CHARS} characters\n"
    return text


def _read_run(d: Path, label: str, notes: list[str]) -> TrainingRun | None:
    """The training history of snapshot directory ``d`` (None when it has no epochs)."""
    log = paths.metrics_log(d)
    epochs = [r for r in read_jsonl(log, notes) if ep(r, "epoch") is not None]
    if not epochs:
        notes.append(f"{label}/{log.name}: no epoch records, skipped")
        return None
    final = _read_json(paths.metrics(d), notes) if paths.metrics(d).is_file() else None
    return TrainingRun(label, _head_of_snapshot(d), d, epochs,
                       final if isinstance(final, dict) else {})


def _layer_sizes(snap: Path) -> dict[str, int] | None:
    """``{layer: weights}`` of a snapshot, from the last record of its metrics.jsonl."""
    log = paths.metrics_log(snap)
    if not log.is_file():
        return None
    records = read_jsonl(log, [])
    layers = _layers(records[-1]) if records else {}
    sizes = {k: int(ep(d, "numel")) for k, d in layers.items()
             if isinstance(d, Mapping) and ep(d, "numel")}
    return sizes or None


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _stage_account(row: Mapping[str, Any], root: Path) -> dict[str, Any] | None:
    """The bit account (account.json) of a sweep row's bits stage, when it is on disk."""
    rel = lookup(row, ("stages.bits",))
    if not isinstance(rel, str):
        return None
    p = root / STAGES_DIR / rel / ACCOUNT_FILE
    if not p.is_file():
        return None
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


def collect(root: str | os.PathLike[str]) -> RunData:
    """Read every training history, result row, profile row and config under ``root``.

    Args:
        root: a sweep run directory, a snapshot directory or a profile output directory.

    Returns:
        The collected :class:`RunData` (possibly empty; :func:`build_report` rejects that).

    Raises:
        LeanbitsError: ``root`` is not a directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise LeanbitsError(f"{root} is not a directory; pass a run, snapshot or profile "
                            "directory")
    data = RunData(root=root)
    seen_configs: dict[str, int] = {}
    seen_runs: set[Path] = set()

    def add_config(title: str, path: Path, lang: str) -> None:
        text = _config_text(path)
        if text is None or not text.strip():
            return
        if text in seen_configs:  # identical configs are listed once, with every user
            i = seen_configs[text]
            t, lg, tx = data.configs[i]
            data.configs[i] = (f"{t}, {title}", lg, tx)
            return
        seen_configs[text] = len(data.configs)
        data.configs.append((title, lang, text))

    def add_run(d: Path, label: str) -> None:
        if d.resolve() in seen_runs:
            return
        seen_runs.add(d.resolve())
        run = _read_run(d, label, data.notes)
        if run is not None:
            data.runs.append(run)
            if paths.config(d).is_file():
                add_config(f"{label}/{paths.config(d).name}", paths.config(d), "toml")

    # Experiment files at the top level (e.g. a sweep's experiment.toml): what produced the
    # whole directory. A snapshot's own config.toml is added with its run below.
    for p in sorted(root.iterdir()):
        if p.is_file() and p.name != paths.config(root).name and (
                p.suffix == ".toml" or (p.suffix == ".json" and p.stem.startswith("experiment"))):
            add_config(p.name, p, p.suffix.lstrip("."))

    for d in _walk(root, MAX_DEPTH):
        rel = _rel(d, root)
        if paths.metrics_log(d).is_file():
            add_run(d, rel)
        prof = d / PROFILE_FILE
        if not prof.is_file():
            continue
        obj = _read_json(prof, data.notes)
        rows = _rows_of(obj)
        if not rows and obj is not None:
            data.notes.append(f"{rel}/{PROFILE_FILE}: no rows found under "
                              f"{', '.join(PROFILE_ROW_KEYS)} (or a top-level list)")
        head, numel = None, None
        if isinstance(obj, Mapping):
            head = lookup(obj, ROW_KEYS["head"])
            src = lookup(obj, PROFILE_SOURCE_KEYS)
            if isinstance(src, str):
                snap = Path(src) if Path(src).is_absolute() else d / src
                head = head or _head_of_snapshot(snap)
                numel = _layer_sizes(snap)
                # The profiled snapshot's training curves belong in its report, also when
                # it lives outside the profile directory.
                if paths.metrics_log(snap).is_file() and not _inside(snap, root):
                    add_run(snap, snap.resolve().name)
            cfg = obj.get("config")
            if isinstance(cfg, Mapping) and cfg:
                data.configs.append((f"{rel}/{PROFILE_FILE} (config)", "json",
                                     json.dumps(cfg, indent=2, sort_keys=True)))
        extra = {**({"_head": head} if head is not None else {}),
                 **({"_numel": numel} if numel else {})}
        for r in rows:
            data.profile.append({**r, "_source": rel, **extra})

    for name in RESULTS_FILES:
        p = root / name
        if p.is_file():
            rows = read_jsonl(p, data.notes) if name.endswith(".jsonl") \
                else _rows_of(_read_json(p, data.notes))
            for r in rows:
                acct = _stage_account(r, root)
                data.results.append({**r, "_source": name,
                                     **({"_account": acct} if acct else {})})
            break
    return data


def _head(row: Mapping[str, Any]) -> str | None:
    h = get(row, "head")
    return h if h is not None else row.get("_head")


# ----------------------------------------------------------------------------- document
@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Note:
    """Something the reader should know (a skipped section, an unreadable file)."""

    text: str


@dataclass(frozen=True)
class Figure:
    name: str
    png: bytes
    caption: str


@dataclass(frozen=True)
class Table:
    headers: Sequence[str]
    rows: Sequence[Sequence[Any]]
    title: str | None = None


@dataclass(frozen=True)
class Code:
    text: str
    language: str = ""
    title: str | None = None


Block = Heading | Text | Note | Figure | Table | Code


@dataclass
class Report:
    """A report as blocks, rendered to Markdown by :func:`to_markdown` and to HTML by
    :func:`leanbits.report.html.to_html`."""

    title: str
    blocks: list[Block] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def figures(self) -> list[Figure]:
        return [b for b in self.blocks if isinstance(b, Figure)]

    def sections(self) -> list[str]:
        return [b.text for b in self.blocks if isinstance(b, Heading) and b.level == 2]


def _pct(v: float | None) -> float | None:
    return None if v is None else 100.0 * v


def _series(epochs: Sequence[Mapping[str, Any]], fn) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for rec in epochs:
        y = fn(rec)
        if y is not None:
            xs.append(int(ep(rec, "epoch")))
            ys.append(y)
    return xs, ys


def _last_layer(rec: Mapping[str, Any]) -> Mapping[str, Any] | None:
    layers = lookup(rec, EPOCH_KEYS["layers"])
    if isinstance(layers, Mapping) and layers:
        return list(layers.values())[-1]
    return None


def _layers(rec: Mapping[str, Any]) -> Mapping[str, Mapping[str, Any]]:
    layers = lookup(rec, EPOCH_KEYS["layers"])
    return layers if isinstance(layers, Mapping) else {}


def _max_abs(rec: Mapping[str, Any]) -> float | None:
    vals = [ep(d, "max_abs") for d in _layers(rec).values()]
    vals = [v for v in vals if v is not None]
    return max(vals) if vals else None


def _train_loss(rec: Mapping[str, Any]) -> float | None:
    return ep(rec, "train_loss")


def _train_acc(rec: Mapping[str, Any]) -> float | None:
    return ep(rec, "train_acc")


def _gap(rec: Mapping[str, Any]) -> float | None:
    g = ep(rec, "gap_acc")
    if g is None:
        t, v = _train_acc(rec), ep(rec, "val_acc")
        g = None if t is None or v is None else t - v
    return _pct(g)


def _run_styles(runs: Sequence[TrainingRun]) -> list[tuple[str, str, str]]:
    """(colour, linestyle, marker) per run: colour by head; linestyle and marker tell the
    runs of one head apart."""
    from leanbits.report import plots

    others: dict[str | None, int] = {}
    per_head: dict[str | None, int] = {}
    out = []
    for run in runs:
        if run.head not in plots.HEAD_COLORS and run.head not in others:
            others[run.head] = len(others)
        color = plots.color_for(run.head, others.get(run.head, 0))
        n = per_head.get(run.head, 0)
        per_head[run.head] = n + 1
        out.append((color, plots.linestyle_for(n), plots.marker_for(n)))
    return out


def _run_name(run: TrainingRun, runs: Sequence[TrainingRun]) -> str:
    if run.name:
        return run.name
    if run.head and sum(r.head == run.head for r in runs) == 1:
        return run.head if len(runs) > 1 else f"{run.head} ({run.label})"
    return f"{run.head} ({run.label})" if run.head else run.label


def name_runs(runs: Sequence[TrainingRun], results: Sequence[Mapping[str, Any]]) -> None:
    """Name each sweep training run as its network is named in the result groups (e.g.
    ``lenet5 / llr``) rather than by its stage directory."""
    if not results:
        return
    by_stage = {}
    for r, name in zip(results, group_names(results), strict=True):
        key = lookup(r, ("stages.train",))
        if isinstance(key, str) and name != "all points":
            by_stage[f"{STAGES_DIR}/{key}"] = name
    for run in runs:
        run.name = by_stage.get(run.label, run.name)


def training_section(runs: Sequence[TrainingRun], notes: list[str]) -> list[Block]:
    """Weight size, output magnitude, losses and the train-validation gap per epoch."""
    from leanbits.report import plots

    blocks: list[Block] = [Heading("Training")]
    if not runs:
        notes.append("Training curves: skipped - no metrics.jsonl with epoch records found.")
        return []
    styles = _run_styles(runs)
    names = [_run_name(r, runs) for r in runs]

    def series(fn) -> list[plots.Series]:
        out = []
        for run, name, (color, ls, marker) in zip(runs, names, styles, strict=True):
            xs, ys = _series(run.epochs, fn)
            if xs:
                # Markers only on short runs: there a line alone may be a single dot.
                out.append(plots.Series(name, xs, ys, color, ls,
                                        marker if len(xs) < 4 else None))
        return out

    has_layers = any(_layers(rec) for run in runs for rec in run.epochs)
    if has_layers:
        panels = [
            plots.Panel("All weights: L2 norm", "epoch", "||w||₂ (weight units)",
                        series(lambda r: total_l2(_layers(r))), logy=True),
            plots.Panel("Output layer: L2 norm", "epoch", "||w||₂ (weight units)",
                        series(lambda r: ep(_last_layer(r) or {}, "l2_norm")),
                        logy=True),
            plots.Panel("Largest weight", "epoch", "max |w| (weight units)",
                        series(_max_abs), logy=True),
            plots.Panel("Exactly-zero weights", "epoch", "zero weights (%)",
                        series(lambda r: _pct(zero_fraction(_layers(r))))),
        ]
        blocks.append(Figure("weights", plots.line_figure(panels, "Weight size per epoch"),
                             "Weight L2 norm (all layers and output layer), largest |w| and "
                             "fraction of exactly-zero weights per epoch. Claim 1: softmax "
                             "keeps growing its weights after the data are fit."))
    else:
        notes.append("Weight-size plot: skipped - epoch records have no 'layers' "
                     "(l2_norm, max_abs, zero_frac, numel).")
    out_series = series(lambda r: ep(r, "mean_abs_output"))
    if out_series:
        blocks.append(Figure("outputs", plots.line_figure([plots.Panel(
            "Output magnitude (validation set)", "epoch", "mean |output| (logit / LLR, nats)",
            out_series)]), "Mean absolute output - logit (softmax) or LLR (LLR heads) - on "
            "the validation set per epoch."))
    else:
        notes.append("Output-magnitude plot: skipped - no 'mean_abs_output' in epoch records.")

    loss_panels = [
        plots.Panel("Training loss", "epoch", "loss (nats per example)", series(_train_loss),
                    logy=True),
        plots.Panel("Validation loss", "epoch", "loss (nats per example)",
                    series(lambda r: ep(r, "val_loss")), logy=True),
        plots.Panel("Accuracy gap: training − validation", "epoch", "gap (percentage points)",
                    series(_gap)),
        plots.Panel("Validation accuracy", "epoch", "accuracy (%)",
                    series(lambda r: _pct(ep(r, "val_acc")))),
    ]
    if any(p.series for p in loss_panels):
        blocks.append(Figure("loss", plots.line_figure(loss_panels, "Overfitting"),
                             "Training loss (eval mode on a training subset where recorded) "
                             "and validation loss, the train - validation accuracy gap, and "
                             "validation accuracy. Claims 2 and 3 are about this gap."))
    else:
        notes.append("Loss plot: skipped - no train_loss / val_loss in epoch records.")

    headers = ["epoch", "train loss", "val loss", "train acc", "val acc", "gap (pp)",
               "mean |out|", "||w|| all", "||w|| out", "max |w|", "zero %"]
    for run, name in zip(runs, names, strict=True):
        rows = []
        for r in run.epochs:
            last = _last_layer(r) or {}
            rows.append([int(ep(r, "epoch")), _train_loss(r), ep(r, "val_loss"),
                         _train_acc(r), ep(r, "val_acc"), _gap(r),
                         ep(r, "mean_abs_output"), total_l2(_layers(r)),
                         ep(last, "l2_norm"), _max_abs(r),
                         _pct(zero_fraction(_layers(r)))])
        where = "" if run.label in name else f" ({run.label})"
        blocks.append(Table(headers, rows, f"Per epoch: {name}{where}"))
        final_layers = _layers(run.epochs[-1])
        if final_layers:
            blocks.append(Table(
                ["layer", "weights", "L2 norm", "max |w|", "zero %"],
                [[k, ep(d, "numel"), ep(d, "l2_norm"),
                  ep(d, "max_abs"), _pct(ep(d, "zero_frac"))]
                 for k, d in final_layers.items()],
                f"Per layer after the last epoch: {name}"))
        dead = lookup(run.epochs[-1], EPOCH_KEYS["dead_units"])
        if isinstance(dead, Mapping) and dead:
            blocks.append(Table(["activation", "dead units"], [[k, v] for k, v in dead.items()],
                                f"Units that never fire on the validation set: {name}"))
    finals = [(name, run.final) for run, name in zip(runs, names, strict=True) if run.final]
    if finals:
        keys = [k for k in ("val_acc", "test_acc", "params", "weights", "nonzero_weights",
                            "epochs_completed", "train_time_s")
                if any(k in f for _, f in finals)]
        blocks.insert(1, Table(["run", *keys], [[n, *(f.get(k) for k in keys)]
                                                for n, f in finals], "Final metrics"))
    return blocks


def _network(row: Mapping[str, Any]) -> Any:
    """What identifies the trained network a row derives from: its sweep train stage, else
    (source file, head)."""
    train = lookup(row, ("stages.train",))
    return train if isinstance(train, str) else (row.get("_source"), _head(row))


def group_names(rows: Sequence[Mapping[str, Any]], by_method: bool = False) -> list[str]:
    """A group name per row: one group per trained network (and per pruning method when
    ``by_method``), named by what tells the networks apart.

    A network is named by the sweep axes that are constant within it but differ between
    networks (e.g. ``lenet5 / llr``); without axes, by its head, then by its source file.

    Example:
        >>> group_names([{"axes": {"head": "llr", "bits": 2}, "stages": {"train": "a"}},
        ...              {"axes": {"head": "softmax", "bits": 2}, "stages": {"train": "b"}}])
        ['llr', 'softmax']
    """
    nets = [_network(r) for r in rows]
    members: dict[Any, list[Mapping[str, Any]]] = {}
    for n, r in zip(nets, rows, strict=True):
        members.setdefault(n, []).append(r)

    def axes(r: Mapping[str, Any]) -> Mapping[str, Any]:
        a = r.get("axes")
        return a if isinstance(a, Mapping) else {}

    keys: list[str] = []
    for r in rows:
        keys += [k for k in axes(r) if k not in keys]
    constant: dict[Any, dict[str, str]] = {}
    for n, rs in members.items():
        constant[n] = {k: repr(axes(rs[0]).get(k)) for k in keys
                       if len({repr(axes(r).get(k)) for r in rs}) == 1}
    telling = [k for k in keys
               if all(k in c for c in constant.values())
               and len({c[k] for c in constant.values()}) > 1]
    names: dict[Any, str] = {}
    for n, rs in members.items():
        if telling:
            names[n] = " / ".join(_short(axes(rs[0])[k]) for k in telling)
        elif len(members) == 1:
            names[n] = ""
        else:
            heads = {_head(r) for r in rows}
            head = _head(rs[0])
            src = rs[0].get("_source")
            names[n] = " / ".join(str(p) for p in (
                src if len({r.get("_source") for r in rows}) > 1 else None,
                head if len(heads) > 1 else None) if p is not None) or str(n)
    out = []
    for n, r in zip(nets, rows, strict=True):
        parts = [names[n]]
        if by_method and get(r, "method") is not None:
            parts.append(str(get(r, "method")))
        out.append(" / ".join(p for p in parts if p) or "all points")
    return out


def stage_rows(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Sweep result rows -> one row per pruned (or dense) model, before quantization.

    A sweep row's accuracy is that of its packed model, so a network pruned once appears
    once per bit width; the pruning profile wants the pruned model itself, which the row
    keeps in ``metrics.prune``. The dense model (``metrics.train``) starts the line of each
    method that pruned it (sparsity 0), or stands alone as method ``dense``. Rows without
    such metrics are passed through unchanged.
    """
    def stage(r: Mapping[str, Any], kind: str) -> tuple[Mapping[str, Any] | None, Any]:
        m, st = r.get("metrics"), r.get("stages")
        if not isinstance(m, Mapping) or not isinstance(st, Mapping):
            return None, None
        sm = m.get(kind)
        return (sm, st.get(kind)) if isinstance(sm, Mapping) and st.get(kind) else (None, None)

    methods: dict[Any, list[Any]] = {}  # train stage -> methods that pruned it
    for r in results:
        if stage(r, "prune")[0] is not None:
            ms = methods.setdefault(stage(r, "train")[1], [])
            if get(r, "method") not in ms:
                ms.append(get(r, "method"))
    out: list[dict[str, Any]] = []
    seen: set[Any] = set()
    for r in results:
        train, train_key = stage(r, "train")
        if train is None:
            out.append(dict(r))
            continue
        base = {"stages": {"train": train_key}, "axes": r.get("axes"),
                "_source": r.get("_source"),
                **({"_head": _head(r)} if _head(r) is not None else {})}
        pruned, prune_key = stage(r, "prune")
        if pruned is not None:
            if ("prune", prune_key) not in seen:
                seen.add(("prune", prune_key))
                out.append({**pruned, **base, "method": get(r, "method")})
            continue
        for method in methods.get(train_key) or ["dense"]:
            if ("train", train_key, method) not in seen:
                seen.add(("train", train_key, method))
                out.append({**train, **base, "method": method, "sparsity": 0.0})
    return out


def _profile_points(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Rows that can be drawn as accuracy against nonzero weights."""
    acc = accuracy_key(rows)
    return [r for r in rows if acc and get(r, "nonzero") is not None
            and get(r, acc) is not None]


def prune_section(rows: Sequence[Mapping[str, Any]], from_profile: bool,
                  notes: list[str]) -> list[Block]:
    """Accuracy against nonzero weights (and effective connections), one line per method."""
    from leanbits.report import plots

    acc = accuracy_key(rows)
    usable = _profile_points(rows)
    if not usable:
        where = "profile.json rows" if from_profile else "result rows"
        notes.append(f"Pruning profile: skipped - no {where} with "
                     f"{ROW_KEYS['nonzero'][0]} and test_acc / val_acc.")
        return []
    labels = group_names(usable, by_method=True)
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for label, r in zip(labels, usable, strict=True):
        groups.setdefault(label, []).append(r)
    acc_label = f"{'test' if acc == 'test_acc' else 'validation'} accuracy (%)"
    panels = []
    several_heads = len({_head(r) for r in usable}) > 1
    for key, xlabel in (("nonzero", "nonzero weights (count)"),
                        ("effective", "effective connections (count)")):
        series = []
        for i, (label, rs) in enumerate(groups.items()):
            pts = sorted((get(r, key), _pct(get(r, acc))) for r in rs
                         if get(r, key) is not None)
            if pts:
                xs, ys = zip(*pts, strict=True)
                heads = {_head(r) for r in rs}
                # Colour by head (as in every figure) when lines differ by head; with one
                # head the methods would all share its colour, so colour by line instead.
                color = plots.color_for(
                    heads.pop() if several_heads and len(heads) == 1 else None, i)
                series.append(plots.Series(label, xs, ys, color, marker=plots.marker_for(i)))
        if series:
            panels.append(plots.Panel(f"Accuracy against {xlabel.split(' (')[0]}", xlabel,
                                      acc_label, series, logx=True, xcounts=True))
    blocks: list[Block] = [Heading("Pruning profile")]
    blocks.append(Figure("prune_profile", plots.line_figure(panels),
                         "Accuracy against the weights kept, per pruning method (log scale). "
                         "Effective connections drop weights into or out of dead units."))
    columns = [(q, h) for q, h in (("sparsity", "sparsity"), ("nonzero", "nonzero weights"),
                                   ("effective", "effective connections"),
                                   ("val_acc", "val acc"), ("test_acc", "test acc"),
                                   ("total_bits", "total bits"))
               if any(get(r, q) is not None for r in usable)]
    table_rows = []
    for label, rs in groups.items():
        for r in sorted(rs, key=lambda r: -get(r, "nonzero")):
            table_rows.append([label, *(get(r, q) for q, _ in columns)])
    blocks.append(Table(["group", *(h for _, h in columns)], table_rows, "Pruning profile"))
    return blocks


def frontier_section(rows: Sequence[Mapping[str, Any]], notes: list[str],
                     runs: Sequence[TrainingRun]) -> list[Block]:
    """Accuracy against total bits with the Pareto frontier, bit breakdowns and per-layer
    sparsity of chosen frontier points."""
    from leanbits.report import plots

    acc = accuracy_key(rows)
    usable = [r for r in rows if get(r, "total_bits") is not None and acc
              and get(r, acc) is not None]
    blocks: list[Block] = []
    chosen: list[tuple[str, Mapping[str, Any]]] = []
    if not usable:
        notes.append("Accuracy-vs-bits frontier: skipped - no row with total_bits (or a "
                     "bit account with a total) and test_acc / val_acc.")
    else:
        pts = [(get(r, "total_bits"), get(r, acc)) for r in usable]
        front = pareto_indices(pts)
        on_front = set(front)
        labels = point_labels(usable)
        groups_of = group_names(usable)
        groups: dict[str, list[int]] = {}
        for i, g in enumerate(groups_of):
            groups.setdefault(g, []).append(i)
        pgroups = []
        for gi, (g, idx) in enumerate(groups.items()):
            heads = {_head(usable[i]) for i in idx}
            head = heads.pop() if len(heads) == 1 else None
            gpts = [(pts[i][0], 100 * pts[i][1]) for i in idx]
            gfront = [gpts[j] for j in pareto_indices(gpts)]
            pgroups.append(plots.PointGroup(g, gpts, gfront, plots.color_for(head, gi),
                                            plots.marker_for(gi)))
        acc_name = "test" if acc == "test_acc" else "validation"
        blocks += [Heading("Accuracy against total bits"), Figure(
            "frontier",
            plots.frontier_figure(pgroups, [(pts[i][0], 100 * pts[i][1]) for i in front],
                                  "total bits (log scale)", f"{acc_name} accuracy (%)",
                                  "Accuracy against total representation bits"),
            "Every evaluated point; lines are each group's Pareto frontier (step: no "
            "interpolation between measured points), circles the overall frontier. "
            "Claim 5 compares models by this trade-off.")]
        order = sorted(range(len(usable)), key=lambda i: (pts[i][0], -pts[i][1]))
        blocks.append(Table(
            ["point", "group", "total bits", "bits/weight", "nonzero weights", "val acc",
             "test acc", "frontier"],
            [[labels[i], groups_of[i], get(usable[i], "total_bits"),
              _per_weight(usable[i]), get(usable[i], "nonzero"), get(usable[i], "val_acc"),
              get(usable[i], "test_acc"), "yes" if i in on_front else ""] for i in order],
            "All points, fewest bits first"))
        if len(groups) > 1:
            blocks.append(_levels_table(groups, pts, acc_name))
        with_parts = [i for i in front if bit_breakdown(usable[i])]
        if not with_parts:
            with_parts = [i for i in order if bit_breakdown(usable[i])]
        chosen = [(labels[i], usable[i]) for i in spread(with_parts, CHOSEN_POINTS)]
        if not chosen:
            notes.append("Bit breakdown: skipped - rows have no per-category bits (expected "
                         f"under {', '.join(ACCOUNT_KEYS)}: "
                         f"{', '.join(g[0] for gs in BIT_PARTS.values() for g in gs)}).")
    if chosen:
        blocks += _breakdown_blocks(chosen)
    sparsity_points = sparsity_of([r for _, r in chosen])
    if not sparsity_points:
        candidates = [r for r in rows if layer_sparsity(r)]
        candidates.sort(key=lambda r: get(r, "nonzero") or 0, reverse=True)
        sparsity_points = sparsity_of(spread(candidates, CHOSEN_POINTS))
    if not sparsity_points:
        # Training with L1 or group lasso leaves exact zeros: show where they are.
        sparsity_points = [(_run_name(run, runs), {k: float(ep(d, "zero_frac")) for k, d in
                                                   _layers(run.epochs[-1]).items()
                                                   if ep(d, "zero_frac") is not None})
                           for run in runs]
        sparsity_points = [(n, s) for n, s in sparsity_points if any(s.values())]
    if sparsity_points:
        blocks += _sparsity_blocks(sparsity_points)
    else:
        notes.append("Per-layer sparsity: skipped - no row with per-layer sparsity "
                     f"({', '.join(LAYER_KEYS['container'])}: "
                     f"{', '.join(LAYER_KEYS['sparsity'] + LAYER_KEYS['nonzero'])}) and no "
                     "exactly-zero weights in training snapshots.")
    return blocks


#: accuracy levels at which groups are compared by the fewest bits that reached them
ACCURACY_LEVELS = (0.9, 0.95, 0.97, 0.98, 0.985, 0.99, 0.995)


def _levels_table(groups: Mapping[str, Sequence[int]], pts: Sequence[tuple[float, float]],
                  acc_name: str) -> Table:
    """Fewest bits each group needed to reach each accuracy level (claim 5's comparison)."""
    from leanbits.sweep.frontier import bits_for_accuracy

    best = max(p[1] for p in pts)
    levels = [lv for lv in ACCURACY_LEVELS if lv <= best] or [best]
    rows = []
    for g, idx in groups.items():
        gpts = [pts[i] for i in idx]
        cells = []
        for lv in levels:
            j = bits_for_accuracy(gpts, lv)
            cells.append(None if j is None else gpts[j][0])
        rows.append([g, *cells])
    return Table(["group", *(f">= {100 * lv:g} %" for lv in levels)], rows,
                 f"Fewest total bits reaching each {acc_name} accuracy (- = never reached)")


def sparsity_of(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, dict[str, float]]]:
    """``(label, {layer: sparsity})`` of the rows that state it, one entry per distinct
    sparsity pattern: points that differ only in bit width share their pruned model, so
    they are shown once, named by the axes they have in common.

    Example:
        >>> sparsity_of([{"axes": {"s": 0.9, "bits": 2}, "layer_sparsity": {"fc1": 0.9}},
        ...              {"axes": {"s": 0.9, "bits": 4}, "layer_sparsity": {"fc1": 0.9}},
        ...              {"axes": {"s": 0.5, "bits": 2}, "layer_sparsity": {"fc1": 0.5}}])
        [('s=0.9', {'fc1': 0.9}), ('s=0.5', {'fc1': 0.5})]
    """
    groups: dict[tuple[tuple[str, float], ...], list[Mapping[str, Any]]] = {}
    for r in rows:
        sp = layer_sparsity(r)
        if sp:
            groups.setdefault(tuple(sp.items()), []).append(r)
    shared = []
    for members in groups.values():
        axes = [m.get("axes") if isinstance(m.get("axes"), Mapping) else {} for m in members]
        common = {k: v for k, v in axes[0].items() if all(a.get(k) == v for a in axes)}
        shared.append({**members[0], "axes": common} if common else members[0])
    return [(lbl, dict(key)) for lbl, key in zip(point_labels(shared), groups, strict=True)]


def _per_weight(row: Mapping[str, Any]) -> float | None:
    bits, n = get(row, "total_bits"), get(row, "nonzero")
    return bits / n if bits is not None and n else None


def _breakdown_blocks(chosen: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Block]:
    from leanbits.report import plots

    parts = [p for p in (*BIT_PARTS, "other")
             if any(p in (bit_breakdown(r) or {}) for _, r in chosen)]
    values = {p: [(bit_breakdown(r) or {}).get(p, 0.0) for _, r in chosen] for p in parts}
    labels = [lbl for lbl, _ in chosen]
    blocks: list[Block] = [
        Heading("Where the bits go", 3),
        Figure("bits", plots.stacked_bars(labels, values, "bits",
                                          "Bit breakdown of chosen frontier points"),
               "Total bits split into weight values, sparse positions, codebooks/scales, "
               "non-weight parameters and headers, for points spread along the frontier."),
        Table(["point", *parts, "total"],
              [[lbl, *(values[p][i] for p in parts), get(r, "total_bits")]
               for i, (lbl, r) in enumerate(chosen)], "Bit breakdown (bits)"),
    ]
    for lbl, r in chosen:
        per_layer = layer_breakdowns(r)
        if per_layer:
            cols = [p for p in BIT_PARTS if any(p in d for d in per_layer.values())]
            blocks.append(Table(["layer", *cols, "sum"],
                                [[k, *(d.get(p) for p in cols), sum(d.values())]
                                 for k, d in per_layer.items()], f"Bits per layer: {lbl}"))
    return blocks


def _sparsity_blocks(points: Sequence[tuple[str, Mapping[str, float]]]) -> list[Block]:
    from leanbits.report import plots

    layers: list[str] = []
    for _, s in points:
        layers += [k for k in s if k not in layers]
    series = {lbl: [_pct(s.get(k)) for k in layers] for lbl, s in points}
    return [
        Heading("Per-layer sparsity", 3),
        Figure("sparsity", plots.grouped_bars(layers, series, "weights removed (%)",
                                              "Per-layer sparsity"),
               "Fraction of each layer's weights that are zero: pruned, or driven to exactly "
               "zero in training. Packed points: of the layer as stored (dead units "
               "removed). Profile rows: weights that are not effective connections."),
        Table(["point", *layers], [[lbl, *vals] for lbl, vals in series.items()],
              "Per-layer sparsity (% of weights zero)"),
    ]


def make_report(data: RunData) -> Report:
    """Assemble the report's blocks from collected data (renders figures, writes nothing).

    Raises:
        LeanbitsError: ``data`` holds nothing reportable.
    """
    if data.empty:
        raise LeanbitsError(
            f"{data.root}: nothing to report - no metrics.jsonl (snapshot), {PROFILE_FILE} "
            f"(leanbits profile) or {' / '.join(RESULTS_FILES)} (sweep) found within "
            f"{MAX_DEPTH} directory levels" + (f" ({'; '.join(data.notes)})"
                                               if data.notes else "")
        )
    notes = list(data.notes)
    name_runs(data.runs, data.results)
    report = Report(f"leanbits report: {data.root.resolve().name}")
    what = []
    if data.runs:
        what.append(f"{len(data.runs)} training run(s)")
    if data.profile:
        what.append(f"{len(data.profile)} profile row(s)")
    if data.results:
        what.append(f"{len(data.results)} result row(s)")
    report.blocks.append(Text(f"Source: {data.root.resolve()} - " + ", ".join(what) + "."))
    body: list[Block] = []
    body += training_section(data.runs, notes)
    # Profile rows describe pruning best; else a sweep's rows reduced to one per pruned
    # model (its bit widths collapse); raw result rows only when neither has points.
    prune_rows = data.profile or stage_rows(data.results)
    if not data.profile and not _profile_points(prune_rows):
        prune_rows = data.results
    body += prune_section(prune_rows, bool(data.profile), notes)
    body += frontier_section(data.results or data.profile, notes, data.runs)
    if data.configs:
        body.append(Heading("Configuration"))
        body += [Code(text, lang, title) for title, lang, text in data.configs]
    else:
        notes.append("Configuration: no config.toml or experiment file found.")
    if notes:
        report.blocks.append(Heading("Notes"))
        report.blocks += [Note(n) for n in notes]
    report.blocks += body
    report.notes = notes
    return report


# ----------------------------------------------------------------------------- markdown
def _fence(text: str) -> str:
    """A code fence longer than any backtick run inside ``text`` (so it cannot end early)."""
    ticks, run = 3, 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        ticks = max(ticks, run + 1)
    return "`" * ticks


def to_markdown(report: Report, figures_dir: str = FIGURES_DIR) -> str:
    """Render ``report`` as Markdown; figures are linked as ``figures_dir/<name>.png``."""
    out = [f"# {report.title}", ""]
    for b in report.blocks:
        if isinstance(b, Heading):
            out += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Text):
            out += [b.text, ""]
        elif isinstance(b, Note):
            out += [f"> **Note:** {b.text}", ""]
        elif isinstance(b, Figure):
            out += [f"![{b.name}]({figures_dir}/{b.name}.png)", "", f"*{b.caption}*", ""]
        elif isinstance(b, Table):
            if b.title:
                out += [f"**{b.title}**", ""]
            out += [markdown_table(b.headers, b.rows), ""]
        elif isinstance(b, Code):
            fence = _fence(b.text)
            if b.title:
                out += [f"**{b.title}**", ""]
            out += [fence + b.language, b.text.rstrip("\n"), fence, ""]
    return "\n".join(out)


# ----------------------------------------------------------------------------- writing
@dataclass(frozen=True)
class ReportFiles:
    """Where a report was written."""

    markdown: Path
    html: Path
    figures: tuple[Path, ...]
    sections: tuple[str, ...]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"report_md": str(self.markdown), "report_html": str(self.html),
                "figures": [str(p) for p in self.figures], "sections": list(self.sections),
                "notes": list(self.notes)}


def write_report(report: Report, out_dir: str | os.PathLike[str]) -> ReportFiles:
    """Write ``report.md`` + ``figures/*.png`` and a self-contained ``report.html``.

    Every file is written atomically; figures first, so report.md never links a PNG that
    is not there yet.
    """
    from leanbits.report.html import to_html

    out = Path(out_dir)
    fig_dir = out / FIGURES_DIR
    written = []
    for fig in report.figures():
        p = fig_dir / f"{fig.name}.png"
        write_bytes_atomic(p, fig.png)
        written.append(p)
    produced = {f.name for f in report.figures()}
    for name in FIGURE_NAMES:  # a figure this report does not have must not linger
        if name not in produced:
            (fig_dir / f"{name}.png").unlink(missing_ok=True)
    md, html = out / REPORT_MD, out / REPORT_HTML
    write_text_atomic(md, to_markdown(report))
    write_text_atomic(html, to_html(report))
    return ReportFiles(md, html, tuple(written), tuple(report.sections()), tuple(report.notes))


def build_report(run_dir: str | os.PathLike[str],
                 out_dir: str | os.PathLike[str] | None = None) -> ReportFiles:
    """Collect ``run_dir``, render every figure and write the report into ``out_dir``.

    Args:
        run_dir: a sweep run directory, a snapshot directory or a profile output directory.
        out_dir: where report.md, report.html and figures/ go (default: ``run_dir``).

    Returns:
        The paths written.

    Raises:
        LeanbitsError: ``run_dir`` is not a directory or holds nothing reportable, or
            ``out_dir`` is an existing file.
    """
    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise LeanbitsError(f"--out {out_dir}: is an existing file, not a directory; give a "
                            "directory for report.md, report.html and figures/")
    report = make_report(collect(run_dir))
    return write_report(report, run_dir if out_dir is None else out_dir)
