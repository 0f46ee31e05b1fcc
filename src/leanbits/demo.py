"""The main job (``make demo``), on real MNIST:

1. train LeNet-300-100 with an LLR head (per-epoch diagnostics in ``metrics.jsonl``);
2. profile the snapshot: accuracy against nonzero weights with and without the bias
   re-fit, over a range of sparsities (``profile.json``);
3. snapshot-prune it to the sparsest level within 0.2 points of its validation accuracy
   (weights pruned once, only the biases re-fitted; bisection on validation accuracy);
4. quantize the compact model at 2-6 bits, count every bit, pack the fewest-bit version
   that keeps the pruned model's validation accuracy (within 0.1 points), and check the
   accuracy of the unpacked file (``results.jsonl``, ``model.lbits``);
5. write the report (Markdown + HTML with plots) of all of it.

Everything lands in one run directory, named by a hash of the training config.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

from leanbits.config import stage_hash, to_dict
from leanbits.report.tables import table
from leanbits.train import DataConfig, TrainConfig, evaluate, run_name, train

STEPS = 5


def _say(step: int, text: str) -> None:
    print(f"\n[{step}/{STEPS}] {text}", file=sys.stderr, flush=True)


def run(runs: Path = Path("runs"), epochs: int = 12, quick: bool = False) -> Path:
    """Run the demo pipeline; returns the run directory.

    Args:
        runs: parent directory of the run directory.
        epochs: training epochs.
        quick: a much smaller version (used by the test suite).
    """
    from leanbits import snapshot
    from leanbits.bits.cli import BitsConfig, evaluate_lbits, quantize_snapshot
    from leanbits.cli import load_data
    from leanbits.fileio import write_bytes_atomic, write_text_atomic
    from leanbits.prune import PruneConfig
    from leanbits.prune.cli import save_result
    from leanbits.prune.search import profile, prune_to_target
    from leanbits.report.build import build_report

    data_cfg = DataConfig(limit_train=3000 if quick else None)
    cfg = TrainConfig(model="lenet-300-100", head="llr", epochs=2 if quick else epochs,
                      lr=0.05, seed=1, l2=5e-5, train_eval_size=1000 if quick else 5000)
    out = Path(runs) / run_name(data_cfg, cfg)
    splits = load_data(data_cfg.dataset, data_cfg.val_size, data_cfg.split_seed,
                       data_cfg.limit_train)

    _say(1, f"training LeNet-300-100 (llr head) on MNIST -> {out}")
    result = train(data_cfg, cfg, splits, out)
    rows = [[h["epoch"], h["train_loss"], h["val_acc"], h["mean_abs_output"],
             max(v["max_abs"] for v in h["layers"].values())] for h in result.history]
    print(table(["epoch", "train loss", "val acc", "mean |LLR|", "max |w|"], rows,
                title="training"))
    f = result.final
    print(f"trained: val acc {f['val_acc']:.4f}, test acc {f['test_acc']:.4f}, "
          f"{f['params']:,} parameters, {f['train_time_s']:.0f}s")
    snap = snapshot.load(out)

    _say(2, "efficiency profile: prune once at several sparsities, with and without the "
         "bias re-fit")
    levels = [0.5, 0.8, 0.9] if quick else [0.5, 0.7, 0.8, 0.9, 0.95, 0.98]
    prof_cfg = PruneConfig(refit_epochs=1)
    prof = profile(snap, ["none", "refit"], levels, splits, prof_cfg)
    write_text_atomic(out / "profile.json", json.dumps(
        {"source": str(out.resolve()), "config": to_dict(prof_cfg), "methods": ["none", "refit"],
         "sparsities": levels, "rows": prof}, indent=2, sort_keys=True))
    print(table(["method", "sparsity", "val acc", "nonzero weights"],
                [[r["method"], r["sparsity_requested"], r.get("val_acc"),
                  r.get("nonzero_weights")] for r in prof], title="profile"))

    _say(3, "snapshot pruning to the sparsest level within 0.2 points of validation "
         "accuracy (bisection; only biases re-fitted)")
    pcfg = PruneConfig(method="refit", max_drop=0.002, refit_epochs=1, search_lo=0.5,
                       search_hi=0.995, search_tol=0.02 if quick else 0.005)
    pruned, rep, _ = prune_to_target(snap, splits, pcfg)
    pruned.config["source"] = str(out.resolve())
    rep["source"] = str(out.resolve())
    pdir = out / f"prune-{stage_hash(pcfg)}"
    save_result(pdir, pruned, rep)
    d = rep["dense"]
    print(table(
        ["model", "val acc", "test acc", "nonzero weights", "effective conn.", "MACs/example",
         "widths"],
        [["dense", d["val_acc"], d["test_acc"], d["nonzero_weights"], d["nonzero_weights"],
          d["macs_dense"], "784-300-100-10"],
         [f"refit @ {rep['sparsity']:.3f}", rep["val_acc"], rep["test_acc"],
          rep["nonzero_weights"], rep["effective_connections"], rep["macs_effective"],
          "-".join(map(str, [784, *rep["compact"]["fc"], 10]))]],
        title="before / after snapshot pruning"))
    print(f"re-fit cost: {rep['backprop_epochs']} backprop epoch(s) over biases only, "
          f"{rep['wall_time_s']:.1f}s")

    _say(4, "quantizing the compact model (k-means, 2-6 bits, biases re-fitted), coding "
         "positions and values, packing")
    compact = snapshot.load(pdir / "compact")
    dense_f32_bits = 32 * f["params"]
    points: list[dict[str, Any]] = []
    encoded_by_bits = {}
    for b in (2, 3, 4, 5, 6):
        bcfg = BitsConfig(bits=b, quant="kmeans", index="auto", values="entropy", refit=1)
        encoded, _ = quantize_snapshot(compact, bcfg, splits)
        encoded_by_bits[b] = encoded
        model = copy.deepcopy(compact.model)  # the snapshot's own weights stay unquantized
        model.load_state_dict(encoded.state)

        accs = {s: evaluate(model, compact.head, getattr(splits, s).x,
                            getattr(splits, s).y)["acc"] for s in ("val", "test")}
        acc = encoded.account
        points.append({"name": f"refit {rep['sparsity']:.3f} / {b}-bit", "bits": b,
                       "head": "llr", "method": "refit", "sparsity": rep["sparsity"],
                       "val_acc": accs["val"], "test_acc": accs["test"],
                       "nonzero_weights": acc.nonzero, "total_bits": acc.total_bits,
                       "compression_vs_dense_f32": dense_f32_bits / acc.total_bits,
                       "account": acc.to_dict()})
    write_text_atomic(out / "results.jsonl",
                      "".join(json.dumps(p, sort_keys=True) + "\n" for p in points))
    keep = [p for p in points if p["val_acc"] >= rep["val_acc"] - 0.001]
    best = min(keep, key=lambda p: p["total_bits"]) if keep else max(
        points, key=lambda p: p["val_acc"])
    print(table(["bits/weight", "total bits", "bytes", "x smaller than f32", "val acc",
                 "test acc"],
                [[p["bits"], p["total_bits"], (p["total_bits"] + 7) // 8,
                  p["compression_vs_dense_f32"], p["val_acc"], p["test_acc"]] for p in points],
                title="accuracy against total bits (compact pruned model)"))
    lbits = out / "model.lbits"
    encoded = encoded_by_bits[best["bits"]]
    write_bytes_atomic(lbits, encoded.data)
    ev = evaluate_lbits(lbits, splits)
    size = lbits.stat().st_size
    assert size == encoded.account.total_bytes, "file size must equal the bit account"
    print(encoded.account.format_table())
    print(table(["file", "bytes", "x smaller than dense float32", "val acc", "test acc"],
                [[str(lbits), size, dense_f32_bits / (8 * size), ev["val_acc"],
                  ev["test_acc"]]], title="packed model (accuracy of the unpacked file)"))

    _say(5, "writing the report")
    files = build_report(out)
    print(f"\nsnapshot: {out}\npruned:   {pdir}\npacked:   {lbits} ({size:,} bytes, "
          f"{dense_f32_bits / (8 * size):.1f}x smaller than dense float32, "
          f"test acc {ev['test_acc']:.4f})\nreport:   {files.html}")
    return out
