"""Per-seed records: the compact, committed form of a study's results, one row per seed and
grid point, written to and read from ``results.csv``.

A :class:`SeedRecord` keeps what a verdict needs and nothing machine-specific: the seed,
the point's sweep axes other than the seed, and plain numbers (accuracies, bits, weights,
the trained model's weight norms from its history, the pruning stage's backprop epochs and
seconds). No paths. The CSV has a ``seed`` column, one ``axis.<name>`` column per axis
and one column per measurement; an empty cell is a quantity the point does not have.

:func:`records_of_run` reads a finished sweep run (``results.json`` and each train stage's
``metrics.jsonl``); :func:`write_csv` / :func:`read_csv` store and load the records, so
every verdict can be recomputed from the committed CSV without the run.

Example:
    >>> rec = SeedRecord(seed=1, axes={"head": "llr"}, values={"test_acc": 0.98})
    >>> parse_csv(format_csv([rec])) == [rec]
    True
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leanbits import paths
from leanbits.errors import LeanbitsError
from leanbits.fileio import write_text_atomic
from leanbits.results import Row

#: the committed per-seed results of a study: ``docs/results/<study>/results.csv``
CSV_NAME = paths.seed_records(Path()).name
#: prefix of the CSV columns that hold sweep axes
AXIS_PREFIX = "axis."
#: the epoch (1-based) whose weight norms are the reference of "growth" in training
REFERENCE_EPOCH = 5
#: per stage, what is copied from its metrics into a record as ``<stage>_<key>``
STAGE_MEASURES = ("val_acc", "test_acc", "val_loss", "test_loss", "val_nll", "test_nll",
                  "val_ece", "test_ece")
#: Row fields copied into a record
ROW_FIELDS = ("val_acc", "test_acc", "val_loss", "test_loss", "total_bits", "dense_bits",
              "compression", "nonzero_weights", "sparsity", "weight_l2", "max_abs_weight",
              "method_seconds")
#: bound on a CSV read: a committed study has at most a few thousand rows
MAX_CSV_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class SeedRecord:
    """One grid point of one seed.

    Attributes:
        seed: the train seed (it also seeds the split when the study says so).
        axes: ``{axis: value}`` of the point, the seed axis and axes the point does not
            take (None) left out. A string value that reads as a number comes back from
            the CSV as that number.
        values: ``{measurement: number}``; a missing key is a quantity not measured.
    """

    seed: int
    axes: dict[str, Any] = field(default_factory=dict)
    values: dict[str, float | int] = field(default_factory=dict)

    def get(self, key: str) -> float | None:
        """A measurement, None when absent or NaN."""
        v = self.values.get(key)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else v

    def config(self) -> tuple[tuple[str, Any], ...]:
        """The point without its seed: records of one configuration share it."""
        return tuple(sorted(self.axes.items(), key=lambda kv: kv[0]))


def _num(v: Any) -> float | int | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return None if isinstance(v, float) and math.isnan(v) else v


def history_values(epochs: Sequence[Mapping[str, Any]]) -> dict[str, float | int]:
    """Training-history measurements of one trained model.

    ``l2_ref`` / ``l2_end``: L2 norm of all prunable weights at epoch
    :data:`REFERENCE_EPOCH` (the last one if training was shorter) and at the end;
    ``last_l2_ref`` / ``last_l2_end``: the same of the output layer alone; ``growth`` and
    ``last_growth`` their ratios; ``max_abs_end``, ``mean_abs_output``, ``gap_acc``
    (train-eval minus validation accuracy), ``loss_gap`` (validation minus train-eval loss)
    and ``epochs`` at the end.

    Growth after zero training error (claim 1): ``zero_error_epoch`` is the first epoch
    whose eval-mode accuracy on the training subset (``train_eval_acc``) is 1. The late
    window runs from ``late_epoch`` = ceil(epochs / 2) to the end, the same window for
    every run of one length; when training error reached zero by ``late_epoch``,
    ``late_last_growth`` is the output layer's weight L2 norm at the end over the norm at
    ``late_epoch``, and ``late_output_growth`` the same of the mean |output| (logit or
    LLR magnitude) on validation. A run whose training error never reached zero by then
    has neither: the claim is about what happens after it does.

    Args:
        epochs: the records of ``metrics.jsonl``, first epoch first.
    """
    if not epochs:
        return {}
    ref, last = epochs[min(REFERENCE_EPOCH, len(epochs)) - 1], epochs[-1]
    out: dict[str, float | int] = {"epochs": len(epochs)}

    def norms(rec: Mapping[str, Any]) -> tuple[float, float] | None:
        layers = rec.get("layers")
        if not isinstance(layers, Mapping) or not layers:
            return None
        l2 = [_num(v.get("l2_norm")) if isinstance(v, Mapping) else None
              for v in layers.values()]
        if any(x is None for x in l2):
            return None
        return math.sqrt(sum(x * x for x in l2)), float(l2[-1])

    a, b = norms(ref), norms(last)
    if a and b:
        out.update(l2_ref=a[0], l2_end=b[0], last_l2_ref=a[1], last_l2_end=b[1])
        if a[0] > 0:
            out["growth"] = b[0] / a[0]
        if a[1] > 0:
            out["last_growth"] = b[1] / a[1]
    layers = last.get("layers")
    if isinstance(layers, Mapping) and layers:
        maxes = [_num(v.get("max_abs")) for v in layers.values() if isinstance(v, Mapping)]
        if maxes and all(m is not None for m in maxes):
            out["max_abs_end"] = max(maxes)
    out.update(_late_growth(epochs))
    for key in ("mean_abs_output", "gap_acc"):
        if _num(last.get(key)) is not None:
            out[key] = last[key]
    if _num(last.get("val_loss")) is not None and _num(last.get("train_eval_loss")) is not None:
        out["loss_gap"] = last["val_loss"] - last["train_eval_loss"]
    return out


def _late_growth(epochs: Sequence[Mapping[str, Any]]) -> dict[str, float | int]:
    """The zero-training-error epoch and the late-window growth (:func:`history_values`)."""
    out: dict[str, float | int] = {}
    zero = next((i + 1 for i, e in enumerate(epochs) if _num(e.get("train_eval_acc")) == 1),
                None)
    late = math.ceil(len(epochs) / 2)
    out["late_epoch"] = late
    if zero is None:
        return out
    out["zero_error_epoch"] = zero
    if zero > late:
        return out
    start, end = epochs[late - 1], epochs[-1]

    def last_norm(rec: Mapping[str, Any]) -> float | None:
        layers = rec.get("layers")
        if not isinstance(layers, Mapping) or not layers:
            return None
        last = list(layers.values())[-1]
        return _num(last.get("l2_norm")) if isinstance(last, Mapping) else None

    a, b = last_norm(start), last_norm(end)
    if a and b is not None:
        out["late_last_growth"] = b / a
    a, b = _num(start.get("mean_abs_output")), _num(end.get("mean_abs_output"))
    if a and b is not None:
        out["late_output_growth"] = b / a
    return out


def record_of_row(row: Row, history: Mapping[str, float | int] | None = None,
                  prune_seconds: float | None = None) -> SeedRecord:
    """The record of one result row.

    Args:
        row: the point's row (its seed is ``settings["train"]["seed"]``).
        history: :func:`history_values` of its trained model.
        prune_seconds: wall seconds of its pruning stage.
    """
    values: dict[str, float | int] = {}
    for k in ROW_FIELDS:
        v = _num(getattr(row, k))
        if v is not None:
            values[k] = v
    for stage in ("train", "prune"):
        m = row.metrics.get(stage, {})
        for k in STAGE_MEASURES:
            if _num(m.get(k)) is not None:
                values[f"{stage}_{k}"] = m[k]
    if _num(row.metrics.get("prune", {}).get("backprop_epochs")) is not None:
        values["backprop_epochs"] = row.metrics["prune"]["backprop_epochs"]
    if prune_seconds is not None:
        values["prune_seconds"] = prune_seconds
    values.update(history or {})
    seed = row.settings.get("train", {}).get("seed", row.axes.get("seed"))
    if not isinstance(seed, int):
        raise LeanbitsError(f"row {row.point} has no integer train seed in its settings")
    # An axis a point does not take (e.g. the method of an unpruned point) is left out, as
    # its empty CSV cell reads back.
    axes = {k: v for k, v in row.axes.items() if k != "seed" and v is not None}
    return SeedRecord(seed, axes, values)


def records_of_run(run: str | Path) -> list[SeedRecord]:
    """One record per grid point of a finished sweep run directory.

    Reads ``results.json``, each train stage's ``metrics.jsonl`` and each prune stage's
    ``stage.json`` (its seconds) under ``RUN/stages``.

    Raises:
        LeanbitsError: no ``results.json`` (the run has not finished).
    """
    run = Path(run)
    f = paths.results(run)
    if not f.is_file():
        raise LeanbitsError(f"{run} has no {f.name}: the run has not finished")
    rows = [Row.from_dict(r) for r in json.loads(f.read_text(encoding="utf-8"))["rows"]]
    histories: dict[str, dict[str, float | int]] = {}
    out = []
    for r in rows:
        if r.error:
            continue
        t = r.stages.get("train")
        if t is not None and t not in histories:
            m = paths.metrics_log(paths.stages(run) / t)
            epochs = ([json.loads(line) for line in m.read_text(encoding="utf-8").splitlines()
                       if line.strip()] if m.is_file() else [])
            histories[t] = history_values(epochs)
        seconds = None
        if "prune" in r.stages:
            st = paths.stage_marker(paths.stages(run) / r.stages["prune"])
            if st.is_file():
                seconds = _num(json.loads(st.read_text(encoding="utf-8")).get("seconds"))
        out.append(record_of_row(r, histories.get(t), seconds))
    return out


def format_csv(records: Iterable[SeedRecord]) -> str:
    """The CSV text of ``records`` (columns: seed, axes, measurements; first-seen order)."""
    records = list(records)
    axes: list[str] = []
    values: list[str] = []
    for r in records:
        axes += [a for a in r.axes if a not in axes]
        values += [v for v in r.values if v not in values]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["seed", *(AXIS_PREFIX + a for a in axes), *values])
    for r in records:
        w.writerow([r.seed, *(_cell(r.axes.get(a)) for a in axes),
                    *(_cell(r.values.get(v)) for v in values)])
    return buf.getvalue()


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)  # round-trips exactly
    return str(v)


def _parse(cell: str) -> Any:
    if cell == "":
        return None
    for kind in (int, float):
        try:
            return kind(cell)
        except ValueError:
            pass
    return cell


def parse_csv(text: str, where: str = CSV_NAME) -> list[SeedRecord]:
    """The records of a :func:`format_csv` text.

    Raises:
        LeanbitsError: no ``seed`` column, a row of the wrong length, or a seed that is
            not an integer.
    """
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or not rows[0] or rows[0][0] != "seed":
        raise LeanbitsError(f"{where}: the first column must be 'seed'")
    header = rows[0]
    out = []
    for n, cells in enumerate(rows[1:], start=2):
        if not cells:
            continue
        if len(cells) != len(header):
            raise LeanbitsError(f"{where}:{n}: {len(cells)} cells, the header has "
                                f"{len(header)}")
        seed = _parse(cells[0])
        if not isinstance(seed, int):
            raise LeanbitsError(f"{where}:{n}: seed {cells[0]!r} is not an integer")
        axes, values = {}, {}
        for name, cell in zip(header[1:], cells[1:], strict=True):
            v = _parse(cell)
            if name.startswith(AXIS_PREFIX):
                if v is not None:
                    axes[name[len(AXIS_PREFIX):]] = v
            elif v is not None:
                if not isinstance(v, int | float):
                    raise LeanbitsError(f"{where}:{n}: {name} = {cell!r} is not a number")
                values[name] = v
        out.append(SeedRecord(seed, axes, values))
    return out


def write_csv(path: str | Path, records: Iterable[SeedRecord]) -> None:
    """Write ``records`` to ``path`` (atomically)."""
    write_text_atomic(path, format_csv(records))


def read_csv(path: str | Path) -> list[SeedRecord]:
    """Read the records of a :func:`write_csv` file.

    Raises:
        LeanbitsError: the file is missing, too large or malformed.
    """
    p = Path(path)
    if not p.is_file():
        raise LeanbitsError(f"{p}: no such file (write it with benchmarks/paper_studies.py "
                            "RUNS --write after running the study)")
    if p.stat().st_size > MAX_CSV_BYTES:
        raise LeanbitsError(f"{p}: larger than {MAX_CSV_BYTES} bytes; not a study's CSV")
    return parse_csv(p.read_text(encoding="utf-8"), str(p))
