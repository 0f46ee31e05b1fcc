"""The ``leanbits`` command line: the top layer of the package. Each module of this
package adds its subcommands with ``register(subparsers)``, parses flags, builds configs,
calls the library and prints what it returns - no library code lives here.

:func:`main` is the one error boundary of the command: a user error
(:class:`leanbits.errors.LeanbitsError`) or an operating-system error (read-only or full
disk, a directory where a file belongs, permission denied; :class:`OSError`) ends with one
line on stderr and exit status 2, Ctrl-C with one line and 130; only a genuine bug shows a
traceback, followed by a line asking for a report.

Only the module of the command being run is imported (see :data:`COMMANDS`): the others
pull in torch, which takes seconds, and ``leanbits --help``, ``--version`` or a mistyped
command must not wait for it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from leanbits import __version__
from leanbits.errors import LeanbitsError, os_error_message

#: command -> (module of this package that registers it, the help ``leanbits --help``
#: lists), in the order of that list. The help must equal the module's own (a test checks).
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("data", "fetch and inspect data sets"),
    "train": ("train", "train a network and write a snapshot"),
    "eval": ("train", "accuracy and loss of a snapshot or .lbits file"),
    "demo": ("demo", "the main job: train, profile, snapshot-prune, pack, report"),
    "prune": ("prune", "prune a snapshot once, then re-fit non-weights (or run another "
              "method)"),
    "profile": ("prune", "accuracy vs size of one snapshot over methods and sparsities"),
    "bits": ("bits", "count every bit a snapshot needs when quantized and packed"),
    "pack": ("bits", "write a snapshot as a .lbits file (file size == bit account)"),
    "unpack": ("bits", "decode a .lbits file into a snapshot directory"),
    "compress": ("compress", "the smallest .lbits file that meets a validation accuracy"),
    "run": ("sweep", "run a sweep: every grid point of an experiment file, resumable"),
    "study": ("sweep", "run a preset sweep that tests one of the paper's claims"),
    "report": ("report", "plots and tables of a run, snapshot or profile directory "
               "(Markdown + HTML)"),
    "export": ("export", "write the compact model as ONNX (checked in onnxruntime) / "
               "safetensors"),
    "bench": ("export", "latency of the dense and compact model, PyTorch and onnxruntime"),
}

#: the command modules, in the order their subcommands are listed by ``leanbits --help``
COMMAND_MODULES = tuple(dict.fromkeys(module for module, _ in COMMANDS.values()))

REPORT_BUG = "leanbits: this is a bug in leanbits; please report it with the command you ran"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other leanbits error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _command(argv: list[str]) -> str | None:
    """The subcommand named in ``argv``: the first word that is not an option (the
    top-level options, ``--help`` and ``--version``, take no value)."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(command: str | None = None, *, every: bool = True) -> argparse.ArgumentParser:
    """The ``leanbits`` argument parser.

    Args:
        command: register this command's module for real (it may register its sibling
            commands too, e.g. ``bits`` brings ``pack`` and ``unpack``).
        every: register every command's module (what ``--help`` of a subcommand, the
            docs and the tests need); False lists the others by name and help only,
            without importing them.

    Returns:
        The parser.
    """
    p = _Parser(
        prog="leanbits",
        description="How many bits does this network really need? Train for efficiency, "
        "snapshot-prune, quantize and count every bit.",
    )
    p.add_argument("--version", action="version", version=f"leanbits {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = COMMAND_MODULES if every else [COMMANDS[command][0]] if command in COMMANDS \
        else []
    for name in modules:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    for name, (_module, help_text) in COMMANDS.items():
        if name not in sub.choices:  # listed by --help; never run (its module is not loaded)
            sub.add_parser(name, help=help_text)
    return p


def _one_line(message: str) -> str:
    return " ".join(line.strip() for line in str(message).splitlines() if line.strip())


def _stdout_gone() -> None:
    """stdout was closed early (``leanbits ... | head``): drop what is still buffered."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``leanbits`` command: run it and turn every user error into one
    line on stderr (see the module docstring).

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 done, 2 a user or system error, 130 interrupted, 141 stdout
        closed early, 1 a bug.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser(_command(argv), every=False)
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except LeanbitsError as exc:
        print(f"leanbits: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        _stdout_gone()
        return 141  # what a shell reports for a process ended by SIGPIPE
    except OSError as exc:  # read-only or full disk, permission denied, not a directory...
        print(f"leanbits: error: {_one_line(os_error_message(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("leanbits: interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print(REPORT_BUG, file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
