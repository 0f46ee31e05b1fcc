"""The price of "snapshot re-fit is cheaper": accuracy against backprop epochs per method.

Snapshot pruning with a non-weight re-fit (the paper's method) against masked fine-tuning,
iterative prune-retrain (Han et al. 2015) and lottery-ticket rewinding (Frankle et al.
2020, Renda et al. 2020), each at several budgets, at sparsities 0.9 / 0.95 / 0.98:

* ``refit``: non-weights only, ``refit_epochs`` in :data:`FULL` ``["epochs"]`` (1, 2, 4, 8);
* ``finetune``: kept weights and non-weights, ``finetune_epochs`` in the same list;
* ``iterative``: 5 rounds on a geometric schedule x ``round_epochs`` 1, 2, 3 (5, 10, 15);
* ``rewind``: back to the weights after epoch 1, then the remaining 19 epochs of the
  20-epoch training run (its SGD, momentum, L2 and cosine schedule resumed): one budget.

Every run picks its learning rate from the method's own rate x (0.3, 1, 3) by validation
accuracy alone (``PruneConfig.lr_grid``); test accuracy is read once, for the kept run.
Per seed the snapshot is trained as the snapshot study trains it (LeNet-300-100, llr head,
20 epochs SGD 0.05 cosine, L2 5e-4; the train/validation split follows the seed), and all
methods then run one after another in the same process on one thread, so their
method-only wall times (training and scoring; no data loading, no evaluation) are
measured side by side. Budgets count backprop epochs of the kept run; the grid costs
three times that.

    python benchmarks/baseline_budget.py --quick          # synthetic data, ~10 s
    python benchmarks/baseline_budget.py --jobs 2 --write # MNIST, 5 seeds (hours)

``--resume DIR`` keeps each finished seed's records in ``DIR/seed-N.json`` and skips the
seeds already there, so the full mode can be run in pieces (a seed is the unit: one that is
cut short runs again from its start). The seeds of one table can then come from different
processes and machine loads; their method seconds are still side by side within each seed,
and the table gives each row's median over seeds.

``--write`` (full mode only) stores the per-seed results in
``docs/results/baseline-budget/results.json``, the plot in
``docs/results/baseline-budget/accuracy_vs_epochs.png`` and the table in BENCHMARKS.md,
with the command, machine and date.

Estimated cost of the full mode on 2 cores (``--jobs 2``, one seed per process): per seed
and sparsity 3 learning rates x (15 re-fit epochs at ~1 s + 15 fine-tune, 30 iterative and
19 rewind epochs at ~2.5 s on one core, quiet machine) ~ 9 minutes, x 3 sparsities + 1
minute of training ~ 28 minutes per seed: 5 seeds ~ 2.3 CPU-hours, ~70 minutes wall on 2
idle cores (about 3x that on a loaded machine).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_md import update_section  # noqa: E402

from leanbits import snapshot  # noqa: E402
from leanbits.data import DataConfig, load_data  # noqa: E402
from leanbits.errors import FormatError  # noqa: E402
from leanbits.fileio import write_bytes_atomic, write_text_atomic  # noqa: E402
from leanbits.prune import PruneConfig, prune_snapshot  # noqa: E402
from leanbits.snapshot.files import read_json  # noqa: E402
from leanbits.train import TrainConfig, train  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "docs" / "results" / "baseline-budget"
TITLE = "Pruning baselines: accuracy against backprop epochs (LeNet-300-100, MNIST)"
METHODS = ("refit", "finetune", "iterative", "rewind")
SPARSITIES = (0.9, 0.95, 0.98)
LR_GRID = (0.3, 1.0, 3.0)
ROUNDS = 5

#: the full benchmark: MNIST, the snapshot study's training, 5 seeds
FULL: dict[str, Any] = {
    "data": {"dataset": "mnist"},
    "train": {"model": "lenet-300-100", "head": "llr", "epochs": 20, "l2": 5e-4,
              "rewind_epoch": 1},
    "epochs": (1, 2, 4, 8),
    "round_epochs": (1, 2, 3),
    "seeds": (1, 2, 3, 4, 5),
}
#: the smoke run: synthetic data, a small MLP, 2 seeds, the same methods and grid
QUICK: dict[str, Any] = {
    "data": {"dataset": "synthetic", "limit_train": 512, "val_size": 256},
    "train": {"model": "lenet-300-100", "fc": (16, 8), "head": "llr", "epochs": 3,
              "batch_size": 32, "lr": 0.05, "rewind_epoch": 1, "train_eval_size": 64},
    "epochs": (1, 2),
    "round_epochs": (1,),
    "seeds": (1, 2),
}


def budgets(mode: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(method, PruneConfig changes)`` for every method and budget of ``mode``."""
    out: list[tuple[str, dict[str, Any]]] = []
    out += [("refit", {"refit_epochs": e}) for e in mode["epochs"]]
    out += [("finetune", {"finetune_epochs": e}) for e in mode["epochs"]]
    out += [("iterative", {"rounds": ROUNDS, "round_epochs": e}) for e in mode["round_epochs"]]
    out.append(("rewind", {}))  # the rest of the original schedule: one budget
    return out


class ResumeError(ValueError):
    """A ``--resume`` directory holds a seed file that cannot be used."""


def fingerprint(mode: dict[str, Any]) -> dict[str, Any]:
    """Everything a seed's records depend on besides the seed (JSON-comparable)."""
    return json.loads(json.dumps({"mode": mode, "sparsities": SPARSITIES, "lr_grid": LR_GRID,
                                  "rounds": ROUNDS, "methods": METHODS}))


def seed_path(resume: Path, seed: int) -> Path:
    return resume / f"seed-{seed}.json"


def load_seed(resume: Path, mode: dict[str, Any], seed: int) -> list[dict[str, Any]] | None:
    """The records of ``seed`` kept in ``resume``, or None when it has not finished there.

    Raises:
        ResumeError: the file is unreadable, not a seed file, or made with other settings.
    """
    path = seed_path(resume, seed)
    if not path.is_file():
        return None
    try:
        doc = read_json(path)
    except FormatError as exc:
        raise ResumeError(f"{exc}; remove it to rerun seed {seed}") from None
    if not isinstance(doc, dict) or doc.get("seed") != seed or not isinstance(
            doc.get("records"), list):
        raise ResumeError(f"{path}: not a seed file of this benchmark; remove it or use "
                          "another --resume directory")
    if doc.get("fingerprint") != fingerprint(mode):
        raise ResumeError(f"{path}: made with other settings (mode, sparsities, grid); use "
                          "another --resume directory")
    return doc["records"]


def run_seed(mode: dict[str, Any], seed: int,
             resume: Path | None = None) -> list[dict[str, Any]]:
    """Train one snapshot and prune it with every method, budget and sparsity.

    Returns:
        One record per (method, budget, sparsity): ``seed``, ``method``, ``sparsity``,
        ``epochs`` (backprop epochs of the kept run), ``grid_epochs``, ``lr``,
        ``val_acc``, ``test_acc``, ``method_seconds`` (the kept run) and
        ``grid_seconds``. With ``resume``, the records are also kept in
        ``resume/seed-<seed>.json`` (written once, when the seed has finished).
    """
    torch.set_num_threads(1)  # methods side by side on one core, as a sweep stage runs
    data = DataConfig(**{**mode["data"], "split_seed": seed})
    splits = load_data(data)
    cfg = TrainConfig(**{**mode["train"], "seed": seed})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "snapshot"
        train(data, cfg, splits, out, progress=False, log=lambda _line: None)
        snap = snapshot.load(out)
        for sparsity in SPARSITIES:
            for method, changes in budgets(mode):
                pcfg = PruneConfig(lr_grid=LR_GRID, seed=seed, **changes)
                _, rep = prune_snapshot(snap, method, sparsity, splits, pcfg)
                rows.append({
                    "seed": seed, "method": method, "sparsity": sparsity,
                    "epochs": rep["backprop_epochs"],
                    "grid_epochs": rep.get("grid_backprop_epochs", rep["backprop_epochs"]),
                    "lr": rep["lr"], "val_acc": rep["val_acc"], "test_acc": rep["test_acc"],
                    "method_seconds": rep["wall_time_s"],
                    "grid_seconds": rep.get("grid_wall_time_s", rep["wall_time_s"]),
                    "dense_test_acc": rep["dense"]["test_acc"],
                })
    if resume is not None:
        doc = {"seed": seed, "fingerprint": fingerprint(mode), "records": rows}
        write_text_atomic(seed_path(resume, seed), json.dumps(doc, indent=1) + "\n")
    return rows


def run(mode: dict[str, Any], seeds: list[int], jobs: int,
        resume: Path | None = None) -> list[dict[str, Any]]:
    """Every seed's records, seeds in order (``jobs`` processes, one seed each).

    With ``resume``, seeds already finished there are read back instead of run.
    """
    done: dict[int, list[dict[str, Any]]] = {}
    if resume is not None:
        resume.mkdir(parents=True, exist_ok=True)
        for s in seeds:
            kept = load_seed(resume, mode, s)
            if kept is not None:
                done[s] = kept
        if done:
            print(f"resuming: seeds {', '.join(map(str, sorted(done)))} read from {resume}",
                  file=sys.stderr)
    todo = [s for s in seeds if s not in done]
    if jobs <= 1 or len(todo) <= 1:
        for s in todo:
            done[s] = run_seed(mode, s, resume)
    else:
        with ProcessPoolExecutor(max_workers=min(jobs, len(todo))) as pool:
            parts = pool.map(run_seed, [mode] * len(todo), todo, [resume] * len(todo))
            done.update(zip(todo, parts, strict=True))
    return [r for s in seeds for r in done[s]]


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std over seeds per (method, sparsity, budget), in method order."""
    groups: dict[tuple[str, float, int], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["method"], r["sparsity"], r["epochs"]), []).append(r)

    def ms(values: list[float]) -> tuple[float, float]:
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    out = []
    for (method, sparsity, epochs), rs in sorted(
            groups.items(), key=lambda kv: (kv[0][1], METHODS.index(kv[0][0]), kv[0][2])):
        err, err_sd = ms([100 * (1 - r["test_acc"]) for r in rs])
        out.append({
            "method": method, "sparsity": sparsity, "epochs": epochs, "seeds": len(rs),
            "test_err": err, "test_err_std": err_sd,
            "val_err": statistics.fmean(100 * (1 - r["val_acc"]) for r in rs),
            "lrs": sorted({r["lr"] for r in rs}),
            # medians: a run slowed by other work on the machine moves one seed, not the row
            "method_seconds": statistics.median(r["method_seconds"] for r in rs),
            "grid_seconds": statistics.median(r["grid_seconds"] for r in rs),
        })
    return out


def markdown(summary: list[dict[str, Any]], records: list[dict[str, Any]]) -> str:
    """The BENCHMARKS.md table: one line per method, sparsity and budget."""
    dense = statistics.fmean(100 * (1 - r["dense_test_acc"])
                             for r in records if r["method"] == "refit")
    lines = [
        "| sparsity | method | backprop epochs | test error % (mean ± std) | val error % | "
        "learning rates chosen | method s (kept run) | s per epoch | grid s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        per_epoch = s["method_seconds"] / s["epochs"] if s["epochs"] else float("nan")
        lines.append(
            f"| {s['sparsity']} | {s['method']} | {s['epochs']} | "
            f"{s['test_err']:.2f} ± {s['test_err_std']:.2f} | {s['val_err']:.2f} | "
            f"{', '.join(f'{lr:.3g}' for lr in s['lrs'])} | {s['method_seconds']:.1f} | "
            f"{per_epoch:.2f} | {s['grid_seconds']:.1f} |")
    return (
        "\n".join(lines)
        + f"\n\nDense snapshot test error {dense:.2f} % (mean over seeds). Backprop epochs: "
        "of the kept run; each run chose its learning rate from its method's rate x "
        f"{', '.join(f'{f:g}' for f in LR_GRID)} on validation (grid s: the three runs). "
        "Method seconds: the method alone (training and scoring, no data loading or "
        "evaluation), every method in one process on one thread; seconds are medians over "
        "seeds (one seed's run slowed by other work on the machine does not move them). "
        "Iterative: 5 rounds x "
        "the epochs per round; rewind: the epochs of the training schedule after its rewind "
        "epoch."
    )


def plot(summary: list[dict[str, Any]], path: Path) -> None:
    """Test error (log axis) against backprop epochs (log axis), one panel per sparsity,
    seed std as error bars."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SPARSITIES), figsize=(4.2 * len(SPARSITIES), 3.6),
                             sharey=True)
    for ax, sparsity in zip(axes, SPARSITIES, strict=True):
        for method in METHODS:
            pts = [s for s in summary if s["sparsity"] == sparsity and s["method"] == method]
            if not pts:
                continue
            ax.errorbar([p["epochs"] for p in pts], [p["test_err"] for p in pts],
                        yerr=[p["test_err_std"] for p in pts], marker="o", capsize=3,
                        label=method)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", nonpositive="clip")
        ax.set_title(f"sparsity {sparsity}")
        ax.set_xlabel("backprop epochs (kept run)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("test error (%)")
    axes[0].legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="synthetic data, a small MLP, 2 seeds (a smoke run, ~10 s)")
    ap.add_argument("--seeds", help="comma-separated seeds (default: 1-5; quick: 1,2)")
    ap.add_argument("--jobs", type=int, default=1, help="processes, one seed each")
    ap.add_argument("--out", type=Path, help="also write the per-seed records (JSON) here")
    ap.add_argument("--resume", type=Path, metavar="DIR",
                    help="keep each finished seed in DIR/seed-N.json and skip seeds "
                         "already there (run the full mode in pieces)")
    ap.add_argument("--remark", action="append", default=[], metavar="TEXT",
                    help="with --write: a sentence on how the seeds were run that the "
                    "records cannot tell (the machine's load, pieces run apart); repeatable")
    ap.add_argument("--write", action="store_true",
                    help="store results, plot and the BENCHMARKS.md section (full mode)")
    args = ap.parse_args(argv)
    if args.write and args.quick:
        ap.error("--write records the full benchmark; --quick is a smoke run")
    mode = QUICK if args.quick else FULL
    try:
        seeds = ([int(s) for s in args.seeds.split(",")] if args.seeds
                 else list(mode["seeds"]))
    except ValueError:
        ap.error(f"--seeds takes comma-separated integers, got {args.seeds!r}")
    if not 1 <= args.jobs <= 64:
        ap.error("--jobs must be between 1 and 64")
    t0 = time.perf_counter()
    if args.resume is not None and args.resume.exists() and not args.resume.is_dir():
        ap.error(f"--resume {args.resume}: not a directory")
    try:
        records = run(mode, seeds, args.jobs, args.resume)
    except ResumeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = summarize(records)
    table = markdown(summary, records)
    print(table)
    print(f"\n{len(records)} runs, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    doc = {"mode": "quick" if args.quick else "full", "seeds": seeds, "lr_grid": LR_GRID,
           "records": records, "summary": summary}
    if args.out is not None:
        write_text_atomic(args.out, json.dumps(doc, indent=1) + "\n")
    if args.write:
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        write_text_atomic(OUT_DIR / "results.json", json.dumps(doc, indent=1) + "\n")
        plot(summary, OUT_DIR / "accuracy_vs_epochs.png")
        seeds_arg = "" if args.seeds is None else f" --seeds {args.seeds}"
        resume_arg = "" if args.resume is None else f" --resume {args.resume}"
        header = (f"Command: `python benchmarks/baseline_budget.py --jobs {args.jobs}"
                  f"{seeds_arg}{resume_arg} --write`  \nMachine: {platform.machine()}, "
                  f"2 cores, torch {torch.__version__}  \nDate: {dt.date.today().isoformat()}\n\n"
                  f"{len(seeds)} seeds. Plot: [docs/results/baseline-budget/accuracy_vs_epochs"
                  ".png](docs/results/baseline-budget/accuracy_vs_epochs.png); per-seed "
                  "records: [docs/results/baseline-budget/results.json]"
                  "(docs/results/baseline-budget/results.json)."
                  + "".join(f" {r.strip()}" for r in args.remark) + "\n")
        update_section(ROOT / "BENCHMARKS.md", TITLE, header + "\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
