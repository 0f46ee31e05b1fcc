"""``leanbits compress``: the smallest ``.lbits`` file that meets a validation requirement.

Usage::

    leanbits compress SNAPSHOT (--max-drop D | --target-accuracy A) -o model.lbits
                      [--budget EPOCHS] [--methods finetune,gradual] [--bits 2,3,4]
                      [--config recipe.toml] [--progress] [--json]

The search is :func:`leanbits.compression.compress_snapshot`; this module parses and prints.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING, Any

from leanbits.config import add_arguments, from_sources
from leanbits.console import emit_json
from leanbits.settings.compress import CompressConfig

if TYPE_CHECKING:
    from leanbits.compression import CompressResult

# The library is imported inside the handlers: it loads torch (seconds), and building
# this command's parser (--help) or refusing a bad flag must not wait for it.

#: fields the search chooses itself, and the requirement (parsed separately, so a bad one
#: is reported as a requirement)
_SKIP = ("method", "sparsity", "target_accuracy", "max_drop")


def _print(result: CompressResult) -> None:
    c = result.chosen
    print(result.account.format_table())
    settings = ", ".join(f"{k} {v}" for k, v in c.settings.items())
    sparsity = 1 - result.nonzero / result.weights if result.weights else 0.0
    print(f"\nchosen on validation: method {c.method}, sparsity {sparsity:.4f}, {settings}")
    print(f"validation accuracy {result.val_acc:.4f} (required {result.required_val_acc:.4f}, "
          f"model given {result.dense_val_acc:.4f})")
    print(f"compression {result.compression:.1f}x total bits, weights kept 1/"
          f"{result.weights_kept:.1f} ({result.nonzero:,} of {result.weights:,}), "
          f"{result.epochs:g} backprop epochs, {result.evaluated} runs computed, "
          f"{result.reused} reused")
    if result.budget_exhausted:
        print("note: the epoch budget was spent before the search ended (--budget)")
    print(f"wrote {result.output}: {len(result.data)} bytes")
    if result.test_acc is not None:
        print(f"test accuracy of the decoded file: {result.test_acc:.4f}")


def run_compress(args: argparse.Namespace) -> int:
    """``leanbits compress``: search, write the file, print its account and test accuracy."""
    cfg = from_sources(CompressConfig, args, args.config, section="compress")
    target = {}
    if args.req_max_drop is not None or args.req_target_accuracy is not None:
        # the flags replace a requirement of the --config file
        cfg = dataclasses.replace(cfg, max_drop=None, target_accuracy=None)
        target = {"max_drop": args.req_max_drop, "target_accuracy": args.req_target_accuracy}
    from leanbits.compression import compress_snapshot

    result = compress_snapshot(args.snapshot, args.output, config=cfg,
                               progress=args.progress, **target)
    if args.json:
        emit_json({"snapshot": str(args.snapshot), **result.to_dict()})
    else:
        _print(result)
    return 0


def register(subparsers: Any) -> None:
    """Add the ``compress`` subcommand."""
    p = subparsers.add_parser(
        "compress", help="the smallest .lbits file that meets a validation accuracy",
        description="Search a recipe (pruning methods, sparsity, quantizer settings) on the "
        "validation split only, write the smallest .lbits file whose decoded model meets "
        "the requirement, print its bit account and, once, its test accuracy. An "
        "interrupted search resumes from OUTPUT.partial/.",
    )
    p.add_argument("snapshot", help="snapshot directory (from leanbits train or prune)")
    p.add_argument("-o", "--output", required=True, help="the .lbits file to write")
    p.add_argument("--max-drop", dest="req_max_drop", default=None, metavar="D",
                   help="allowed loss of validation accuracy vs the snapshot (a fraction)")
    p.add_argument("--target-accuracy", dest="req_target_accuracy", default=None, metavar="A",
                   help="required validation accuracy (a fraction)")
    add_arguments(p, CompressConfig, skip=_SKIP)
    p.add_argument("--config", help="TOML file whose [compress] section gives the recipe "
                   "(CompressConfig values, max_drop or target_accuracy included)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: when stderr is a terminal)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run_compress)
