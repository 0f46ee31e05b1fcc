"""``leanbits bits | pack | unpack``: count every bit of a snapshot, write and read ``.lbits``.

Usage::

    leanbits bits SNAPSHOT --bits 4 --quant kmeans --index coded [--values entropy|fixed]
                  [--nonweight-dtype float16] [--refit EPOCHS] [--accuracy] [--json]
    leanbits pack SNAPSHOT -o model.lbits  (same options)
    leanbits unpack model.lbits -o SNAPSHOT_DIR

The work is done by :mod:`leanbits.bits.pipeline`; this module parses and prints.
"""

from __future__ import annotations

import argparse
from typing import Any

from leanbits.config import add_arguments, from_sources, to_dict
from leanbits.console import emit_json
from leanbits.fileio import check_output_file, write_bytes_atomic
from leanbits.settings.bits import BitsConfig

# The library is imported inside the handlers: it loads torch (seconds), and building
# this command's parser (--help) or refusing a bad flag must not wait for it.


def _run(args: argparse.Namespace) -> tuple[BitsConfig, Any, dict[str, Any]]:
    cfg = from_sources(BitsConfig, args, getattr(args, "config", None), section="bits")
    from leanbits.bits.pipeline import snapshot_bits

    _snap, encoded, extra = snapshot_bits(args.snapshot, cfg,
                                          accuracy=getattr(args, "accuracy", False))
    return cfg, encoded, extra


def _print_extra(extra: dict[str, Any]) -> None:
    if "refit_epochs" in extra:
        print(f"re-fit non-weights: {extra['refit_epochs']} epochs, last loss "
              f"{extra['refit_loss']:.4f}")
    if "val_acc" in extra or "test_acc" in extra:
        parts = [f"{k} {extra[k]:.4f}" for k in ("val_acc", "test_acc") if k in extra]
        print("quantized model: " + "   ".join(parts))


def run_bits(args: argparse.Namespace) -> int:
    """``leanbits bits``: print the bit account of a snapshot (nothing written)."""
    cfg, encoded, extra = _run(args)
    if args.json:
        emit_json({"snapshot": str(args.snapshot), "config": to_dict(cfg),
                    **encoded.account.to_dict(), **extra})
        return 0
    print(encoded.account.format_table())
    _print_extra(extra)
    return 0


def run_pack(args: argparse.Namespace) -> int:
    """``leanbits pack``: write the ``.lbits`` file and print its account."""
    check_output_file(args.output)  # before the work
    cfg, encoded, extra = _run(args)
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
    from leanbits.bits.pipeline import unpack_to_snapshot

    out, summary = unpack_to_snapshot(args.lbits, args.output, force=args.force)
    if args.json:
        emit_json({"snapshot": str(out), **summary})
    else:
        print(f"unpacked {args.lbits} ({summary['total_bytes']} bytes) -> snapshot {out}")
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
