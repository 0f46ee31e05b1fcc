"""``leanbits export`` (compact model as ONNX / safetensors) and ``leanbits bench`` (dense
against compact latency). The work is done by :mod:`leanbits.export`; this module parses
and prints.
"""

from __future__ import annotations

import argparse
from typing import Any

from leanbits.config import parse_list
from leanbits.console import emit_json, table

# The library is imported inside the handlers: it loads torch (seconds), and building
# this command's parser (--help) or refusing a bad flag must not wait for it.


def cmd_export(args: Any) -> int:
    from leanbits.export import export_snapshot

    report = export_snapshot(args.snapshot, onnx=args.onnx, safetensors=args.safetensors,
                             dynamic_batch=args.dynamic_batch, real_data=args.real_data)
    if args.json:
        emit_json(report)
        return 0
    plan = report["plan"]
    widths = "-".join(str(v) for v in (*plan["conv"], *plan["fc"], plan["out"]))
    print(table(["model", "parameters", "MACs/example"],
                [["dense", report["params_dense"], report["macs_dense"]],
                 [f"compact ({widths})", report["params_compact"], report["macs_compact"]]]))
    if args.onnx:
        checked = ", ".join(f"{k.split('_')[-1]} max |diff| {v:.1e}"
                            for k, v in report.items() if k.startswith("onnx_max_abs"))
        print(f"wrote {args.onnx} ({report['onnx_bytes']:,} bytes); onnxruntime vs PyTorch: "
              f"{checked}; same predictions")
    if args.safetensors:
        print(f"wrote {args.safetensors} ({report['safetensors_bytes']:,} bytes)")
    return 0


def cmd_bench(args: Any) -> int:
    batches = tuple(parse_list(args.batch_sizes, "batch-sizes", int))
    from leanbits.export import bench_snapshot

    result = bench_snapshot(args.snapshot, batches, repeats=args.repeats, onnx=not args.no_onnx)
    if args.json:
        emit_json(result)
        return 0
    print(table(["runtime", "batch", "dense ms", "compact ms", "speed-up", "MAC reduction",
                 "speed-up / MAC red."],
                [[s["runtime"], s["batch"], s["dense_ms"], s["compact_ms"], s["speedup"],
                  s["mac_reduction"], s["speedup_over_mac_reduction"]]
                 for s in result["summary"]],
                title=f"median latency, {result['threads']} threads"))
    return 0


def register(subparsers: Any) -> None:
    """Add ``export`` and ``bench`` to the ``leanbits`` command line."""
    e = subparsers.add_parser(
        "export", help="write the compact model as ONNX (checked in onnxruntime) / safetensors")
    e.add_argument("snapshot", help="snapshot directory (from leanbits train or prune)")
    e.add_argument("--onnx", help="output .onnx file")
    e.add_argument("--safetensors", help="output .safetensors file (plan + head in metadata)")
    e.add_argument("--dynamic-batch", action="store_true", help="symbolic batch dimension")
    e.add_argument("--real-data", action=argparse.BooleanOptionalAction, default=True,
                   help="also check on 256 validation examples (default: on)")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.set_defaults(func=cmd_export)
    b = subparsers.add_parser(
        "bench", help="latency of the dense and compact model, PyTorch and onnxruntime")
    b.add_argument("snapshot", help="snapshot directory (from leanbits prune)")
    b.add_argument("--batch-sizes", default="1,256", help="comma-separated (default: 1,256)")
    b.add_argument("--repeats", type=int, default=50, help="timed runs per case (default: 50)")
    b.add_argument("--no-onnx", action="store_true", help="PyTorch only")
    b.add_argument("--json", action="store_true", help="print the result as JSON")
    b.set_defaults(func=cmd_bench)

