"""The ``leanbits`` command line: the top layer of the package. Each module of this
package adds its subcommands with ``register(subparsers)``, parses flags, builds configs,
calls the library and prints what it returns - no library code lives here.

User errors (:class:`leanbits.errors.LeanbitsError`) end with one line on stderr and exit
status 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys

from leanbits import __version__
from leanbits.cli import bits, compress, data, demo, export, prune, report, sweep, train
from leanbits.errors import LeanbitsError

#: the command modules, in the order their subcommands are listed by ``leanbits --help``
COMMAND_MODULES = (data, train, demo, prune, bits, compress, sweep, report, export)


def build_parser() -> argparse.ArgumentParser:
    """The ``leanbits`` argument parser with every subcommand."""
    p = argparse.ArgumentParser(
        prog="leanbits",
        description="How many bits does this network really need? Train for efficiency, "
        "snapshot-prune, quantize and count every bit.",
    )
    p.add_argument("--version", action="version", version=f"leanbits {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``leanbits`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LeanbitsError as exc:
        print(f"leanbits: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("leanbits: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
