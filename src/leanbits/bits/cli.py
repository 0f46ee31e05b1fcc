"""``leanbits bits | pack | unpack``: count every bit of a snapshot, write and read ``.lbits``.

Registered by :mod:`leanbits.cli` through :func:`register`::

    leanbits bits SNAPSHOT --bits 4 --quant kmeans --index coded [--values entropy|fixed]
                  [--nonweight-dtype float16] [--refit EPOCHS] [--accuracy] [--json]
    leanbits pack SNAPSHOT -o model.lbits  (same options)
    leanbits unpack model.lbits -o SNAPSHOT_DIR

``leanbits eval model.lbits`` (the lead's command) calls :func:`evaluate_lbits`.
"""

from __future__ import annotations

import argparse
import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from leanbits.bits.container import (
    DTYPES,
    INDEX_CHOICES,
    Encoded,
    encode,
    unpack,
    weight_names,
)
from leanbits.bits.records import QUANT_CODES
from leanbits.config import MAX_SEED, add_arguments, from_sources, option, to_dict
from leanbits.errors import FormatError
from leanbits.fileio import write_bytes_atomic
from leanbits.heads import Head
from leanbits.report.tables import emit_json

#: BitsConfig fields that :func:`leanbits.bits.pack` takes; the others drive the CLI (re-fit)
ENCODE_FIELDS = ("bits", "quant", "per_channel", "index", "values", "nonweight_dtype")


@dataclass(frozen=True)
class BitsConfig:
    """How a snapshot is quantized, indexed, entropy-coded and (optionally) re-fitted."""

    bits: int = option(4, "bits per nonzero weight: a codebook of at most 2**bits values",
                       minimum=1, maximum=16)
    quant: str = option("kmeans", "weight quantizer: k-means codebook or symmetric uniform",
                        choices=QUANT_CODES)
    per_channel: bool = option(False, "uniform only: one scale per output channel, not per layer")
    index: str = option("coded", "how positions of nonzero weights are stored (auto: the "
                        "smallest per layer)", choices=INDEX_CHOICES)
    values: str = option("entropy", "value codes: range-coded with a stored frequency table, "
                         "or fixed width", choices=("entropy", "fixed"))
    nonweight_dtype: str = option("float16", "storage precision of biases and other "
                                  "non-weight tensors", choices=DTYPES)
    refit: int = option(0, "after quantizing, re-fit the non-weight parameters (weights "
                        "frozen) for this many epochs with Adam; 0 = off", minimum=0)
    refit_lr: float = option(1e-3, "Adam learning rate of the re-fit", minimum=0.0)
    refit_batch_size: int = option(128, "minibatch size of the re-fit", minimum=1)
    seed: int = option(0, "seed of the re-fit's minibatch order", minimum=0, maximum=MAX_SEED)

    def encode_settings(self) -> dict[str, Any]:
        """The keyword arguments of :func:`leanbits.bits.pack` / ``count_bits``."""
        return {k: getattr(self, k) for k in ENCODE_FIELDS}


# ----------------------------------------------------------------------- helpers


def _load_splits(snap: Any) -> Any:
    """The data set a snapshot was trained on, checked to fit its model (imported lazily:
    data is a heavy module)."""
    from leanbits import cli as main_cli
    from leanbits import paths
    from leanbits.snapshot import check_fits_data

    where = snap.path if snap.path is not None else "snapshot"
    splits = main_cli.data_for_snapshot(snap.config, source=paths.config(Path(where)))
    check_fits_data(snap.plan, snap.head, splits, where)
    return splits


def _part(splits: Any, name: str) -> Any:
    if isinstance(splits, Mapping):
        return splits.get(name)
    return getattr(splits, name, None)


def _refit_nonweights(
    model: nn.Module, head: Head, x: torch.Tensor, y: torch.Tensor, epochs: int,
    lr: float = 1e-3, batch_size: int = 128, seed: int = 0,
) -> dict[str, float]:
    """Re-fit only the non-weight parameters, quantized weights frozen (the quantized
    weights must not move, or the file would no longer hold the model that was measured).

    Returns:
        ``{"refit_epochs": epochs, "refit_loss": mean loss over the data afterwards}``.
    """
    from leanbits.prune import refit_nonweights
    from leanbits.train import evaluate

    if epochs <= 0:
        return {"refit_epochs": 0, "refit_loss": math.nan}
    refit_nonweights(model, (x, y), head.loss, epochs=epochs, lr=lr, batch_size=batch_size,
                     seed=seed)
    model.eval()
    return {"refit_epochs": epochs,
            "refit_loss": evaluate(model, head, x[:10000], y[:10000])["loss"]}


def quantize_snapshot(snap: Any, cfg: BitsConfig, splits: Any = None) -> tuple[Encoded, dict]:
    """Encode a snapshot as ``cfg`` says, re-fitting its non-weights first if asked.

    Args:
        snap: a :class:`leanbits.snapshot.Snapshot` (model, plan, head, masks, config).
        cfg: the settings.
        splits: train/val/test data for the re-fit (loaded from the snapshot's data set when
            needed and not given).

    Returns:
        ``(encoded, report)``: the encoded file (bytes, account, state) and re-fit figures.
    """
    settings = cfg.encode_settings()
    encoded = encode(snap.model, snap.plan, snap.head, masks=snap.masks, **settings)
    if cfg.refit <= 0:
        return encoded, {}
    model = copy.deepcopy(snap.model)
    model.load_state_dict(encoded.state)  # quantized weights, non-weights as stored
    splits = splits if splits is not None else _load_splits(snap)
    train = _part(splits, "train")
    report = _refit_nonweights(model, snap.head, train.x, train.y, cfg.refit, cfg.refit_lr,
                               cfg.refit_batch_size, cfg.seed)
    refitted = encode(model, snap.plan, snap.head, masks=snap.masks, **settings)
    for name in weight_names(model):  # re-quantizing quantized weights must be exact
        if not torch.equal(refitted.state[name], encoded.state[name]):
            raise RuntimeError(f"re-quantizing {name} after the re-fit changed it")
    return refitted, report


def _accuracy(snap: Any, encoded: Encoded, splits: Any) -> dict[str, float]:
    from leanbits.train import evaluate_splits

    model = copy.deepcopy(snap.model)
    model.load_state_dict(encoded.state)
    return evaluate_splits(model, snap.head, splits)


def evaluate_lbits(
    path: str | Path, splits: Any = None, dataset: str = "mnist",
    names: Sequence[str] = ("val", "test"),
) -> dict[str, Any]:
    """Accuracy and loss of the model a ``.lbits`` file holds, with its bit totals.

    Args:
        path: the file (packed with a plan and a head).
        splits: data with ``.val``/``.test`` parts (each ``.x``, ``.y``) or a mapping of them;
            None loads ``dataset`` with :func:`leanbits.data.datasets.load_splits`.
        dataset: data set to load when ``splits`` is None.
        names: which parts to evaluate.

    Returns:
        ``{"model", "val_acc", "val_loss", "test_acc", "test_loss", "total_bits",
        "total_bytes", "compression"}`` (accuracy keys for the parts evaluated).

    Example:
        >>> evaluate_lbits("lenet.lbits", splits)["test_acc"]  # doctest: +SKIP
        0.981
    """
    from leanbits import cli as main_cli
    from leanbits.models import build
    from leanbits.snapshot import check_fits_data
    from leanbits.train import evaluate_splits

    unpacked = unpack(path)
    if unpacked.plan is None or unpacked.head is None:
        raise FormatError(f"{path}: packed without a plan or head; it cannot be evaluated alone")
    if splits is None:
        splits = main_cli.data_for_snapshot({"data": {"dataset": dataset}})
    check_fits_data(unpacked.plan, unpacked.head, splits, path)
    model = build(unpacked.plan)
    model.load_state_dict(unpacked.state)
    acc = unpacked.account
    report: dict[str, Any] = {"model": str(path)}
    report.update(evaluate_splits(model, unpacked.head, splits, tuple(names)))
    report.update(total_bits=acc.total_bits, total_bytes=acc.total_bytes,
                  compression=acc.compression)
    return report


# ----------------------------------------------------------------------- commands


def _run(args: argparse.Namespace) -> tuple[Any, BitsConfig, Encoded, dict[str, Any]]:
    from leanbits import snapshot

    cfg = from_sources(BitsConfig, args, getattr(args, "config", None), section="bits")
    snap = snapshot.load(args.snapshot)
    splits = None
    if cfg.refit > 0 or getattr(args, "accuracy", False):
        splits = _load_splits(snap)
    encoded, extra = quantize_snapshot(snap, cfg, splits)
    if getattr(args, "accuracy", False):
        extra.update(_accuracy(snap, encoded, splits))
    return snap, cfg, encoded, extra


def _print_extra(extra: dict[str, Any]) -> None:
    if "refit_epochs" in extra:
        print(f"re-fit non-weights: {extra['refit_epochs']} epochs, last loss "
              f"{extra['refit_loss']:.4f}")
    if "val_acc" in extra or "test_acc" in extra:
        parts = [f"{k} {extra[k]:.4f}" for k in ("val_acc", "test_acc") if k in extra]
        print("quantized model: " + "   ".join(parts))


def run_bits(args: argparse.Namespace) -> int:
    """``leanbits bits``: print the bit account of a snapshot (nothing written)."""
    _snap, cfg, encoded, extra = _run(args)
    if args.json:
        emit_json({"snapshot": str(args.snapshot), "config": to_dict(cfg),
                    **encoded.account.to_dict(), **extra})
        return 0
    print(encoded.account.format_table())
    _print_extra(extra)
    return 0


def run_pack(args: argparse.Namespace) -> int:
    """``leanbits pack``: write the ``.lbits`` file and print its account."""
    _snap, cfg, encoded, extra = _run(args)
    write_bytes_atomic(args.output, encoded.data)
    acc = encoded.account
    if args.json:
        emit_json({"snapshot": str(args.snapshot), "output": str(args.output),
                    "file_bytes": len(encoded.data), "config": to_dict(cfg),
                    **acc.to_dict(), **extra})
        return 0
    print(acc.format_table())
    _print_extra(extra)
    print(f"wrote {args.output}: {len(encoded.data)} bytes")
    return 0


def run_unpack(args: argparse.Namespace) -> int:
    """``leanbits unpack``: decode a ``.lbits`` file into a normal snapshot directory."""
    from leanbits import snapshot
    from leanbits.models import build

    unpacked = unpack(args.lbits)
    if unpacked.plan is None or unpacked.head is None:
        raise FormatError(
            f"{args.lbits}: packed without a plan or head, so it cannot become a snapshot; "
            "use leanbits.bits.load(path, model=template) from Python"
        )
    model = build(unpacked.plan)
    model.load_state_dict(unpacked.state)
    acc = unpacked.account
    summary = {"total_bits": acc.total_bits, "total_bytes": acc.total_bytes,
               "compression": acc.compression, "source": str(args.lbits)}
    out = snapshot.save(args.output, model, unpacked.plan, unpacked.head,
                        config={"bits": dict(acc.settings)}, metrics={"bits": summary},
                        masks=unpacked.masks, force=args.force)
    if args.json:
        emit_json({"snapshot": str(out), **summary})
    else:
        print(f"unpacked {args.lbits} ({acc.total_bytes} bytes) -> snapshot {out}")
    return 0


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("snapshot", help="snapshot directory (from leanbits train or prune)")
    add_arguments(p, BitsConfig)
    p.add_argument("--config", help="TOML file; its [bits] section gives BitsConfig values")
    p.add_argument("--accuracy", action="store_true",
                   help="also evaluate the quantized model on the validation and test sets")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def register(subparsers: Any) -> None:
    """Add the ``bits``, ``pack`` and ``unpack`` subcommands."""
    b = subparsers.add_parser(
        "bits", help="count every bit a snapshot needs when quantized and packed",
        description="Quantize a snapshot's weights, index the nonzeros, entropy-code the "
        "values, and print the exact bits per layer (as `leanbits pack` would write them) "
        "beside the information bound.",
    )
    _add_common(b)
    b.set_defaults(func=run_bits)

    p = subparsers.add_parser(
        "pack", help="write a snapshot as a .lbits file (file size == bit account)",
        description="Like `leanbits bits`, then write the .lbits file.",
    )
    _add_common(p)
    p.add_argument("-o", "--output", required=True, help="the .lbits file to write")
    p.set_defaults(func=run_pack)

    u = subparsers.add_parser(
        "unpack", help="decode a .lbits file into a snapshot directory",
        description="Read a .lbits file (refusing a truncated or corrupted one) and write a "
        "normal snapshot: quantized weights bit for bit, masks of the stored nonzeros.",
    )
    u.add_argument("lbits", help="the .lbits file")
    u.add_argument("-o", "--output", required=True, help="snapshot directory to write")
    u.add_argument("--force", action="store_true",
                   help="replace an existing snapshot there (otherwise it is refused)")
    u.add_argument("--json", action="store_true", help="print the result as one JSON object")
    u.set_defaults(func=run_unpack)
