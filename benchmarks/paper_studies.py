"""Headline numbers of the paper's four studies, each beside the claim it tests.

For every study run found under RUNS (``RUNS/explosion``, ``RUNS/regularization``,
``RUNS/snapshot``, ``RUNS/frontier-mnist``, ``RUNS/frontier-fashion``) this writes the
study's report (Markdown, figures, HTML) into ``docs/results/<name>/``, a summary with a
verdict per claim into ``docs/results/README.md``, and the same tables into BENCHMARKS.md.

    python benchmarks/paper_studies.py runs/studies [--write]

The runs: `leanbits study NAME --out runs/studies/NAME --jobs 2` for explosion,
regularization and snapshot; the frontier study as in benchmarks/bits_mnist.py
(`--set 'train.vary.model=["lenet-300-100","lenet5"]'` into runs/studies/frontier-mnist),
and once more with `--set data.dataset=fashion-mnist --set train.epochs=12
--set train.lr=0.02` (at 0.05 LeNet-5 diverged in its first epoch on Fashion-MNIST) into
runs/studies/frontier-fashion. Each run directory keeps the effective experiment.toml.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_md import update_section  # noqa: E402

from leanbits.fileio import write_text_atomic  # noqa: E402
from leanbits.report.build import build_report  # noqa: E402
from leanbits.results import Row  # noqa: E402
from leanbits.sweep.frontier import min_bits_table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def mean(xs: list[float]) -> float:
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return statistics.fmean(xs) if xs else math.nan


def load_rows(run: Path) -> list[Row]:
    return [Row.from_dict(r) for r in json.loads((run / "results.json").read_text())["rows"]]


def history(run: Path, row: Row) -> list[dict[str, Any]]:
    f = run / "stages" / row.stages["train"] / "metrics.jsonl"
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]


def total_l2(rec: dict[str, Any]) -> float:
    return math.sqrt(sum(v["l2_norm"] ** 2 for v in rec["layers"].values()))


def max_abs(rec: dict[str, Any]) -> float:
    return max(v["max_abs"] for v in rec["layers"].values())


def unique_train(rows: list[Row]) -> list[Row]:
    seen, out = set(), []
    for r in rows:
        if r.stages["train"] not in seen:
            seen.add(r.stages["train"])
            out.append(r)
    return out


def fmt(x: Any, d: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float):
        return f"{x:.{d}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(out)


# ----------------------------------------------------------------------------- claims 1, 2
def explosion(run: Path) -> tuple[str, str]:
    rows = load_rows(run)
    agg: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in unique_train(rows):
        h = history(run, r)
        key = (r.axes["head"], r.axes["weight_decay"])
        first, last = h[min(4, len(h) - 1)], h[-1]
        a = agg[key]
        a["l2_5"].append(total_l2(first))
        a["l2_end"].append(total_l2(last))
        a["max_end"].append(max_abs(last))
        a["out_end"].append(last["mean_abs_output"])
        a["gap_acc"].append(last["gap_acc"])
        a["loss_gap"].append(last["val_loss"] - last["train_eval_loss"])
        a["val_min_loss_epoch"].append(min(h, key=lambda e: e["val_loss"])["epoch"])
        a["val_acc"].append(last["val_acc"])
        a["epochs"].append(len(h))
    q: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for r in rows:
        q[(r.axes["head"], r.axes["weight_decay"], r.axes["bits"])].append(r.test_acc)
    table_rows = []
    for (head, wd), a in sorted(agg.items()):
        table_rows.append([head, wd, mean(a["l2_5"]), mean(a["l2_end"]),
                           mean(a["l2_end"]) / mean(a["l2_5"]), mean(a["max_end"]),
                           mean(a["out_end"]), mean(a["gap_acc"]), mean(a["loss_gap"]),
                           mean(a["val_min_loss_epoch"]), mean(a["val_acc"]),
                           mean(q[(head, wd, 4)]), mean(q[(head, wd, 8)])])
    epochs = int(mean(next(iter(agg.values()))["epochs"]))
    text = md_table(["head", "weight decay", "weight L2 @ epoch 5", f"weight L2 @ {epochs}",
                     "growth", "max abs w", "mean abs output", "train-val acc gap",
                     "val-train loss gap", "epoch of min val loss", "val acc",
                     "test acc, 4-bit uniform", "test acc, 8-bit uniform"], table_rows)
    off = {h: a for (h, wd), a in agg.items() if wd == "off"}
    g = {h: mean(a["l2_end"]) / mean(a["l2_5"]) for h, a in off.items()}
    # Accuracy gaps compare across heads; losses do not (a sum of K binary cross-entropies
    # and one cross-entropy have different scales). Differences under 0.1 point (5
    # validation examples) are noise.
    gap = {h: mean(agg[(h, "off")]["gap_acc"]) for h in off}
    c1 = all(g["softmax"] > 1.05 * g[h] for h in g if h != "softmax")
    c2 = all(gap["softmax"] > gap[h] + 0.001 for h in gap if h != "softmax")
    verdict = (
        f"**Claim 1 (softmax causes parameter explosion): "
        f"{'supported' if c1 else 'not supported'}.** Without weight decay, the total weight "
        f"L2 norm grows {g['softmax']:.2f}x from epoch 5 to the end with softmax, against "
        + ", ".join(f"{g[h]:.2f}x with {h}" for h in g if h != "softmax")
        + ". With weight decay: " + ", ".join(
            f"{h} {mean(a['l2_end']) / mean(a['l2_5']):.2f}x"
            for (h, wd), a in sorted(agg.items()) if wd != "off") + "."
        f"\n\n**Claim 2 (an LLR output layer reduces overfitting): "
        f"{'supported' if c2 else 'not supported'}** by the train-minus-validation accuracy "
        "gap (training subset in eval mode) without weight decay: "
        + ", ".join(f"{h} {100 * gap[h]:.2f} points" for h in gap)
        + " (loss gaps, which use each head's own loss, and the epoch of minimum validation "
        "loss are in the table).")
    return text, verdict


# ----------------------------------------------------------------------------- claim 3
def regularization(run: Path) -> tuple[str, str]:
    rows = load_rows(run)
    agg: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in unique_train(rows):
        h = history(run, r)
        last = h[-1]
        a = agg[r.axes["regularizer"]]
        a["gap_acc"].append(last["gap_acc"])
        a["loss_gap"].append(last["val_loss"] - last["train_eval_loss"])
        a["val_acc"].append(last["val_acc"])
        a["test_acc"].append(r.metrics["train"]["test_acc"])
        zeros = sum(v["zero_frac"] * v["numel"] for v in last["layers"].values())
        a["zero_frac"].append(zeros / sum(v["numel"] for v in last["layers"].values()))
        a["dead"].append(sum(last["dead_units"].values()))
    pr: dict[tuple[str, float], list[float]] = defaultdict(list)
    for r in rows:
        if "prune" in r.stages:
            pr[(r.axes["regularizer"], r.axes["level"])].append(r.metrics["prune"]
                                                                       ["test_acc"])
    levels = sorted({lv for _, lv in pr})
    table_rows = []
    for reg, a in agg.items():
        table_rows.append([reg, mean(a["gap_acc"]), mean(a["loss_gap"]), mean(a["val_acc"]),
                           mean(a["test_acc"]), mean(a["zero_frac"]), mean(a["dead"])]
                          + [mean(pr[(reg, lv)]) for lv in levels])
    text = md_table(["regularizer", "train-val acc gap", "val-train loss gap", "val acc",
                     "test acc", "exact-zero weights", "dead units"]
                    + [f"test acc, refit @ {lv}" for lv in levels], table_rows)
    # One head (llr) throughout, so loss gaps compare here; a regularizer "reduces
    # overfitting" when it lowers the accuracy gap by > 0.1 point or the loss gap by > 10 %.
    none_gap = mean(agg["none"]["gap_acc"])
    none_loss_gap = mean(agg["none"]["loss_gap"])
    better = [k for k in agg if k != "none" and (
        mean(agg[k]["gap_acc"]) < none_gap - 0.001
        or mean(agg[k]["loss_gap"]) < 0.9 * none_loss_gap)]
    hi = levels[-1] if levels else None
    best_hi = max(agg, key=lambda k: mean(pr[(k, hi)])) if hi is not None else None
    status = ("supported" if len(better) == len(agg) - 1
              else "partly supported" if better else "not supported")
    verdict = (
        f"**Claim 3 (weight decay and structural regularization reduce overfitting with "
        f"ReLU): {status}.** "
        f"Without regularization the train-minus-validation gap is {100 * none_gap:.2f} "
        f"accuracy points and {none_loss_gap:.3f} in loss; "
        + ", ".join(f"{k} {100 * mean(agg[k]['gap_acc']):.2f} / {mean(agg[k]['loss_gap']):.3f}"
                    for k in agg if k != "none")
        + f" (reduced: {', '.join(better) or 'none'})"
        + f". Most prunable at sparsity {hi}: {best_hi} "
        f"(test acc {mean(pr[(best_hi, hi)]):.4f} after pruning once and re-fitting biases).")
    return text, verdict


# ----------------------------------------------------------------------------- claim 4
def snapshot_study(run: Path) -> tuple[str, str]:
    rows = load_rows(run)
    acc: dict[tuple[str, float], list[float]] = defaultdict(list)
    cost: dict[tuple[str, float], list[float]] = defaultdict(list)
    wall: dict[tuple[str, float], list[float]] = defaultdict(list)
    for r in rows:
        key = (r.axes["method"], r.axes["sparsity"])
        acc[key].append(r.test_acc)
        cost[key].append(r.metrics["prune"].get("backprop_epochs", 0))
        st = run / "stages" / r.stages["prune"] / "stage.json"
        if st.is_file():
            wall[key].append(json.loads(st.read_text()).get("seconds", math.nan))
    methods = list(dict.fromkeys(m for m, _ in acc))
    levels = sorted({s for _, s in acc})
    dense = mean([r.metrics["train"]["test_acc"] for r in unique_train(rows)])
    table_rows = [[m] + [mean(acc[(m, s)]) for s in levels]
                  + [mean(cost[(m, levels[0])]), mean([mean(wall[(m, s)]) for s in levels])]
                  for m in methods]
    text = (f"Dense test accuracy (mean of seeds): {dense:.4f}\n\n" + md_table(
        ["method"] + [f"test acc @ {s}" for s in levels]
        + ["backprop epochs", "mean stage seconds"], table_rows))
    within = [s for s in levels
              if mean(acc[("refit", s)]) >= mean(acc[("finetune", s)]) - 0.005]
    beyond = [s for s in levels if s not in within]
    time_ratio = mean([mean(wall[("finetune", s)]) for s in levels]) / max(
        1e-9, mean([mean(wall[("refit", s)]) for s in levels]))
    beats_none = all(mean(acc[("refit", s)]) >= mean(acc[("none", s)]) for s in levels)
    verdict = (
        f"**Claim 4 (prune a snapshot once, re-fit only non-weights): "
        f"{'supported up to sparsity ' + str(max(within)) if within else 'not supported'}"
        f".** Re-fitting biases only is at least as good as no re-fit at "
        f"{'every' if beats_none else 'not every'} level and stays within 0.5 points of "
        f"masked fine-tuning at sparsities {', '.join(map(str, within)) or 'none'}"
        + (f"; above that, fine-tuning the weights keeps more accuracy (at {beyond[-1]}: "
           f"refit {mean(acc[('refit', beyond[-1])]):.4f}, finetune "
           f"{mean(acc[('finetune', beyond[-1])]):.4f}), at "
           f"{time_ratio:.1f}x the wall time per stage" if beyond else "") + " (table).")
    return text, verdict


# ----------------------------------------------------------------------------- claim 5
def frontier_study(run: Path, levels: list[float]) -> tuple[str, str]:
    rows = [r for r in load_rows(run) if r.total_bits]
    groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for r in rows:
        groups[(r.axes["model"], r.axes["head"])].append(r)
    table_rows = []
    best: dict[float, tuple[int, str]] = {}
    for (model, head), rs in sorted(groups.items()):
        t = min_bits_table(rs, levels)
        table_rows.append([model, head, max(r.val_acc for r in rs)]
                          + [e["bits"] for e in t])
        for e in t:
            if e["bits"] is not None and (e["level"] not in best
                                          or e["bits"] < best[e["level"]][0]):
                r = e["row"]
                best[e["level"]] = (e["bits"], f"{model}/{head}, {r.axes.get('method', '-')}"
                                    f" @ {r.axes.get('level')}, {r.axes['bits']}-bit")
    text = md_table(["model", "head", "best val acc"]
                    + [f"fewest bits for val acc >= {lv}" for lv in levels], table_rows)
    text += "\n\nFewest bits over all models and heads (our empirical lower bound):\n\n"
    text += md_table(["val acc level", "fewest total bits", "bytes", "configuration"],
                     [[lv, b, (b + 7) // 8, c] for lv, (b, c) in sorted(best.items())])
    reached = [lv for lv in levels
               if len({m for (m, _h), rs in groups.items()
                       if min_bits_table(rs, [lv])[0]["bits"] is not None}) >= 2]
    if reached:
        lv = max(reached)
        per_model: dict[str, int] = {}
        per_head: dict[str, int] = {}
        for (model, head), rs in groups.items():
            b = min_bits_table(rs, [lv])[0]["bits"]
            if b is not None:
                per_model[model] = min(b, per_model.get(model, b))
                per_head[head] = min(b, per_head.get(head, b))
        facts = (f"At validation accuracy >= {lv}, the fewest bits per architecture: "
                 + ", ".join(f"{m} {b:,}" for m, b in sorted(per_model.items(),
                                                             key=lambda kv: kv[1]))
                 + "; per head (best architecture): "
                 + ", ".join(f"{h} {b:,}" for h, b in sorted(per_head.items(),
                                                            key=lambda kv: kv[1])) + ".")
    else:
        facts = "No accuracy level was reached by two architectures."
    verdict = (
        "**Claim 5 (compare networks by accuracy against total bits; a lower bound per "
        "accuracy level): measured, not a yes/no claim.** " + facts + " These are upper "
        "bounds on the true minimum (our best effort), reported as the empirical lower "
        "envelope of everything tried.")
    return text, verdict


STUDIES = {
    "explosion": ("Claims 1 and 2: softmax and weight growth; LLR heads and overfitting",
                  explosion),
    "regularization": ("Claim 3: weight decay and structural regularization", regularization),
    "snapshot": ("Claim 4: snapshot pruning with non-weight re-fit against baselines",
                 snapshot_study),
    "frontier-mnist": ("Claim 5: accuracy against total bits, MNIST",
                       lambda run: frontier_study(run, [0.97, 0.98, 0.985, 0.99])),
    "frontier-fashion": ("Claim 5: accuracy against total bits, Fashion-MNIST",
                         lambda run: frontier_study(run, [0.85, 0.88, 0.90, 0.91])),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, help="directory holding the study run directories")
    ap.add_argument("--write", action="store_true",
                    help="write docs/results/ and update BENCHMARKS.md")
    ap.add_argument("--only", help="comma-separated study names")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None
    sections = []
    for name, (title, fn) in STUDIES.items():
        run = args.runs / name
        if (only and name not in only) or not (run / "results.json").is_file():
            continue
        text, verdict = fn(run)
        if args.write:
            build_report(run, out_dir=ROOT / "docs" / "results" / name)
        body = (f"{verdict}\n\n{text}\n\nReport with plots: "
                f"[docs/results/{name}/report.md](docs/results/{name}/report.md)")
        sections.append((title, body))
        print(f"## {title}\n\n{body}\n")
    header = (f"Command: `python benchmarks/paper_studies.py {args.runs} --write`  \n"
              f"Machine: {platform.machine()}, 2 cores, torch {torch.__version__}  \n"
              f"Date: {dt.date.today().isoformat()}\n")
    if args.write and sections:
        for title, body in sections:
            update_section(ROOT / "BENCHMARKS.md", title, header + "\n" + body.replace(
                "(docs/results/", "(docs/results/"))
        summary = ["# What our measurements say about the paper's claims", "",
                   "Each section is written by `benchmarks/paper_studies.py` from a full study "
                   "run; the report beside it has the plots and every number.", "", header]
        for title, body in sections:
            summary += [f"## {title}", "", body.replace("docs/results/", ""), ""]
        write_text_atomic(ROOT / "docs" / "results" / "README.md", "\n".join(summary))


if __name__ == "__main__":
    main()
