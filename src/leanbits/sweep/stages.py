"""Stage tasks: what one train, profile, compress, prune or bits stage does, and how its
output is made durable.

This module is the one place that talks to :mod:`leanbits.train`, :mod:`leanbits.prune`
and :mod:`leanbits.bits`; everything else in :mod:`leanbits.sweep` sees stages as opaque
tasks, so an API change there is absorbed here.

A stage directory ``STAGES/<kind>/<label>-<hash>/`` holds

* what the stage itself writes - a snapshot (train, prune: ``weights.safetensors``,
  ``model.json``, ``config.toml``, ``metrics.json``, ...), a pruning profile (profile:
  ``profile.json``, one :class:`leanbits.results.Row` per method and level), a packed
  model (bits: ``model.lbits``, ``account.json``) or the smallest file meeting a
  requirement (compress: ``model.lbits``, ``compress.json``; its search caches in the
  hidden sibling ``.<key>.work`` until it finishes, so an interrupted one resumes),
* ``stage.json`` - **written last, atomically**; it lists every other file of the stage
  with its size, and records what the stage was made from::

      {"kind": "prune", "key": "refit-0.9-1a2b3c4d5e", "id": "<random hex>",
       "input": "train/lenet5-llr-...", "input_id": "<the input's id>",
       "config": {...every field of the stage's config...}, "data": {...},
       "files": {"model.json": 412, "weights.safetensors": 1064328, ...},
       "metrics": {"val_acc": 0.98, "test_acc": 0.98, "nonzero_weights": 4310,
                   "weights": 43100, ...},          # bits adds total_bits, bits_breakdown,
                                                    # layer_bits, layer_sparsity, file_bytes
       "seconds": 1.7,           # the whole stage
       "method_seconds": 0.9}    # prune stages: the method alone (no loading, evaluation)

A stage is complete only when ``stage.json`` reads back, lists files, and every listed
file is there with its recorded size (:func:`is_complete`); anything less - no marker, a
marker without its files, a truncated file - is never read, and the stage is rebuilt from
scratch. So is a stage whose ``stage.json`` records another config (a changed default) or
another input ``id`` (its input was rebuilt) - see :func:`is_current`.

A stage is built in a hidden sibling directory ``.<key>.partial`` and renamed into place
only after ``stage.json`` is written, so an interrupted stage never looks finished. While
it builds, its worker holds an OS lock on ``.<key>.lock`` (:func:`leanbits.fileio.
exclusive_lock`): two runs sharing a stage directory (``--stages``) never build the same
stage at once - the second waits, then finds the stage complete and reuses it.

Every stage ends by evaluating its model on the validation and test splits (that is the
"evaluate" step of the pipeline; for bits, the model decoded from the packed file).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import shutil
import stat
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from leanbits import paths, snapshot
from leanbits.bits import quantize_snapshot, unpack
from leanbits.compression import check_recipe, compress
from leanbits.config import to_dict
from leanbits.data import DataConfig, load_data, sources
from leanbits.errors import ConfigError, FormatError, PruneError
from leanbits.fileio import exclusive_lock, write_bytes_atomic, write_text_atomic
from leanbits.models import build
from leanbits.models.layers import weight_layers
from leanbits.prune import profile, prune_to_target, save_profile, save_result
from leanbits.results import BIT_PARTS, LAYER_BIT_PARTS
from leanbits.settings.data import SYNTHETIC
from leanbits.train import evaluate, make_head, make_plan, train

#: environment variable for fault injection in tests: ``KIND`` or ``KIND:SUBSTRING`` makes
#: every stage of that kind (whose key contains SUBSTRING) fail after writing its output
#: but before marking it complete - what a crash or a kill would leave behind
FAIL_ENV = "LEANBITS_SWEEP_FAIL"
#: the stage record's file name (:func:`leanbits.paths.stage_marker`)
MARKER = paths.stage_marker(Path()).name
#: stage-record key of a prune stage's method-only wall time (training and scoring, no data
#: loading or evaluation), beside ``seconds`` (the whole stage)
METHOD_SECONDS = "method_seconds"
#: timings of a pruning report, kept out of a stage's metrics (which a resumed or
#: re-executed run reproduces exactly)
_TIMINGS = ("wall_time_s", "grid_wall_time_s")


# ----------------------------------------------------------------------------- adapters
def check(kind: str, cfg: Any) -> None:
    """Checks beyond one field's value, done up front (before anything runs).

    Raises:
        ConfigError: the settings cannot work together (e.g. conv widths for an MLP).
    """
    if kind == "train":
        head = make_head(cfg, 10)
        make_plan(cfg, (1, 28, 28), head.out_features)
    if kind == "profile":
        try:
            cfg.prune_config()
        except PruneError as exc:
            raise ConfigError(str(exc)) from None
    if kind == "compress":
        check_recipe(cfg, require_target=True)


# ----------------------------------------------------------------------------- data
@functools.lru_cache(maxsize=2)
def _splits_cached(items: tuple[tuple[str, Any], ...]) -> Any:
    return load_data(dict(items))


def load_splits(data: dict[str, Any]) -> Any:
    """The train/val/test splits for the data settings (cached per process)."""
    return _splits_cached(tuple(sorted(data.items())))


def prefetch(data: dict[str, Any]) -> None:
    """Download the data set once, in the driver, so parallel workers never race on it."""
    if data["dataset"] != SYNTHETIC:
        sources.fetch(data["dataset"])


# ----------------------------------------------------------------------------- tasks
@dataclass(frozen=True)
class StageTask:
    """Everything a worker needs to run one stage (picklable, no open handles).

    Attributes:
        kind: ``train``, ``prune`` or ``bits``.
        key: the stage's directory name.
        config: the stage's config dataclass.
        data: data settings.
        out_dir: absolute path of the stage directory.
        input_dir: absolute path of the input stage's directory (None for train).
    """

    kind: str
    key: str
    config: Any
    data: dict[str, Any]
    out_dir: str
    input_dir: str | None = None


def read_stage(stage_dir: str | Path) -> dict[str, Any]:
    """The ``stage.json`` record of a stage.

    Raises:
        FormatError: no ``stage.json``, or not a JSON object.
    """
    p = paths.stage_marker(stage_dir)
    try:
        record = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FormatError(f"{p}: cannot read the stage record ({exc}); run the experiment "
                          "again to rebuild the stage") from None
    if not isinstance(record, dict):
        raise FormatError(f"{p}: not a stage record; run the experiment again to rebuild it")
    return record


def _file_sizes(stage_dir: Path) -> dict[str, int]:
    """Every file under ``stage_dir`` but the marker, as {relative POSIX path: bytes}."""
    return {p.relative_to(stage_dir).as_posix(): p.stat().st_size
            for p in sorted(stage_dir.rglob("*")) if p.is_file() and p.name != MARKER}


def is_complete(stage_dir: str | Path) -> bool:
    """True when the stage finished: ``stage.json`` reads back, lists the stage's files, and
    every listed file is present with its recorded size."""
    d = Path(stage_dir)
    try:
        files = read_stage(d).get("files")
    except FormatError:
        return False
    if not isinstance(files, dict) or not files:
        return False  # a stage always writes files; a record of none is not a finished one
    for rel, size in files.items():
        if not isinstance(rel, str) or Path(rel).is_absolute() or ".." in Path(rel).parts:
            return False
        try:
            st = os.stat(d / rel)
        except (OSError, ValueError):
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_size != size:
            return False
    return True


def _jsonable(cfg: Any) -> dict[str, Any]:
    return json.loads(json.dumps(to_dict(cfg), default=float))


def is_current(stage_dir: str | Path, config: Any, input_dir: str | Path | None) -> bool:
    """True when the stage is complete, was made with exactly ``config``, and from the
    input stage as it is now.

    Directory names hash only non-default settings, so a changed default (a new leanbits
    version) keeps the name; the full config in ``stage.json`` catches that. Each stage
    also records the ``id`` of the input it was made from, so when an input is rebuilt,
    everything made from the old one is rebuilt too.
    """
    if not is_complete(stage_dir):
        return False
    try:
        record = read_stage(stage_dir)
        if record.get("config") != _jsonable(config):
            return False
        if input_dir is not None:
            return record.get("input_id") == read_stage(input_dir).get("id")
        return True
    except FormatError:
        return False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _install(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` onto ``out``, replacing whatever is there.

    The old directory is renamed away first, never deleted in place, so a reader sees the
    old stage whole, no stage, or the new one whole - never a half-deleted one.
    """
    old = paths.replaced(out)
    _remove(old)
    if out.exists() or out.is_symlink():
        os.replace(out, old)
    os.replace(tmp, out)
    _remove(old)


@contextlib.contextmanager
def _one_thread():
    # One intra-op thread per task: parallelism comes from running tasks side by side, and
    # results must not depend on how many threads a worker happens to have.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def execute_stage(task: StageTask) -> dict[str, Any]:
    """Run one stage (in whatever process the executor chose) unless it is complete.

    Args:
        task: the stage to run.

    Returns:
        ``{"key", "kind", "ran": bool, "seconds"}``; ``ran`` is False when the stage was
        already complete (another run finished it).
    """
    out = Path(task.out_dir)
    with exclusive_lock(paths.sibling_lock(out), wait=True):
        # Under the lock: if another run built this stage while we waited, reuse it.
        if is_current(out, task.config, task.input_dir):
            return {"key": task.key, "kind": task.kind, "ran": False, "seconds": 0.0}
        t0 = time.perf_counter()
        tmp = paths.building(out)
        # Anything here is from an interrupted run; never trust it, start over.
        _remove(tmp)
        tmp.mkdir(parents=True)
        with _one_thread():
            splits = load_splits(task.data)
            runner = {"train": _run_train, "profile": _run_profile, "prune": _run_prune,
                      "bits": _run_bits, "compress": _run_compress}[task.kind]
            metrics = runner(task, splits, tmp)
        method_seconds = metrics.pop(METHOD_SECONDS, None)
        _maybe_fail(task)
        seconds = time.perf_counter() - t0
        record = {
            "kind": task.kind,
            "key": task.key,
            "id": uuid.uuid4().hex,
            "input": _rel(task.input_dir),
            "input_id": read_stage(task.input_dir)["id"] if task.input_dir else None,
            "config": to_dict(task.config),
            "data": task.data,
            "files": _file_sizes(tmp),
            "metrics": metrics,
            "seconds": seconds,
        }
        if method_seconds is not None:
            record[METHOD_SECONDS] = method_seconds
        write_text_atomic(paths.stage_marker(tmp),
                          json.dumps(record, indent=2, sort_keys=True, default=float))
        if not is_complete(tmp):
            raise RuntimeError(f"{tmp}: the stage's files changed while it was being "
                               "written; run the experiment again to rebuild it")
        _install(tmp, out)
    return {"key": task.key, "kind": task.kind, "ran": True, "seconds": seconds}


def _rel(path: str | None) -> str | None:
    if path is None:
        return None
    p = Path(path)
    return f"{p.parent.name}/{p.name}"


def _maybe_fail(task: StageTask) -> None:
    spec = os.environ.get(FAIL_ENV, "")
    if not spec:
        return
    kind, _, part = spec.partition(":")
    if kind == task.kind and part in task.key:
        raise RuntimeError(f"injected failure in {task.kind} stage {task.key} ({FAIL_ENV})")


#: what every stage measures on validation and test (:func:`leanbits.train.evaluate`)
_MEASURES = ("acc", "loss", "nll", "ece")


def _evaluate(model: Any, head: Any, splits: Any,
              measured: dict[str, Any] | None = None) -> dict[str, Any]:
    """A stage's metrics: val/test figures and weight statistics of ``model``.

    ``measured``: val/test figures (``val_acc``, ``val_loss``, ``val_nll``, ``val_ece``, the
    same of test, ``mean_abs_output``) already computed on this very model - train()
    reports them - which are reused instead of evaluating it again.
    """
    if measured is None:
        val = evaluate(model, head, splits.val.x, splits.val.y)
        test = evaluate(model, head, splits.test.x, splits.test.y)
        measured = {**{f"val_{k}": val[k] for k in _MEASURES},
                    **{f"test_{k}": test[k] for k in _MEASURES},
                    "mean_abs_output": val["mean_abs_output"]}
    layers = [(n, m.weight.detach()) for n, m in weight_layers(model)]
    return {
        **{f"{split}_{k}": measured[f"{split}_{k}"] for split in ("val", "test")
           for k in _MEASURES},
        "mean_abs_output": measured["mean_abs_output"],
        "params": sum(p.numel() for p in model.parameters()),
        "weights": sum(w.numel() for _, w in layers),
        "nonzero_weights": sum(int((w != 0).sum()) for _, w in layers),
        "max_abs_weight": max(float(w.abs().max()) for _, w in layers),
        "weight_l2": float(torch.sqrt(sum(w.double().pow(2).sum() for _, w in layers))),
    }


def _run_train(task: StageTask, splits: Any, out: Path) -> dict[str, Any]:
    # Every data setting, the data set included, goes into the snapshot's config.toml:
    # `leanbits train --config STAGE/config.toml` reruns the stage on the same data.
    result = train(DataConfig(**task.data), task.config, splits, out, progress=False,
                   log=lambda _line: None)
    # train() evaluated this model on validation (its last epoch) and test: reuse that.
    metrics = _evaluate(result.model, result.head, splits, measured=result.final)
    metrics["epochs_completed"] = result.final.get("epochs_completed")
    return metrics


def _run_prune(task: StageTask, splits: Any, out: Path) -> dict[str, Any]:
    snap = snapshot.load(task.input_dir)
    result, report, _search = prune_to_target(snap, splits, task.config)
    save_result(out, result, report)
    metrics = _evaluate(result.model, result.head, splits)
    # Keep the pruning report's own figures (sparsity, connections, MACs, ...) beside ours.
    # Timings are not measurements of the model: the method's own wall time goes into the
    # stage record beside the stage's seconds (execute_stage), not into its metrics.
    for k, v in report.items():
        if k not in metrics and k not in _TIMINGS:
            metrics[k] = v
    metrics[METHOD_SECONDS] = report["wall_time_s"]
    return metrics


def _run_profile(task: StageTask, splits: Any, out: Path) -> dict[str, Any]:
    snap = snapshot.load(task.input_dir)
    cfg = task.config
    stages_of = {"train": _rel(task.input_dir), "profile": _rel(task.out_dir)}
    rows = [dataclasses.replace(r, stages=stages_of) for r in
            profile(snap, cfg.methods, cfg.sparsities, splits, cfg.prune_config())]
    # The snapshot, relative to this stage's final directory (the report follows it).
    source = os.path.relpath(task.input_dir, task.out_dir)
    save_profile(out, rows, to_dict(cfg), source)
    return {"rows": len(rows), "failed": sum(r.error is not None for r in rows)}


def bits_input(prune_or_train_dir: str | Path) -> Path:
    """The snapshot a bits stage packs: a pruned model's compact rebuild when there is one
    (dead units removed, so no bits are spent on them), else the snapshot itself."""
    d = paths.compact(prune_or_train_dir)
    return d if paths.model_json(d).is_file() else Path(prune_or_train_dir)


def _run_bits(task: StageTask, splits: Any, out: Path) -> dict[str, Any]:
    snap = snapshot.load(bits_input(task.input_dir))
    encoded, report = quantize_snapshot(snap, task.config, splits)
    lbits = paths.lbits(out)
    write_bytes_atomic(lbits, encoded.data)
    # Evaluate what the file holds, decoded, not the model we started from.
    unpacked = unpack(lbits)
    model = build(unpacked.plan)
    model.load_state_dict(unpacked.state)
    metrics = _evaluate(model, unpacked.head or snap.head, splits)
    acc = encoded.account.to_dict()
    write_text_atomic(paths.account(out),
                      json.dumps(acc, indent=2, sort_keys=True, default=float))
    metrics.update(report)
    metrics["total_bits"] = int(acc["total_bits"])
    metrics["bits_breakdown"] = {k: int(acc[f"{k}_bits"]) for k in BIT_PARTS}
    metrics["layer_bits"] = {la["name"]: {k: int(la[f"{k}_bits"]) for k in LAYER_BIT_PARTS}
                             for la in acc["layers"]}
    metrics["layer_sparsity"] = {la["name"]: 1.0 - la["nonzero"] / la["weights"]
                                 for la in acc["layers"] if la["weights"]}
    metrics["position_bound_bits"] = float(acc["position_bound_bits"])
    metrics["value_entropy_bits"] = float(acc["value_entropy_bits"])
    metrics["file_bytes"] = lbits.stat().st_size
    return metrics


def _run_compress(task: StageTask, splits: Any, out: Path) -> dict[str, Any]:
    snap = snapshot.load(task.input_dir)
    # The search's cache lives beside the stage, not in its .partial directory (which a
    # new attempt starts afresh): an interrupted compress stage resumes its search.
    work = paths.sibling_work(Path(task.out_dir))
    result = compress(snap.model, splits, snap.head.loss, config=task.config, plan=snap.plan,
                      head=snap.head, masks=snap.masks, output=paths.lbits(out),
                      work_dir=work, progress=False)
    summary = result.to_dict()
    summary.pop("output")
    write_text_atomic(paths.compress(out),
                      json.dumps(summary, indent=2, sort_keys=True, default=float))
    acc = result.account
    return {
        "val_acc": result.val_acc, "test_acc": result.test_acc,
        "dense_val_acc": result.dense_val_acc, "required_val_acc": result.required_val_acc,
        "method": result.chosen.method, "sparsity_requested": result.chosen.sparsity,
        "settings": result.chosen.settings, "weights": result.weights,
        "nonzero_weights": result.nonzero, "weights_kept": result.weights_kept,
        "total_bits": acc.total_bits, "dense_float32_bits": acc.dense_float32_bits,
        "compression": result.compression, "file_bytes": paths.lbits(out).stat().st_size,
        "bits_breakdown": {k: int(acc.to_dict()[f"{k}_bits"]) for k in BIT_PARTS},
        "backprop_epochs": result.epochs, "budget_exhausted": result.budget_exhausted,
    }
