"""Reading a run directory into what a report shows: training histories and result rows.

Three kinds of directory are understood, alone or mixed:

* a **snapshot** (``metrics.jsonl``, ``config.toml``, ``metrics.json``) - training curves;
* a **pruning profile** (``profile.json`` of ``leanbits profile`` or of a sweep's profile
  stage) - :class:`leanbits.results.Row` objects, one per method and level;
* a **sweep** run directory (``results.json``, else ``results.jsonl``: one row per grid
  point, plus stage directories holding snapshots and profiles);
* a study's committed **per-seed results** (``results.csv``, e.g. ``docs/results/<study>``:
  one compact row per seed and grid point, :mod:`leanbits.report.seeds`).

A finished sweep's rows are also read as per-seed records (the same records its
``results.csv`` holds), so both give the same results-over-seeds section.

Snapshots and profiles are found anywhere up to :data:`MAX_DEPTH` directories below the
root. A file that cannot be read is skipped with a note, so one bad file never hides the
rest of a run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leanbits import paths
from leanbits.errors import LeanbitsError
from leanbits.report.markdown import FIGURES_DIR
from leanbits.report.seeds import CSV_NAME, SeedRecord, read_csv, records_of_run
from leanbits.results import Row, profile_rows

RESULTS_FILES = (paths.results(Path()).name,  # the first present is read
                 paths.results_log(Path()).name)
#: how deep below the root snapshots (metrics.jsonl) and profiles are searched
MAX_DEPTH = 4
#: longer config files are cut in the report (the file itself stays the reference)
MAX_CONFIG_CHARS = 20_000


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
    #: name of its configuration - its sweep axes but the seed - when the sweep trained
    #: several seeds of it; runs sharing one are drawn as one line. None: its own line
    config: str | None = None


@dataclass
class ConfigFile:
    """A config or experiment file as the report shows it: one text, named by every file
    found with exactly that text (identical files are listed once)."""

    names: list[str]
    language: str
    text: str

    @property
    def title(self) -> str:
        return ", ".join(self.names)


def config_name(label: str) -> str:
    """How the config.toml of the training run labelled ``label`` is named in the report."""
    return f"{label}/{paths.config(Path()).name}"


@dataclass
class RunData:
    """Everything reportable found under a root directory.

    Attributes:
        results: the sweep's rows (``results.json``), one per grid point.
        profile: the rows of every pruning profile found; each names its profile in
            ``stages["profile"]`` (relative to the root for a ``leanbits profile`` output).
        configs: every config and experiment file, in the order found.
        notes: what could not be read.
        records: per-seed records: of the finished sweep (``results.json``), else of a
            ``results.csv``.
        records_source: where the records were read (relative to the root's parent).
        results_source: the file ``results`` were read from (relative to the root).
    """

    root: Path
    #: further roots read with ``root`` into this one (:func:`collect_all`)
    also: tuple[Path, ...] = ()
    runs: list[TrainingRun] = field(default_factory=list)
    results: list[Row] = field(default_factory=list)
    profile: list[Row] = field(default_factory=list)
    configs: list[ConfigFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    records: list[SeedRecord] = field(default_factory=list)
    records_source: str | None = None
    results_source: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.runs or self.results or self.profile or self.records)

    @property
    def roots(self) -> tuple[Path, ...]:
        """Every directory read: ``root``, then ``also``."""
        return (self.root, *self.also)


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


def _rows(dicts: Any, where: str, notes: list[str]) -> list[Row]:
    if not isinstance(dicts, list):
        notes.append(f"{where}: no list of rows, skipped")
        return []
    rows = []
    for i, d in enumerate(dicts):
        try:
            rows.append(Row.from_dict(d))
        except (TypeError, AttributeError):
            notes.append(f"{where}: row {i} is not a result row, skipped")
    return rows


def head_of_snapshot(d: Path) -> str | None:
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
    epochs = [r for r in read_jsonl(log, notes) if isinstance(r.get("epoch"), int)]
    if not epochs:
        notes.append(f"{label}/{log.name}: no epoch records, skipped")
        return None
    final = _read_json(paths.metrics(d), notes) if paths.metrics(d).is_file() else None
    return TrainingRun(label, head_of_snapshot(d), d, epochs,
                       final if isinstance(final, dict) else {})


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def collect(root: str | os.PathLike[str]) -> RunData:
    """Read every training history, result row, profile row and config under ``root``.

    Args:
        root: a sweep run directory, a snapshot directory or a profile output directory.

    Returns:
        The collected :class:`RunData` (possibly empty; the report rejects that).

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
            data.configs[seen_configs[text]].names.append(title)
            return
        seen_configs[text] = len(data.configs)
        data.configs.append(ConfigFile([title], lang, text))

    def add_run(d: Path, label: str) -> None:
        if d.resolve() in seen_runs:
            return
        seen_runs.add(d.resolve())
        run = _read_run(d, label, data.notes)
        if run is not None:
            data.runs.append(run)
            if paths.config(d).is_file():
                add_config(config_name(label), paths.config(d), "toml")

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
        if paths.profile(d).is_file():
            _add_profile(d, rel, root, data, add_run)

    for name in RESULTS_FILES:
        p = root / name
        if p.is_file():
            if name.endswith(".jsonl"):
                data.results = _rows(read_jsonl(p, data.notes), name, data.notes)
            else:
                doc = _read_json(p, data.notes)
                if doc is not None:
                    rows = doc.get("rows") if isinstance(doc, Mapping) else None
                    data.results = _rows(rows, name, data.notes)
            data.results_source = name
            break
    _add_records(root, data)
    return data


def collect_all(roots: Sequence[str | os.PathLike[str]]) -> RunData:
    """:func:`collect` several directories into one: e.g. one sweep per network of a
    comparison, each run on its own (its own grid, seeds or budget), reported together.

    Training runs, result rows, profile rows and per-seed records are concatenated in the
    order of ``roots``; a training run found under two roots (a stage directory both
    sweeps share) is kept once. Top-level experiment files are named by their root
    (``frontier-mnist/experiment.toml``) and notes by the root they are about.

    Raises:
        LeanbitsError: no roots, one is not a directory, or two have the same name (their
            files could not be told apart).
    """
    if not roots:
        raise LeanbitsError("no directory to report")
    if len(roots) == 1:
        return collect(roots[0])
    names = [Path(r).resolve().name for r in roots]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise LeanbitsError(f"two directories named {twice!r}: give directories with "
                            "distinct names (each names its files in the report)")
    parts = [collect(r) for r in roots]
    data = RunData(root=parts[0].root, also=tuple(p.root for p in parts[1:]))
    seen_runs: set[Path] = set()
    seen_configs: dict[str, int] = {}
    for name, part in zip(names, parts, strict=True):
        for run in part.runs:
            if run.path.resolve() not in seen_runs:
                seen_runs.add(run.path.resolve())
                data.runs.append(run)
        data.results += part.results
        data.profile += part.profile
        data.records += part.records
        data.notes += [f"{name}: {n}" for n in part.notes]
        for cfg in part.configs:
            # a root's own files (experiment.toml) carry no directory in their name
            titles = [t if "/" in t else f"{name}/{t}" for t in cfg.names]
            if cfg.text in seen_configs:
                data.configs[seen_configs[cfg.text]].names.extend(titles)
                continue
            seen_configs[cfg.text] = len(data.configs)
            data.configs.append(ConfigFile(titles, cfg.language, cfg.text))
    sources = [s for s in (p.records_source for p in parts) if s]
    data.records_source = " + ".join(sources) or None
    data.results_source = next((p.results_source for p in parts if p.results_source), None)
    return data


def _add_records(root: Path, data: RunData) -> None:
    """The per-seed records of a finished sweep, else of ``root/results.csv``."""
    name = root.resolve().name
    try:
        if paths.results(root).is_file() and data.results:
            data.records = records_of_run(root)
            data.records_source = f"{name}/{paths.results(root).name}"
        elif (root / CSV_NAME).is_file():
            data.records = read_csv(root / CSV_NAME)
            data.records_source = f"{name}/{CSV_NAME}"
    except (LeanbitsError, OSError, UnicodeDecodeError, ValueError, KeyError,
            TypeError) as exc:
        # A hand-made or older results.json without train seeds still has its rows.
        data.notes.append(f"Results over seeds: skipped - {exc}")


def _add_profile(d: Path, rel: str, root: Path, data: RunData, add_run: Any) -> None:
    """The rows, config and profiled snapshot of the profile in directory ``d``."""
    doc = _read_json(paths.profile(d), data.notes)
    if doc is None:
        return
    name = f"{rel}/{paths.profile(d).name}"
    try:
        rows = profile_rows(doc)
    except ValueError as exc:
        data.notes.append(f"{name}: {exc}, skipped")
        return
    src = doc.get("source")
    if isinstance(src, str):
        snap = Path(src) if Path(src).is_absolute() else d / src
        # The profiled snapshot's training curves belong in its report, also when it
        # lives outside the profile directory.
        if paths.metrics_log(snap).is_file() and not _inside(snap, root):
            add_run(snap, snap.resolve().name)
    cfg = doc.get("config")
    if isinstance(cfg, Mapping) and cfg:
        data.configs.append(ConfigFile([f"{name} (config)"], "json",
                                       json.dumps(cfg, indent=2, sort_keys=True)))
    for r in rows:
        # A profile outside a sweep has no stage of its own: name it by where it is.
        stages = r.stages if "profile" in r.stages else {**r.stages, "profile": rel}
        data.profile.append(dataclasses.replace(r, stages=stages))
