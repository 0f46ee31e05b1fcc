"""The main job (``make demo``): on real MNIST, train LeNet-300-100 with an LLR head,
snapshot-prune it to the sparsest level within 0.2 points of its validation accuracy
(weights pruned once, only biases re-fitted), pack the compact model into a ``.lbits``
file, check the unpacked model's accuracy, and write a report with plots.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

from leanbits.report.tables import table
from leanbits.train import DataConfig, TrainConfig, run_name, train


def _say(step: int, total: int, text: str) -> None:
    print(f"\n[{step}/{total}] {text}", file=sys.stderr, flush=True)


def run(runs: Path = Path("runs"), epochs: int = 12, quick: bool = False) -> Path:
    """Run the demo pipeline; returns the training run directory.

    Args:
        runs: parent directory of the run directories.
        epochs: training epochs.
        quick: a much smaller version (used by the test suite).
    """
    from leanbits import snapshot
    from leanbits.bits import count_bits
    from leanbits.bits.cli import BitsConfig, evaluate_lbits, quantize_snapshot
    from leanbits.cli import load_data
    from leanbits.fileio import write_bytes_atomic
    from leanbits.prune import PruneConfig
    from leanbits.prune.cli import _default_out, save_result
    from leanbits.prune.search import prune_to_target

    steps = 4
    data_cfg = DataConfig(limit_train=3000 if quick else None)
    cfg = TrainConfig(model="lenet-300-100", head="llr", epochs=2 if quick else epochs,
                      lr=0.05, seed=1, l2=5e-5, train_eval_size=1000 if quick else 5000)
    out = runs / run_name(data_cfg, cfg)
    splits = load_data(data_cfg.dataset, data_cfg.val_size, data_cfg.split_seed,
                       data_cfg.limit_train)

    # 1. train
    _say(1, steps, f"training LeNet-300-100 (llr head) on MNIST -> {out}")
    result = train(data_cfg, cfg, splits, out)
    rows = [[h["epoch"], h["train_loss"], h["val_acc"], h["mean_abs_output"],
             max(v["max_abs"] for v in h["layers"].values())] for h in result.history]
    print(table(["epoch", "train loss", "val acc", "mean |LLR|", "max |w|"], rows,
                title="training"))
    f = result.final
    print(f"trained: val acc {f['val_acc']:.4f}, test acc {f['test_acc']:.4f}, "
          f"{f['params']:,} parameters, {f['train_time_s']:.0f}s")

    # 2. snapshot-prune: sparsest level within 0.2 points of validation accuracy
    _say(2, steps, "snapshot pruning: prune once, re-fit only the biases, bisect the "
         "sparsity on validation accuracy (max drop 0.2 points)")
    snap = snapshot.load(out)
    pcfg = PruneConfig(method="refit", max_drop=0.002, refit_epochs=1,
                       search_lo=0.5, search_hi=0.995, search_tol=0.005)
    pruned, rep, _ = prune_to_target(snap, splits, pcfg)
    pruned.config["source"] = str(out.resolve())
    rep["source"] = str(out.resolve())
    pdir = _default_out(out, "prune", pcfg)
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
          f"{rep['wall_time_s']:.1f}s; pruned snapshot: {pdir}")

    # 3. quantize + code + pack the compact model
    _say(3, steps, "quantizing (5-bit k-means), coding positions and values, packing")
    compact = snapshot.load(pdir / "compact")
    bcfg = BitsConfig(bits=5, quant="kmeans", index="auto", values="entropy", refit=1)
    encoded, _ = quantize_snapshot(compact, bcfg, splits)
    lbits = pdir / "model.lbits"
    write_bytes_atomic(lbits, encoded.data)
    acc = encoded.account
    dense_f32_bytes = 4 * f["params"]
    ev = evaluate_lbits(lbits, splits)
    print(acc.format_table())
    print(table(
        ["file", "bytes", "x smaller than dense float32", "val acc", "test acc"],
        [[str(lbits), lbits.stat().st_size, dense_f32_bytes / lbits.stat().st_size,
          ev["val_acc"], ev["test_acc"]]], title="packed model (accuracy of the unpacked file)"))
    assert lbits.stat().st_size == acc.total_bytes
    dense_bits = count_bits(copy.deepcopy(snap.model), snap.plan, snap.head, bits=16,
                            quant="uniform", index="dense", values="fixed",
                            nonweight_dtype="float32")
    print(f"for scale: the dense model at 16-bit uniform is {dense_bits.total_bytes:,} bytes")

    # 4. report
    _say(4, steps, "writing the report")
    try:
        from leanbits.report.build import build_report
    except ImportError:  # pragma: no cover - report module optional while developing
        build_report = None
    if build_report is not None:
        paths = build_report(runs if quick else out.parent, out_dir=out / "report")
        print(f"report: {paths}")
    print(f"\nsnapshot: {out}\npruned:   {pdir}\npacked:   {lbits}")
    return out
