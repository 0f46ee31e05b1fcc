"""Fewest bits on record (issue 11): read one or more `leanbits study record` runs and
write the BENCHMARKS.md section and ``docs/results/record/summary.json``.

For each net (LeNet-300-100, LeNet-5-Caffe), over the seeds of the run: mean +- std of the
total-bits compression of the compressed file (32 x dense parameters / file bits), the
weights-kept ratio (dense weights / nonzero weights stored) and the test error of the
decoded file - every file chosen on validation by `leanbits compress` - beside the
published anchors, with the training and compression wall time. From each search's log
(``compress.json``: every candidate scored on validation) it also pairs the quantizers by
seed: per quantizer the smallest file that met the validation requirement, so rate-aware
quantization (ECSQ) is measured against plain k-means within the same search.

    leanbits study record                      # the real run (hours on 2 cores)
    python benchmarks/record.py runs/record --write
    python benchmarks/record.py runs/record-mlp runs/record-lenet5 --write   # a run per net
    python benchmarks/record.py runs/record-quick --summary OUT.json   # smoke check
    python benchmarks/record.py runs/record-vd --against runs/record   # a new recipe, paired

The nets are gathered from every run given (LeNet-5 costs hours, so it is often a run of
its own); a net with finished stages in two runs is refused. Only the compress stages of
each run's own ``experiment.toml`` are read (a shared stage directory may hold others).
With ``--against RUN`` an earlier record run (say, of another recipe) is set beside
this one, paired by seed: both recipes' files from the same trained snapshots. Without
``--write`` the section is printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_md import update_section  # noqa: E402

from leanbits import paths  # noqa: E402
from leanbits.errors import ConfigError, LeanbitsError  # noqa: E402
from leanbits.fileio import write_text_atomic  # noqa: E402
from leanbits.snapshot.files import read_json  # noqa: E402
from leanbits.sweep.experiment import load_experiment  # noqa: E402
from leanbits.sweep.stages import is_complete, read_stage  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TITLE = "Fewest bits on record: leanbits compress on MNIST"
#: the nets of the study, by the ``model`` preset of their train stage
NETS = {"lenet-300-100": "LeNet-300-100", "lenet5": "LeNet-5-Caffe"}
#: the quantizers paired by seed: the plain one, then the rate-aware one
QUANTS = ("kmeans", "ecsq")
#: published anchors (dense float32 size / stored size, MNIST test error), from issue 11
ANCHORS = {
    "lenet-300-100": {
        "weights kept": "Sparse VD 68x @ 1.92 %; DNS 56x @ 1.99 %; Han 12x @ 1.59 %",
        "storage": "EPR 124x @ 1.9 %; SWS 64x @ 1.94 %; Deep Compression 40x @ 1.58 %",
        "goal": ">= 150x total bits, >= 70x fewer weights, <= 1.60 % test error",
    },
    "lenet5": {
        "weights kept": "Sparse VD 280x @ 0.75 %; SWS 200x @ 0.97 %",
        "storage": "MIRACLE 555x @ 0.69 % and 1110x @ 0.96 %; EPR 606x @ 1.0 %; "
                   "BC 419x @ 1.0 %; SWS 162x @ 0.97 %; DC 39x @ 0.74 %",
        "goal": ">= 1000x total bits, >= 300x fewer weights, <= 0.80 % test error",
    },
}


#: the issue's goals per net: (total-bits compression >=, weights kept >=, test error % <=)
GOALS = {"lenet-300-100": (150.0, 70.0, 1.60), "lenet5": (1000.0, 300.0, 0.80)}
#: the published storage anchors as numbers: (method, compression, test error %)
STORAGE = {
    "lenet-300-100": [("EPR", 124, 1.9), ("SWS", 64, 1.94), ("Deep Compression", 40, 1.58)],
    "lenet5": [("MIRACLE", 555, 0.69), ("MIRACLE", 1110, 0.96), ("EPR", 606, 1.0),
               ("BC", 419, 1.0), ("SWS", 162, 0.97), ("DC", 39, 0.74)],
}


def reading(net: str, s: dict[str, Any], rows: list[dict[str, Any]] | None = None) -> str:
    """One line per net, read mechanically from the seed means: each goal met or not, and
    which storage anchors the file beats (more compression at no higher test error). With
    the net's per-seed ``rows``, also on how many seeds each goal, and all three at once,
    is met (a mean can meet a goal that most seeds miss).

    Example:
        >>> reading("lenet-300-100", {"compression_mean": 100.0, "weights_kept_mean": 20.0,
        ...                           "test_error_pct_mean": 1.7})  # doctest: +ELLIPSIS
        '- LeNet-300-100 (seed means): compression 100.0x against the goal >= 150x (not met)...'
    """
    comp, kept, err = s["compression_mean"], s["weights_kept_mean"], s["test_error_pct_mean"]
    parts = [f"- {NETS.get(net, net)} (seed means): compression {comp:.1f}x"]
    goal = GOALS.get(net)
    if goal is not None:
        g_comp, g_kept, g_err = goal
        def met(ok: bool) -> str:
            return "met" if ok else "not met"
        parts[0] += (f" against the goal >= {g_comp:g}x ({met(comp >= g_comp)}), weights kept "
                     f"{kept:.1f}x against >= {g_kept:g}x ({met(kept >= g_kept)}), test error "
                     f"{err:.2f} % against <= {g_err:.2f} % ({met(err <= g_err)})")
        if rows:
            oks = [(r["compression"] >= g_comp, r["weights_kept"] >= g_kept,
                    r["test_error_pct"] <= g_err) for r in rows]
            n = len(rows)
            parts.append(f"per seed, compression goal met on {sum(o[0] for o in oks)} of {n}, "
                         f"weights on {sum(o[1] for o in oks)} of {n}, test error on "
                         f"{sum(o[2] for o in oks)} of {n}, all three on "
                         f"{sum(all(o) for o in oks)} of {n}")
    anchors = STORAGE.get(net, [])
    beaten = [f"{m} {x}x @ {e} %" for m, x, e in anchors if comp > x and err <= e]
    short = [f"{m} {x}x @ {e} %" for m, x, e in anchors if not (comp > x and err <= e)]
    if beaten:
        parts.append(f"beats {', '.join(beaten)}")
    if short:
        parts.append(f"does not beat {', '.join(short)}")
    return "; ".join(parts) + "."


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def smallest_per_quant(log: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per quantizer of :data:`QUANTS`, from a compress search's log: how many candidates it
    scored (``tried``) and the fewest total bits of those that met the validation
    requirement (``bits``; None when none did).

    Example:
        >>> log = {"required_val_acc": 0.9, "candidates": [
        ...     {"settings": {"quant": "kmeans"}, "total_bits": 90, "val_acc": 0.95},
        ...     {"settings": {"quant": "kmeans"}, "total_bits": 50, "val_acc": 0.85},
        ...     {"settings": {"quant": "ecsq"}, "total_bits": 80, "val_acc": 0.91}]}
        >>> smallest_per_quant(log)
        {'kmeans': {'tried': 2, 'bits': 90}, 'ecsq': {'tried': 1, 'bits': 80}}
    """
    required = log["required_val_acc"]
    out = {}
    for quant in QUANTS:
        mine = [c for c in log.get("candidates", [])
                if c.get("settings", {}).get("quant", "kmeans") == quant]
        passed = [c["total_bits"] for c in mine if c["val_acc"] >= required]
        out[quant] = {"tried": len(mine), "bits": min(passed) if passed else None}
    return out


def collect(run: Path) -> dict[str, list[dict[str, Any]]]:
    """Per net, one record per finished compress stage of the run: seed, compression,
    weights kept, test error, chosen setting and wall times."""
    exp = load_experiment(run / "experiment.toml")
    root = run / "stages"
    out: dict[str, list[dict[str, Any]]] = {}
    for spec in exp.stages("compress"):
        stage, train = root / spec.relpath, root / spec.input.relpath
        if not (is_complete(stage) and is_complete(train)):
            continue
        m, t = read_stage(stage), read_stage(train)
        met = m["metrics"]
        out.setdefault(spec.input.config.model, []).append({
            "seed": spec.input.config.seed,
            "compression": met["compression"],
            "weights_kept": met["weights_kept"],
            "test_error_pct": 100 * (1 - met["test_acc"]),
            "val_acc": met["val_acc"], "required_val_acc": met["required_val_acc"],
            "method": met["method"], "bits": met["settings"]["bits"],
            "codebook_epochs": met["settings"].get("codebook_epochs", 0),
            "nonzero": met["nonzero_weights"], "file_bytes": met["file_bytes"],
            "train_s": float(t["seconds"]), "compress_s": float(m["seconds"]),
            "train_epochs": t["metrics"].get("epochs_completed"),
            "compress_epochs": met["backprop_epochs"],
            "budget_exhausted": bool(met.get("budget_exhausted", False)),
            "total_bits": met["total_bits"],
            "quants": smallest_per_quant(read_json(paths.compress(stage))),
        })
    for rows in out.values():
        rows.sort(key=lambda r: r["seed"])
    return out


def gather(runs: list[Path]) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Path]]:
    """The records of :func:`collect` over several runs, each net from exactly one run.

    Args:
        runs: run directories of `leanbits study record`, in the order given.

    Returns:
        Per net its records, and per net the run it came from.

    Raises:
        ConfigError: a run has no finished compress stage, or a net has finished stages
            in two runs (which would be counted twice).
    """
    per_net: dict[str, list[dict[str, Any]]] = {}
    source: dict[str, Path] = {}
    for run in runs:
        found = collect(run)
        if not found:
            raise ConfigError(f"{run} has no finished compress stage")
        for net, rows in found.items():
            if net in source:
                raise ConfigError(
                    f"{NETS.get(net, net)} is in two runs, {source[net]} and {run}; give "
                    "each net's run once")
            per_net[net], source[net] = rows, run
    return per_net, source


def _max_drop_text(runs: list[Path], settings: list[dict[str, Any]]) -> str:
    """``max_drop = X``, or one value per run where the runs differ."""
    drops = [cfg.get("max_drop") for cfg in settings]
    if len(set(drops)) == 1:
        return f"max_drop = {drops[0]}"
    return "max_drop = " + ", ".join(f"{d} (`{r}`)" for r, d in zip(runs, drops, strict=True))


#: the [compress] keys that say which recipe a run searched (beyond the quantizer grid),
#: each with the method it belongs to (None: every recipe); a method's keys are named only
#: when the recipe uses that method
RECIPE_KEYS = {"methods": None, "budget": None, "vd_epochs": "sparse-vd",
               "vd_warmup_epochs": "sparse-vd", "vd_finetune_epochs": "sparse-vd",
               "gradual_epochs": "gradual", "finetune_epochs": "finetune"}


def recipe_text(net_runs: dict[str, Path], settings: dict[Path, dict[str, Any]]) -> str:
    """The recipe each net was compressed with (methods, epoch budget and the methods' epoch
    settings from its run's ``[compress]`` table): one sentence when every net shares it,
    else one clause per net, so that nets from runs of different recipes are never read
    as one recipe.

    Example:
        >>> a, b = Path("a"), Path("b")
        >>> recipe_text({"lenet5": a}, {a: {"methods": ["gradual"], "budget": 120,
        ...                                 "vd_epochs": 100}})
        'Recipe: methods gradual, budget 120.'
        >>> recipe_text({"lenet-300-100": a, "lenet5": b},
        ...             {a: {"methods": ["sparse-vd"]}, b: {"methods": ["gradual"]}})
        'Recipes differ by net: LeNet-300-100 methods sparse-vd; LeNet-5-Caffe methods gradual.'
    """
    def one(cfg: dict[str, Any]) -> str:
        parts = []
        for key, method in RECIPE_KEYS.items():
            if key in cfg and (method is None or method in cfg.get("methods", ())):
                value = cfg[key]
                text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
                parts.append(f"{key} {text}")
        return ", ".join(parts) or "the compress defaults"

    texts = {net: one(settings[run]) for net, run in net_runs.items()}
    if len(set(texts.values())) == 1:
        return f"Recipe: {next(iter(texts.values()))}."
    return "Recipes differ by net: " + "; ".join(
        f"{NETS.get(net, net)} {text}" for net, text in texts.items()) + "."


def summarize(per_net: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """``summary.json``: one entry per net with seeds and mean / std of each figure."""
    summary = {}
    for net, rows in per_net.items():
        entry: dict[str, Any] = {"seeds": [r["seed"] for r in rows]}
        for key in ("compression", "weights_kept", "test_error_pct"):
            entry[f"{key}_mean"], entry[f"{key}_std"] = _mean_std([r[key] for r in rows])
        entry["train_s_mean"], _ = _mean_std([r["train_s"] for r in rows])
        entry["compress_s_mean"], _ = _mean_std([r["compress_s"] for r in rows])
        summary[net] = entry
    return summary


#: When a recipe change replaces the record preset's recipe, judged paired by seed against
#: the preset's run on the same snapshots (written before the runs it judges): at least 3
#: seeds in common, the mean compression ratio (new / old) at least ADOPT_RATIO, higher on
#: more than half of the seeds, and the mean test error at most ADOPT_ERROR points worse.
ADOPT_RATIO, ADOPT_ERROR, ADOPT_SEEDS = 1.10, 0.10, 3


def adopt(ratios: list[float], error_changes: list[float]) -> bool:
    """The adoption rule above, on the paired ratios and test error changes of one net.

    Example:
        >>> adopt([1.2, 1.3, 0.9], [0.0, 0.05, -0.1]), adopt([1.2, 1.3], [0.0, 0.0])
        (True, False)
    """
    if len(ratios) < ADOPT_SEEDS or len(ratios) != len(error_changes):
        return False
    return (statistics.fmean(ratios) >= ADOPT_RATIO
            and sum(r > 1 for r in ratios) > len(ratios) / 2
            and statistics.fmean(error_changes) <= ADOPT_ERROR)


def paired_lines(per_net: dict[str, list[dict[str, Any]]], against: Path,
                 other: dict[str, list[dict[str, Any]]], recipe: str) -> list[str]:
    """This record against another run's (``against``, compressed by ``recipe``), paired
    by seed: per net and seed both files' compression and test error, and per net the
    mean and range of the compression ratio (this / other) over the seeds both have.

    Nets or seeds that only one side has are left out and said so; with no seed in
    common there is nothing to pair and no lines are returned.
    """
    recipe = recipe.rstrip(".")
    lines = [f"Paired by seed against `{against}` ({recipe[:1].lower()}{recipe[1:]}): for "
             "each train seed both runs have, each side's file chosen on validation by its "
             "own recipe.", "",
             "| net | seed | compression | other | ratio | test error % | other |",
             "|---|---|---|---|---|---|---|"]
    notes, paired = [], 0
    for net, rows in per_net.items():
        theirs = {r["seed"]: r for r in other.get(net, [])}
        ratios, errs = [], []
        for r in rows:
            o = theirs.get(r["seed"])
            if o is None:
                continue
            ratio = r["compression"] / o["compression"]
            ratios.append(ratio)
            errs.append(r["test_error_pct"] - o["test_error_pct"])
            lines.append(f"| {NETS.get(net, net)} | {r['seed']} | {r['compression']:.1f}x | "
                         f"{o['compression']:.1f}x | {ratio:.2f} | "
                         f"{r['test_error_pct']:.2f} | {o['test_error_pct']:.2f} |")
        missing = sorted({r["seed"] for r in rows} ^ set(theirs))
        if ratios:
            paired += len(ratios)
            notes.append(
                f"- {NETS.get(net, net)}: compression ratio {statistics.fmean(ratios):.2f} on "
                f"average over {len(ratios)} seeds (range {min(ratios):.2f}-{max(ratios):.2f}, "
                f"higher in {sum(x > 1 for x in ratios)}); test error "
                f"{statistics.fmean(errs):+.2f} points on average. Adoption rule (mean "
                f"ratio >= {ADOPT_RATIO:.2f}, higher on most seeds, test error at most "
                f"{ADOPT_ERROR:+.2f} points, >= {ADOPT_SEEDS} seeds): "
                f"{'met' if adopt(ratios, errs) else 'not met'}.")
        if missing and (ratios or theirs):
            which = (f"seed {missing[0]} is" if len(missing) == 1 else
                     f"seeds {', '.join(map(str, missing))} are")
            notes.append(f"- {NETS.get(net, net)}: {which} in one run only, not paired.")
    return lines + [""] + notes if paired else []


def section(runs: list[Path], source: dict[str, Path],
            per_net: dict[str, list[dict[str, Any]]], summary: dict[str, Any],
            settings: list[dict[str, Any]], remarks: list[str] | None = None,
            paired: list[str] | None = None, against: list[Path] | None = None) -> str:
    """The BENCHMARKS.md section of the runs (as given on the command line), with
    ``source`` naming each net's run, ``settings`` each run's ``[compress]`` table,
    ``remarks`` what the writer adds about how the runs were made and ``paired`` the
    lines of :func:`paired_lines` (for ``--against``)."""
    given = " ".join([*map(str, runs), *(f"--against {r}" for r in against or [])])
    if len(runs) == 1:
        origin = ""
    else:
        origin = ", one run per net: " + ", ".join(
            f"{NETS.get(net, net)} from `{run}`" for net, run in source.items())
    lines = [
        f"`python benchmarks/record.py {given} --write` after `leanbits study record`"
        f"{origin} ({platform.machine()}, {dt.date.today().isoformat()}). Every file was "
        "chosen by `leanbits compress` on the validation split only (the smallest decoded "
        f"file within {_max_drop_text(runs, settings)} of the trained model's validation "
        "accuracy); test error is that of the decoded file, read once after the choice. "
        "Compression = 32 x dense parameters / file bits (everything counted); weights kept "
        "= dense weights / stored nonzero weights. Mean +- sample std over seeds. "
        + recipe_text(source, dict(zip(runs, settings, strict=True)))
        + "".join(f" {r.strip()}" for r in remarks or []),
        "",
        "| net | seeds | compression (total bits) | weights kept | test error % | "
        "train s / seed | compress s / seed |",
        "|---|---|---|---|---|---|---|",
    ]
    for net, s in summary.items():
        lines.append(
            f"| {NETS.get(net, net)} | {len(s['seeds'])} | {s['compression_mean']:.1f} +- "
            f"{s['compression_std']:.1f}x | {s['weights_kept_mean']:.1f} +- "
            f"{s['weights_kept_std']:.1f}x | {s['test_error_pct_mean']:.2f} +- "
            f"{s['test_error_pct_std']:.2f} | {s['train_s_mean']:.0f} | "
            f"{s['compress_s_mean']:.0f} |")
    lines += ["", "Published anchors (dense float32 size / stored size, MNIST test error) and "
              "the issue's goals:", "", "| net | weights kept | storage | goal |",
              "|---|---|---|---|"]
    for net, a in ANCHORS.items():
        lines.append(f"| {NETS[net]} | {a['weights kept']} | {a['storage']} | {a['goal']} |")
    lines += ["", "Against the goals and the storage anchors (a file beats an anchor with more "
              "compression at no higher test error):", ""]
    lines += [reading(net, s, per_net.get(net)) for net, s in summary.items()]
    lines += ["", "Per seed (compress epochs: backprop epochs the search spent; \"all\": "
              "it stopped because its budget was spent):", "",
              "| net | seed | method | bits | codebook epochs | nonzero | bytes | "
              "compression | weights kept | test error % | val acc (required) | "
              "compress epochs |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for net, rows in per_net.items():
        for r in rows:
            spent = " (all)" if r["budget_exhausted"] else ""
            lines.append(
                f"| {NETS.get(net, net)} | {r['seed']} | {r['method']} | {r['bits']} | "
                f"{r['codebook_epochs']} | {r['nonzero']:,} | {r['file_bytes']:,} | "
                f"{r['compression']:.1f}x | {r['weights_kept']:.1f}x | "
                f"{r['test_error_pct']:.2f} | {r['val_acc']:.4f} "
                f"({r['required_val_acc']:.4f}) | {r['compress_epochs']:g}{spent} |")
    lines += ["", *quant_lines(per_net)]
    if paired:
        lines += ["", *paired]
    return "\n".join(lines)


def _quant_cell(x: dict[str, Any]) -> str:
    """A quantizer's smallest passing file (or none) and, in brackets, its candidates."""
    return ("none" if x["bits"] is None else f"{x['bits']:,}") + f" ({x['tried']})"


def quant_lines(per_net: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The quantizers paired by seed: per seed each one's smallest file that met the
    validation requirement in the same search, and per net how often and by how much
    the rate-aware one (ECSQ) was smaller."""
    plain, rate = QUANTS
    lines = ["Rate-aware quantization (ECSQ) against k-means, paired by seed: in each "
             "seed's search, the smallest file of each quantizer that met the validation "
             "requirement (candidates scored per quantizer in brackets; the chosen file is "
             "the smaller of the two).", "",
             "| net | seed | k-means bits | ECSQ bits | k-means / ECSQ |", "|---|---|---|---|---|"]
    notes = []
    for net, rows in per_net.items():
        ratios = []
        for r in rows:
            q = r["quants"]
            a, b = q[plain]["bits"], q[rate]["bits"]
            ratio = a / b if a is not None and b is not None else None
            if ratio is not None:
                ratios.append(ratio)

            lines.append(f"| {NETS.get(net, net)} | {r['seed']} | {_quant_cell(q[plain])} | "
                         f"{_quant_cell(q[rate])} | "
                         f"{'-' if ratio is None else f'{ratio:.3f}'} |")
        if ratios:
            smaller = sum(x > 1 for x in ratios)
            notes.append(
                f"- {NETS.get(net, net)}: ECSQ's file is smaller in {smaller} of "
                f"{len(ratios)} seeds with both; k-means / ECSQ bits {statistics.fmean(ratios):.3f}"
                f" on average (range {min(ratios):.3f}-{max(ratios):.3f}).")
    tried = {q: sum(r["quants"][q]["tried"] for rows in per_net.values() for r in rows)
             for q in QUANTS}
    if tried[plain] != tried[rate]:
        notes.append(f"- The searches scored {tried[rate]:,} ECSQ candidates against "
                     f"{tried[plain]:,} k-means ones in all (the grid gives ECSQ one per rate "
                     "lambda), so ECSQ had more chances to pass validation.")
    return lines + ([""] + notes if notes else [])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN",
                   help="run directory of `leanbits study record`; several are merged, "
                   "each net from the one run that holds it")
    p.add_argument("--write", action="store_true",
                   help="update BENCHMARKS.md and docs/results/record/summary.json")
    p.add_argument("--remark", action="append", default=[], metavar="TEXT",
                   help="a sentence about how the runs were made that the runs cannot tell "
                   "(the commit, the machine's load); repeatable, printed after the command")
    p.add_argument("--against", type=Path, action="append", default=[], metavar="RUN",
                   help="an earlier record run (another recipe) to compare with, paired by "
                   "seed; repeatable, one comparison per run")
    p.add_argument("--summary", type=Path, default=None,
                   help="write summary.json here (default with --write: "
                   "docs/results/record/summary.json)")
    args = p.parse_args(argv)
    for run in [*args.runs, *args.against]:
        if not (run / "experiment.toml").is_file():
            print(f"record.py: {run} is not a run directory (no experiment.toml); run "
                  "`leanbits study record` first", file=sys.stderr)
            return 2
    try:
        per_net, source = gather(args.runs)
        others = [gather([run])[0] for run in args.against]  # each its own comparison
    except LeanbitsError as err:
        print(f"record.py: {err}", file=sys.stderr)
        return 2
    summary = summarize(per_net)

    def compress_table(run: Path) -> dict[str, Any]:
        return load_experiment(run / "experiment.toml").settings.get("compress", {})

    settings = [compress_table(run) for run in args.runs]
    paired = []
    for run, nets in zip(args.against, others, strict=True):
        recipe = recipe_text({net: run for net in nets}, {run: compress_table(run)})
        paired += ([""] if paired else []) + paired_lines(per_net, run, nets, recipe)
    body = section(args.runs, source, per_net, summary, settings, args.remark, paired,
                   args.against)
    target = args.summary or (ROOT / "docs/results/record/summary.json" if args.write
                              else None)
    if target is not None:
        write_text_atomic(target, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    if args.write:
        update_section(ROOT / "BENCHMARKS.md", TITLE, body)
    else:
        print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
