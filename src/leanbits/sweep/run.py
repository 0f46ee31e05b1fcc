"""Run an experiment: execute its stage DAG level by level, then collect one row per point.

Run directory layout (``leanbits run EXP.toml --out RUN``)::

    RUN/
      experiment.toml     the effective experiment (after --quick / --set): rerun it to
                          reproduce or resume this run
      stages/             one directory per distinct stage (see leanbits.sweep.stages)
        train/<model>-<head>-<hash>/
        profile/profile-<hash>/      (with [profile]: profile.json, one row per level)
        prune/<method>-<sparsity>-<hash>/
        bits/<quant>-<bits>-<index>-<hash>/
      results.jsonl       one JSON row per grid point (written when every stage is done)
      results.json        {"schema": 1, "experiment", "description", "axes", "rows",
                           "frontier": {"test_acc": [point, ...], "val_acc": [...]}}
                          and, with [pick], "picked": the point kept as model.lbits
      model.lbits         with [pick]: a copy of the picked point's packed model

Rows are :class:`leanbits.results.Row` dicts (``results.jsonl`` lines,
``results.json["rows"]``), one per grid point (grid order: train axes outermost, then
prune, then bits axes, each in file order). A row describes the point's final model
(after the last stage: decoded from the packed file when there is a bits stage; a pruned
model's compact rebuild, so ``weights`` can be below the dense count); ``sparsity`` and
``effective_connections`` are of the pruned model, ``metrics`` holds every stage's own
metrics (e.g. the trained model's accuracy before pruning: ``metrics.train.test_acc``).

Rows contain no timings or absolute paths, so an interrupted-and-resumed run writes the
same bytes as an uninterrupted one; per-stage timings are in each ``stage.json``.
Results files are deleted when a run starts and written at its end, so they never
describe a half-finished run.

One run at a time per directory: a run holds an OS lock on ``RUN/.lock`` (which holds its
PID) from before it touches anything until it ends, and a second run into the same
directory stops at once with :class:`leanbits.errors.BusyError` naming the holder. The
system drops the lock when the holder dies, however it dies. Runs that share a stage root
(``--stages``) are kept apart per stage instead (see :mod:`leanbits.sweep.stages`).
SIGTERM ends a run as Ctrl-C does: its workers are stopped, finished stages are kept, and
the same command resumes.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
from tqdm import tqdm

from leanbits import paths
from leanbits.config import to_dict
from leanbits.errors import BusyError, ConfigError, LeanbitsError
from leanbits.fileio import exclusive_lock, write_bytes_atomic, write_text_atomic
from leanbits.results import Row, compression
from leanbits.sweep import frontier, stages
from leanbits.sweep.executors import Executor, make_executor
from leanbits.sweep.grid import Experiment, Point
from leanbits.sweep.pick import pick_point

SCHEMA = 1


class StageFailed(LeanbitsError):
    """One or more stages raised; finished stages are kept, so a rerun resumes."""

    def __init__(self, message: str, failures: list[tuple[str, BaseException]]) -> None:
        super().__init__(message)
        self.failures = failures


@dataclass
class RunSummary:
    """What a run did.

    Attributes:
        out_dir: the run directory.
        rows: one result row per grid point (see the module docstring).
        ran: stages executed now, per kind.
        skipped: stages found complete and reused, per kind.
        executed: ``kind/key`` of every stage executed now.
        picked: index of the row kept as ``model.lbits`` (with ``[pick]``), else None.
    """

    out_dir: Path
    rows: list[Row] = field(default_factory=list)
    ran: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    picked: int | None = None


def check_dir(path: str | Path, what: str) -> Path:
    """``path`` made absolute, refused when it exists and is not a directory.

    Raises:
        ConfigError: it is an existing file (or other non-directory).
    """
    p = Path(path).resolve()
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{what} {path}: is an existing file, not a directory; give a "
                          "directory (new or a run directory) instead")
    return p


@contextlib.contextmanager
def _hold_run_dir(out: Path) -> Iterator[None]:
    """Create ``out`` and hold its run lock for the block."""
    stack = contextlib.ExitStack()
    try:
        out.mkdir(parents=True, exist_ok=True)
        stack.enter_context(exclusive_lock(paths.lock(out)))
    except BusyError as exc:
        holder = f"process {exc.pid}" if exc.pid else "another process"
        raise BusyError(f"{out} is in use by another leanbits run ({holder}, lock "
                        f"{exc.path}); wait for it to finish or stop it, or choose another "
                        "--out", exc.path, exc.pid) from None
    except OSError as exc:
        raise LeanbitsError(f"cannot use {out} as the run directory: {exc.strerror or exc}"
                            ) from None
    with stack:
        yield


class _Terminated(SystemExit):
    """SIGTERM, turned into an exception so the run stops its workers on the way out."""


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    # Python's default for SIGTERM is to die on the spot, skipping every cleanup; make it
    # unwind like Ctrl-C instead (exit status 128 + 15). Only the main thread can do this.
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, _frame: object) -> None:
        raise _Terminated(128 + signum)

    before = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def write_experiment(exp: Experiment, path: Path) -> None:
    """Write the effective experiment as TOML (TOML has no null: None values are dropped)."""
    def clean(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: clean(v) for k, v in obj.items() if v is not None}
        if isinstance(obj, list | tuple):
            return [clean(v) for v in obj if v is not None]
        return obj

    header = ("# The experiment that made this run directory (after --quick / --set).\n"
              "# `leanbits run` on this file reproduces the run, or resumes it.\n")
    write_text_atomic(path, header + tomli_w.dumps(clean(exp.settings)))


def run_experiment(
    exp: Experiment,
    out_dir: str | Path,
    executor: str | Executor = "local",
    jobs: int | None = None,
    address: str | None = None,
    stage_root: str | Path | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> RunSummary:
    """Execute every stage of ``exp`` not yet complete, then write the results.

    Stages run level by level (all train stages, then prune, then bits); a level's stages
    are independent and run in parallel on the executor. A complete and current stage
    (:func:`leanbits.sweep.stages.is_current`) is skipped, so rerunning after an
    interruption resumes. The run holds the lock on ``out_dir`` throughout (see the module
    docstring); on any exception, SIGTERM and Ctrl-C included, the workers of an executor
    it made are stopped at once.

    Args:
        exp: the validated experiment (:func:`leanbits.sweep.experiment.load_experiment`).
        out_dir: the run directory.
        executor: ``local``, ``ray``, ``inline`` or an :class:`Executor` instance (which
            the caller then closes).
        jobs: parallel workers (see :func:`make_executor`).
        address: Ray cluster address.
        stage_root: where stage directories live (default ``out_dir/stages``); point
            several runs at one root to share their stages.
        progress: tqdm bars on stderr (default: when stderr is a terminal).
        log: progress lines: the run directory, then one per level (default: stderr).

    Returns:
        A :class:`RunSummary`.

    Raises:
        StageFailed: a stage raised; the message names it, finished stages are kept.
        BusyError: another run holds ``out_dir``.
        ConfigError: ``out_dir`` or ``stage_root`` is an existing file.
    """
    out = check_dir(out_dir, "--out")
    root = check_dir(stage_root, "--stages") if stage_root is not None else paths.stages(out)
    log = log or _stderr
    show = sys.stderr.isatty() if progress is None else progress
    with _sigterm_unwinds(), _hold_run_dir(out):
        log(f"{exp.name}: {len(exp.points)} point(s) -> {out}")
        for p in (paths.results(out), paths.results_log(out), paths.lbits(out)):
            p.unlink(missing_ok=True)
        write_experiment(exp, paths.experiment(out))

        summary = RunSummary(out)
        if isinstance(executor, str):
            with make_executor(executor, jobs, address) as ex:  # stopped on any exception
                _run_levels(exp, root, ex, summary, show, log)
        else:
            _run_levels(exp, root, executor, summary, show, log)

        summary.rows = collect_rows(exp, root)
        if exp.pick is not None:
            summary.picked = pick_point(summary.rows, exp.pick.max_drop)
            if summary.picked is not None:
                packed = root / summary.rows[summary.picked].stages["bits"]
                write_bytes_atomic(paths.lbits(out), paths.lbits(packed).read_bytes())
        write_results(exp, out, summary.rows, summary.picked)
    return summary


def _run_levels(exp: Experiment, root: Path, ex: Executor, summary: RunSummary, show: bool,
                log: Callable[[str], None]) -> None:
    fetched = False
    for kind in exp.kinds():
        specs = exp.stages(kind)
        todo = [s for s in specs if not stages.is_current(
            root / s.relpath, s.config, root / s.input.relpath if s.input else None)]
        summary.skipped[kind] = len(specs) - len(todo)
        summary.ran[kind] = 0
        if not specs:
            continue
        log(f"{kind}: {len(specs)} stage(s), {len(specs) - len(todo)} already done, "
            f"running {len(todo)} ({ex.name})")
        if not todo:
            continue
        if not fetched:
            stages.prefetch(exp.data)
            fetched = True
        tasks = [stages.StageTask(s.kind, s.key, s.config, s.data, str(root / s.relpath),
                                  str(root / s.input.relpath) if s.input else None)
                 for s in todo]
        _run_level(ex, kind, tasks, summary, show, log)


def _run_level(ex: Executor, kind: str, tasks: list[stages.StageTask], summary: RunSummary,
               show: bool, log: Callable[[str], None]) -> None:
    failures: list[tuple[str, BaseException]] = []
    with tqdm(total=len(tasks), desc=kind, unit="stage", file=sys.stderr, disable=not show,
              leave=False) as bar:
        for i, result, error in ex.run(stages.execute_stage, tasks):
            bar.update(1)
            name = f"{kind}/{tasks[i].key}"
            if error is not None:
                if not failures:
                    ex.cancel()  # stop queued stages; running ones finish and are kept
                failures.append((name, error))
                if not isinstance(error, LeanbitsError):
                    log(f"{name} failed:\n"
                        + "".join(traceback.format_exception(error)).rstrip())
                continue
            if result.get("ran"):
                summary.ran[kind] += 1
                summary.executed.append(name)
    if failures:
        first_name, first = failures[0]
        raise StageFailed(
            f"{len(failures)} {kind} stage(s) failed; first: {first_name}: "
            f"{type(first).__name__}: {first}. Finished stages are kept: run the same "
            "command again to resume.", failures,
        ) from first


def _row(exp: Experiment, point: Point, root: Path) -> Row:
    records = {s.kind: stages.read_stage(root / s.relpath) for s in point.stages}
    final = records[point.last.kind]["metrics"]
    train = records["train"]["metrics"]
    pruned = records.get("prune", {}).get("metrics", {})
    bits = records.get("bits", {}).get("metrics", {})
    return Row(
        point=point.index,
        axes=dict(point.axes),
        stages={s.kind: s.relpath for s in point.stages},
        # the train stage's data: its split seed may follow its train seed
        settings={"data": dict(point.stages[0].data), **{s.kind: to_dict(s.config)
                                                         for s in point.stages}},
        **{k: final.get(k) for k in ("val_acc", "test_acc", "val_loss", "test_loss", "params",
                                     "weights", "nonzero_weights", "max_abs_weight",
                                     "weight_l2")},
        sparsity=pruned.get("sparsity"),
        effective_connections=pruned.get("effective_connections"),
        layer_sparsity=bits.get("layer_sparsity"),
        total_bits=bits.get("total_bits"),
        bits_breakdown=bits.get("bits_breakdown"),
        layer_bits=bits.get("layer_bits"),
        file_bytes=bits.get("file_bytes"),
        dense_bits=32 * train["params"],
        compression=compression(train["params"], bits.get("total_bits")),
        method_seconds=records.get("prune", {}).get(stages.METHOD_SECONDS),
        metrics={kind: rec["metrics"] for kind, rec in records.items()},
    )


def collect_rows(exp: Experiment, stage_root: str | Path) -> list[Row]:
    """One result row per grid point, read from the complete stages under ``stage_root``.

    Raises:
        LeanbitsError: a stage of some point is not complete.
    """
    root = Path(stage_root)
    missing = [s.relpath for p in exp.points for s in p.stages
               if not stages.is_complete(root / s.relpath)]
    if missing:
        raise LeanbitsError(f"{len(missing)} stage(s) not complete, e.g. {missing[0]}; "
                            "run the experiment to finish them")
    return [_row(exp, p, root) for p in exp.points]


def write_results(exp: Experiment, out: Path, rows: list[Row],
                  picked: int | None = None) -> None:
    """Write ``results.jsonl`` and ``results.json`` (atomically; see the module docstring)."""
    dicts = [r.to_dict() for r in rows]
    lines = "".join(json.dumps(r, sort_keys=True, default=float) + "\n" for r in dicts)
    fronts = {}
    for acc in ("test_acc", "val_acc"):
        pts = frontier.points_of(rows, "total_bits", acc)
        fronts[acc] = [rows[i].point for i in frontier.pareto_front(pts)]
    axes: list[str] = []
    for r in rows:
        axes += [a for a in r.axes if a not in axes]
    doc = {"schema": SCHEMA, "experiment": exp.name, "description": exp.description,
           "axes": axes, "rows": dicts, "frontier": fronts}
    if exp.pick is not None:
        doc["picked"] = None if picked is None else rows[picked].point
    write_text_atomic(paths.results_log(out), lines)
    write_text_atomic(paths.results(out),
                      json.dumps(doc, indent=1, sort_keys=True, default=float) + "\n")


def load_results(run_dir: str | Path) -> dict[str, Any]:
    """Read ``results.json`` of a finished run.

    Raises:
        LeanbitsError: no results (the run has not finished).
    """
    p = paths.results(Path(run_dir))
    if not p.is_file():
        raise LeanbitsError(f"{run_dir} has no {p.name}: the run has not finished "
                            "(rerun `leanbits run` on its experiment.toml to resume)")
    return json.loads(p.read_text(encoding="utf-8"))


def stage_status(exp: Experiment, stage_root: Path) -> dict[str, dict[str, int]]:
    """How many stages of each kind ``exp`` has and how many of them are already current
    under ``stage_root`` (what a run would skip); for ``--dry-run``.

    Returns:
        ``{kind: {"stages": n, "done": d}}`` for every kind in ``exp.kinds()``.
    """
    root = Path(stage_root)
    counts = {}
    for kind in exp.kinds():
        specs = exp.stages(kind)
        done = sum(stages.is_current(root / s.relpath, s.config,
                                     root / s.input.relpath if s.input else None)
                   for s in specs)
        counts[kind] = {"stages": len(specs), "done": done}
    return counts
