"""Configuration: one frozen dataclass per stage, each field with its help text.

CLI flags are generated from the fields (:func:`add_arguments`), TOML files load into the
same dataclasses (:func:`load`), and :func:`stage_hash` names output directories by the
settings that differ from the defaults.

A field is declared with :func:`option`::

    @dataclass(frozen=True)
    class TrainConfig:
        epochs: int = option(5, "passes over the training set")
        head: str = option("llr", "output head", choices=("softmax", "llr", "llr-code"))
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import tomllib
import types
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from leanbits.errors import ConfigError

T = TypeVar("T")

#: largest seed a config accepts (torch takes 64-bit seeds; beyond, it fails deep inside)
MAX_SEED = 2**63 - 1


def option(
    default: Any,
    help: str,
    *,
    choices: tuple[Any, ...] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    flag: str | None = None,
) -> Any:
    """Declare a config field with help text and optional validation bounds."""
    meta = {"help": help, "choices": choices, "min": minimum, "max": maximum, "flag": flag}
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(underlying type, optional?) for annotations like ``int | None`` or ``tuple[int, ...]``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0])[0], True
    return tp, False


def _coerce(cls: type, name: str, tp: Any, value: Any) -> Any:
    base, optional = _base_type(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{cls.__name__}.{name}: a value is required")
    origin = typing.get_origin(base)
    if origin in (tuple, list) and isinstance(value, str) and not value.replace(" ", "").strip(","):
        # An empty flag (often an unset shell variable) must not silently mean "no layers".
        raise ConfigError(
            f"{cls.__name__}.{name}: {value!r} lists no values; give comma-separated values, "
            "or leave it out for the default (an empty list only as [] in a TOML file)"
        )
    try:
        if origin in (tuple, list):
            (inner, *_rest) = typing.get_args(base) or (str,)
            if isinstance(value, str):
                value = [v for v in value.replace(" ", "").split(",") if v != ""]
            if not isinstance(value, list | tuple):
                raise TypeError
            items = [_coerce(cls, name, inner, v) for v in value]
            return tuple(items) if origin is tuple else items
        if origin is dict or base is dict:
            if not isinstance(value, dict):
                raise TypeError
            return dict(value)
        if base is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
                return False
            raise TypeError
        if base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if base is float:
            if isinstance(value, bool):
                raise TypeError
            out = float(value)
            if math.isnan(out):
                raise TypeError
            return out
        if base is str:
            if not isinstance(value, str):
                raise TypeError
            return value
    except (TypeError, ValueError):
        raise ConfigError(
            f"{cls.__name__}.{name}: {value!r} is not a valid {getattr(base, '__name__', base)}"
        ) from None
    return value


def _validate(cls: type, f: dataclasses.Field, value: Any) -> None:
    meta = f.metadata
    values = value if isinstance(value, list | tuple) else [value]
    for v in values:
        if v is None:
            continue
        if meta.get("choices") and v not in meta["choices"]:
            raise ConfigError(
                f"{cls.__name__}.{f.name}: {v!r} is not allowed; valid: "
                + ", ".join(map(str, meta["choices"]))
            )
        if isinstance(v, int | float) and not isinstance(v, bool):
            if meta.get("min") is not None and v < meta["min"]:
                raise ConfigError(
                    f"{cls.__name__}.{f.name}: {v} is below the minimum {meta['min']}"
                )
            if meta.get("max") is not None and v > meta["max"]:
                raise ConfigError(
                    f"{cls.__name__}.{f.name}: {v} is above the maximum {meta['max']}"
                )


def make(cls: type[T], values: dict[str, Any]) -> T:
    """Build a config dataclass from a dict, coercing and validating every value.

    Raises:
        ConfigError: an unknown key (the message lists the valid ones) or a bad value.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ConfigError(
            f"unknown {cls.__name__} key(s) {', '.join(sorted(unknown))}; valid: "
            + ", ".join(sorted(fields))
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        kwargs[name] = _coerce(cls, name, hints[name], value)
        _validate(cls, fields[name], kwargs[name])
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain dict of a config (tuples become lists)."""
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def non_default(cfg: Any) -> dict[str, Any]:
    """Only the fields whose value differs from the default."""
    default = to_dict(type(cfg)())
    return {k: v for k, v in to_dict(cfg).items() if default[k] != v}


def stage_hash(*parts: Any, length: int = 10) -> str:
    """Stable short hash of configs (their non-default fields) and extra values."""
    blob = []
    for p in parts:
        blob.append(non_default(p) if dataclasses.is_dataclass(p) else p)
    text = json.dumps(blob, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def add_arguments(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """Add one ``--flag`` per field of ``cls`` (defaults left as None = "not given")."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        base, _ = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = ",".join(map(str, default)) if isinstance(default, list | tuple) else default
        help_text = f"{f.metadata.get('help', '')} (default: {shown})"
        if f.metadata.get("choices"):
            help_text += "; one of: " + ", ".join(map(str, f.metadata["choices"]))
        if base is bool:
            parser.add_argument(
                flag, dest=f.name, default=None, action=argparse.BooleanOptionalAction,
                help=help_text,
            )
        else:
            parser.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(),
                                help=help_text)


def from_sources(
    cls: type[T], args: argparse.Namespace | None = None, toml_path: str | Path | None = None,
    section: str | None = None, extra: dict[str, Any] | None = None,
    sections: Sequence[str] | None = None,
) -> T:
    """Defaults < TOML file (optionally one ``[section]``) < ``extra`` < command-line flags.

    Args:
        cls: the config dataclass.
        args: parsed flags; those named like a field and not None win.
        toml_path: a ``--config`` file, or None.
        section: the file's table that holds ``cls``'s values (None: the whole file).
        extra: values between the file's and the flags'.
        sections: every table the command's config file may hold (default: ``section``
            alone); any other top-level key is refused, so that a file written for another
            command is not silently ignored.

    Returns:
        The validated config.

    Raises:
        ConfigError: the file is not TOML, holds a key or table this command does not read,
            or a bad value (the message names the file and the key), or a flag is bad.
    """
    values: dict[str, Any] = {}
    if toml_path is not None:
        data = load_toml(toml_path)
        if section is not None:
            check_keys(toml_path, data, sections or (section,), tables=True)
            data = data.get(section, {})
        try:  # the file's own values first, so that their errors name the file
            make(cls, data)
        except ConfigError as exc:
            where = f"[{section}] " if section is not None else ""
            raise ConfigError(f"{toml_path}: {where}{exc}") from None
        values.update(data)
    values.update(extra or {})
    if args is not None:
        names = {f.name for f in dataclasses.fields(cls)}
        for k, v in vars(args).items():
            if k in names and v is not None:
                values[k] = v
    return make(cls, values)


def check_keys(source: str | Path, d: dict[str, Any], allowed: Iterable[str], where: str = "",
               *, tables: bool = False) -> None:
    """Refuse a key of a config file (or of one of its tables) that is not ``allowed``.

    The one check of which keys and tables a file may hold, for ``--config`` files and
    experiment files alike.

    Args:
        source: the file, for the message.
        d: the file's contents, or one of its tables.
        allowed: the keys ``d`` may hold.
        where: the path of ``d`` in the file (``"quick."``), prefixed to the names shown.
        tables: every allowed key must hold a table (``[train]``, not ``train = 5``).

    Raises:
        ConfigError: an unknown key (the message lists the valid ones), or a value that
            should be a table and is not.
    """
    allowed = tuple(allowed)
    unknown = [k for k in d if k not in allowed]
    if unknown:
        shown = [f"[{where}{k}]" if tables else where + k for k in allowed]
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(where + k for k in unknown)}; valid: "
            + ", ".join(shown) + (" (the others belong to other commands)" if tables else "")
        )
    if tables:
        for k, v in d.items():
            if not isinstance(v, dict):
                raise ConfigError(f"{source}: {where}{k} = {v!r} must be a [{where}{k}] table "
                                  "of settings")


def parse_list(text: str, what: str, convert: Any) -> list[Any]:
    """A comma-separated flag value as a list, e.g. ``--sparsities 0.5,0.9``.

    Args:
        text: the value as given.
        what: the flag's name without dashes, for the error message.
        convert: applied to each item (``int``, ``float``, ``str``).

    Returns:
        The converted items.

    Raises:
        ConfigError: the list is empty or an item does not convert.
    """
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise ConfigError(f"--{what} is empty")
    try:
        return [convert(t) for t in items]
    except ValueError:
        raise ConfigError(f"--{what}: {text!r} is not a comma-separated list of "
                          f"{getattr(convert, '__name__', 'value')}s") from None


def load_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        why = "is not a regular file" if p.exists() else "does not exist"
        raise ConfigError(f"config file {p} {why}; give a TOML file")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not valid TOML ({exc})") from None


def reference(cls: type) -> str:
    """Markdown table of a config's fields (for the CLI reference in docs/)."""
    hints = typing.get_type_hints(cls)
    rows = [f"### {cls.__name__}", "", "| key | type | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        hint = hints[f.name]
        tp = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
        tp = tp.replace(" | ", " or ")
        meaning = f.metadata.get("help", "")
        if f.metadata.get("choices"):
            meaning += " (one of: " + ", ".join(map(str, f.metadata["choices"])) + ")"
        rows.append(f"| `{f.name}` | `{tp}` | `{default!r}` | {meaning} |")
    return "\n".join(rows) + "\n"
