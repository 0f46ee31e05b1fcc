"""Rate-aware quantization on pruned MNIST LeNet-300-100: k-means against ECSQ, codebook
fine-tuning, row counts in the position coder, and int8 biases.

Trains LeNet-300-100 (llr head, 20 epochs), prunes it by global magnitude with 2 epochs of
masked fine-tuning to 90, 95 and 98 % sparsity, then packs each pruned model with

* ``kmeans``: Deep Compression's codebook, 2..6 bits;
* ``ecsq``: entropy-constrained scalar quantization, at most 2**b levels (b = 2, 3, 4, 6)
  for several ``rate_lambda``;

each without and with codebook fine-tuning (codebook entries and biases trained for one
epoch with the codes fixed, so the bits do not change). Every point is a real ``.lbits``
encoding, decoded and evaluated: *value bits* are what the file spends on the nonzero
weights' values (range-coded codes with their frequency table, plus the float32
codebook).

Selection uses validation only: for each k-means point, the ECSQ point (same sparsity,
same fine-tuning) with the fewest value bits among those whose validation accuracy is at
least the k-means point's. Test accuracy is reported beside, never used.

Two more tables on the same snapshots: the position bits of the ``coded`` index with and
without row counts (format version 2), and the file with float16 against int8 non-weights
(biases), int8 being used only when it keeps the validation accuracy.

    python benchmarks/rate_quant.py [--write] [--epochs 20] [--out runs/bench/rate_quant]

The trained and pruned snapshots are kept under ``--out`` and reused by a second run.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_md import update_section  # noqa: E402

from leanbits import snapshot  # noqa: E402
from leanbits.bits.container import decode, encode  # noqa: E402
from leanbits.bits.finetune import codebooks_of, finetune_codebook  # noqa: E402
from leanbits.bits.index import coded_encode, golomb_bits  # noqa: E402
from leanbits.data.datasets import load_splits  # noqa: E402
from leanbits.fileio import write_text_atomic  # noqa: E402
from leanbits.models import build  # noqa: E402
from leanbits.prune import prune_snapshot  # noqa: E402
from leanbits.train import DataConfig, TrainConfig, evaluate, train  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPARSITIES = (0.9, 0.95, 0.98)
KMEANS_BITS = (2, 3, 4, 5, 6)
ECSQ_BITS = (2, 3, 4, 6)
LAMBDAS = (0.005, 0.01, 0.02, 0.03, 0.05)
FT_EPOCHS, FT_LR = 1, 1e-4


def pruned_snapshots(out: Path, epochs: int, splits: Any) -> dict[float, Any]:
    """Train once and prune with masked fine-tuning to each sparsity (cached under out)."""
    dense_dir = out / "dense"
    if not (dense_dir / "metrics.json").exists():
        train(DataConfig(), TrainConfig(model="lenet-300-100", head="llr", epochs=epochs),
              splits, out_dir=dense_dir, progress=False, log=lambda _line: None)
    dense = snapshot.load(dense_dir)
    snaps = {}
    for s in SPARSITIES:
        d = out / f"pruned-{s}"
        if not (d / "metrics.json").exists():
            result, report = prune_snapshot(dense, "finetune", s, splits)
            snapshot.save(d, result.model, result.plan, result.head, result.config, report,
                          result.masks)
        snaps[s] = snapshot.load(d)
    return snaps


def pack_point(snap: Any, splits: Any, ft: bool, **settings: Any) -> dict[str, Any]:
    """Encode (+ fine-tune the codebooks and re-encode), decode and evaluate one setting."""
    t0 = time.perf_counter()
    enc = encode(snap.model, snap.plan, snap.head, masks=snap.masks, **settings)
    if ft:
        model = copy.deepcopy(snap.model)
        model.load_state_dict(enc.state)
        names = list(snap.masks)
        quantized = codebooks_of(model, names, settings["bits"])
        finetune_codebook(model, quantized, (splits.train.x, splits.train.y), snap.head.loss,
                          epochs=FT_EPOCHS, lr=FT_LR, seed=0)
        tuned = encode(model, snap.plan, snap.head, masks=enc.masks, **settings)
        for name in names:  # the codes are kept, so re-encoding stores exactly these values
            assert torch.equal(tuned.state[name], model.get_parameter(name).detach()), name
        assert tuned.account.values_bits == enc.account.values_bits
        enc = tuned
    out = decode(enc.data)
    decoded = build(out.plan)
    decoded.load_state_dict(out.state)
    acc = out.account
    return {
        **settings, "finetune": ft,
        "value_bits": acc.values_bits + acc.codebook_bits, "codebook_bits": acc.codebook_bits,
        "position_bits": acc.position_bits, "nonweight_bits": acc.nonweight_bits,
        "total_bits": acc.total_bits, "nonzero": acc.nonzero, "compression": acc.compression,
        "val_acc": evaluate(decoded, out.head, splits.val.x, splits.val.y)["acc"],
        "test_acc": evaluate(decoded, out.head, splits.test.x, splits.test.y)["acc"],
        "seconds": time.perf_counter() - t0,
    }


def quant_grid(snaps: dict[float, Any], splits: Any) -> list[dict[str, Any]]:
    settings = [dict(quant="kmeans", bits=b) for b in KMEANS_BITS]
    settings += [dict(quant="ecsq", bits=b, rate_lambda=lam)
                 for b in ECSQ_BITS for lam in LAMBDAS]
    rows = []
    for s, snap in snaps.items():
        for ft in (False, True):
            for st in settings:
                r = pack_point(snap, splits, ft, **st)
                r["sparsity"] = s
                rows.append(r)
                print(f"s={s} ft={ft} {st}: values {r['value_bits']} val {r['val_acc']:.4f} "
                      f"test {r['test_acc']:.4f} ({r['seconds']:.1f}s)", flush=True)
    return rows


def matches(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each k-means point: the fewest-value-bit ECSQ point at >= its val accuracy."""
    out = []
    for km in (r for r in rows if r["quant"] == "kmeans"):
        peers = [r for r in rows if r["quant"] == "ecsq" and r["sparsity"] == km["sparsity"]
                 and r["finetune"] == km["finetune"] and r["val_acc"] >= km["val_acc"]]
        best = min(peers, key=lambda r: r["value_bits"]) if peers else None
        out.append({"kmeans": km, "ecsq": best})
    return out


def position_rows(snaps: dict[float, Any]) -> list[dict[str, Any]]:
    """Coded position bits of every layer with the column model alone and with row counts
    (each: orientation/prior/row-model flags 5 bits, row counts, range-coder words)."""
    rows = []
    for s, snap in snaps.items():
        bits = {}
        for label, row_model in (("column", False), ("rows", None)):
            total = 0
            for mask in snap.masks.values():
                m = mask.numpy().reshape(mask.shape[0], -1)
                coded = coded_encode(m, m.shape[0], row_model=row_model)
                extra = 0 if coded.row_counts is None else (
                    4 + golomb_bits(coded.row_counts, coded.golomb))
                total += 5 + extra + 32 * coded.words.size
            bits[label] = total
        rows.append({"sparsity": s, "nonzero": sum(int(m.sum()) for m in snap.masks.values()),
                     **bits})
    return rows


def nonweight_rows(snaps: dict[float, Any], splits: Any) -> list[dict[str, Any]]:
    """float16 against int8 non-weights, 4-bit k-means + codebook fine-tuning."""
    rows = []
    for s, snap in snaps.items():
        pts = {d: pack_point(snap, splits, True, quant="kmeans", bits=4, nonweight_dtype=d)
               for d in ("float16", "int8")}
        keep = pts["int8"]["val_acc"] >= pts["float16"]["val_acc"]
        rows.append({"sparsity": s, "float16": pts["float16"], "int8": pts["int8"],
                     "chosen": "int8" if keep else "float16"})
    return rows


def markdown(rows: list[dict[str, Any]], pos: list[dict[str, Any]],
             nonw: list[dict[str, Any]], args: argparse.Namespace, wall: float,
             snaps: dict[float, Any]) -> str:
    cmd = "python benchmarks/rate_quant.py --write" + (
        f" --epochs {args.epochs}" if args.epochs != 20 else "")
    dense = snapshot.load(args.out / "dense").metrics
    lines = [
        f"Command: `{cmd}`  ",
        f"Machine: {platform.machine()}, 2 cores (shared with other jobs), torch "
        f"{torch.__version__}; {wall / 60:.0f} min  ",
        f"Date: {dt.date.today().isoformat()}",
        "",
        f"LeNet-300-100, llr head, {args.epochs} epochs (val {100 * dense['val_acc']:.2f} %, "
        f"test {100 * dense['test_acc']:.2f} %), pruned by global magnitude with 2 epochs of "
        "masked fine-tuning (`prune --method finetune`): "
        + ", ".join(f"{int(100 * s)} % ({snap.metrics['nonzero_weights']:,} weights, val "
                    f"{100 * snap.metrics['val_acc']:.2f} %)" for s, snap in snaps.items())
        + ". **Value bits** = what the file spends on the nonzero weights' values: range-coded "
        "codes with their frequency table plus the float32 codebook. `ft` = codebook "
        f"fine-tuning ({FT_EPOCHS} epoch, Adam {FT_LR:g}, codebook entries and biases, codes "
        f"fixed: same bits). ECSQ: at most 2^b levels, b in {list(ECSQ_BITS)}, rate_lambda in "
        f"{list(LAMBDAS)}. For each k-means point, the ECSQ point with the fewest value bits "
        "among those with at least its **validation** accuracy; test accuracy is only "
        "reported. Accuracies are those of the decoded file.",
        "",
        "| sparsity | ft | k-means bits | k-means value bits | val % | test % | ECSQ b, lambda "
        "| ECSQ value bits | val % | test % | ECSQ / k-means |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    wins = total = 0
    ratios, test_diff = [], []
    for m in matches(rows):
        k, e = m["kmeans"], m["ecsq"]
        left = (f"| {int(100 * k['sparsity'])} % | {'yes' if k['finetune'] else 'no'} | "
                f"{k['bits']} | {k['value_bits']:,} | {100 * k['val_acc']:.2f} | "
                f"{100 * k['test_acc']:.2f} |")
        if e is None:
            lines.append(left + " none reaches it | - | - | - | - |")
            continue
        total += 1
        wins += e["value_bits"] < k["value_bits"]
        ratios.append(e["value_bits"] / k["value_bits"])
        test_diff.append(100 * (e["test_acc"] - k["test_acc"]))
        lines.append(left + f" {e['bits']}, {e['rate_lambda']:g} | {e['value_bits']:,} | "
                     f"{100 * e['val_acc']:.2f} | {100 * e['test_acc']:.2f} | "
                     f"{e['value_bits'] / k['value_bits']:.2f} |")
    n_km = sum(r["quant"] == "kmeans" for r in rows)
    if ratios:
        lines += ["", f"ECSQ reaches the validation accuracy of {total} of the {n_km} k-means "
                  f"points and needs fewer value bits for {wins} of them (median ratio "
                  f"{sorted(ratios)[len(ratios) // 2]:.2f}). The matched ECSQ points' test "
                  f"accuracy is {sum(test_diff) / len(test_diff):+.2f} points from the k-means "
                  f"points' on average (from {min(test_diff):+.2f} to {max(test_diff):+.2f}): "
                  "a validation tie is a few examples of 5,000, and the ECSQ grid offers "
                  f"{len(ECSQ_BITS) * len(LAMBDAS)} candidates per k-means point, so part of "
                  "the match is selection noise."]
    lines.append("")
    lines += ["Position bits of the `coded` index on the same masks (all layers: flags, row "
              "counts, range-coder words), the column-adaptive model alone (format version 1) "
              "and with each row's nonzero count sent first (version 2; a file keeps "
              "whichever is smaller per layer):", "",
              "| sparsity | nonzero weights | column model | + row counts | change |",
              "|---|---|---|---|---|"]
    for p in pos:
        lines.append(f"| {int(100 * p['sparsity'])} % | {p['nonzero']:,} | {p['column']:,} | "
                     f"{p['rows']:,} | {100 * (p['rows'] / p['column'] - 1):+.1f} % |")
    lines += ["", "Non-weights (410 biases) at float16 against int8 (one float32 scale per "
              "tensor), 4-bit k-means + codebook fine-tuning; int8 is used when its "
              "validation accuracy is at least float16's:", "",
              "| sparsity | float16: non-weight bits | total bits | val % | test % | int8: "
              "non-weight bits | total bits | val % | test % | used |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in nonw:
        a, b = r["float16"], r["int8"]
        lines.append(f"| {int(100 * r['sparsity'])} % | {a['nonweight_bits']:,} | "
                     f"{a['total_bits']:,} | {100 * a['val_acc']:.2f} | "
                     f"{100 * a['test_acc']:.2f} | {b['nonweight_bits']:,} | "
                     f"{b['total_bits']:,} | {100 * b['val_acc']:.2f} | "
                     f"{100 * b['test_acc']:.2f} | {r['chosen']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    ap.add_argument("--epochs", type=int, default=20, help="training epochs of the dense net")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "rate_quant",
                    help="where the trained and pruned snapshots are kept")
    args = ap.parse_args()
    t0 = time.perf_counter()
    torch.set_num_threads(1)  # results do not depend on the machine's core count
    splits = load_splits("mnist")
    snaps = pruned_snapshots(args.out, args.epochs, splits)
    rows = quant_grid(snaps, splits)
    pos = position_rows(snaps)
    nonw = nonweight_rows(snaps, splits)
    write_text_atomic(args.out / "results.json",
                      json.dumps({"quant": rows, "positions": pos, "nonweight": nonw},
                                 indent=1, default=str))
    body = markdown(rows, pos, nonw, args, time.perf_counter() - t0, snaps)
    print(body)
    if args.write:
        update_section(ROOT / "BENCHMARKS.md", "Rate-aware quantization: k-means vs ECSQ",
                       body)


if __name__ == "__main__":
    main()
