"""Naming and grouping result rows: which trained network a row belongs to, what to call
it, and the one grouping helper every section uses.

A *network* is one trained model: a row's train stage, else the profile it came from.
Groups are named by the sweep axes that tell networks apart (``lenet5 / llr``); points by
the axes that vary between them (``bits=4``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, TypeVar

from leanbits.results import Row

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


def group(items: Iterable[T], key: Callable[[T], K]) -> dict[K, list[T]]:
    """Items split by ``key``, groups and members in first-seen order.

    Example:
        >>> group([1, 2, 3, 4], lambda x: x % 2)
        {1: [1, 3], 0: [2, 4]}
    """
    out: dict[K, list[T]] = {}
    for item in items:
        out.setdefault(key(item), []).append(item)
    return out


def pct(v: float | None) -> float | None:
    """A fraction as percent (None stays None)."""
    return None if v is None else 100.0 * v


def short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def spread(items: Sequence[T], k: int) -> list[T]:
    """Up to ``k`` items evenly spaced over ``items``, first and last included.

    Example:
        >>> spread(list(range(10)), 4)
        [0, 3, 6, 9]
    """
    if k <= 0 or not items:
        return []
    if len(items) <= k:
        return list(items)
    if k == 1:
        return [items[-1]]
    idx = sorted({round(i * (len(items) - 1) / (k - 1)) for i in range(k)})
    return [items[i] for i in idx]


def accuracy_key(rows: Sequence[Row]) -> str | None:
    """``"test_acc"`` when any row has it, else ``"val_acc"`` when any has that, else None."""
    for key in ("test_acc", "val_acc"):
        if any(r.accuracy(key) is not None for r in rows):
            return key
    return None


def network(row: Row) -> str | None:
    """The trained network a row derives from: its train stage, else its profile."""
    return row.stages.get("train") or row.stages.get("profile")


def seed_of(row: Row) -> Any:
    """The train seed of a row: its ``seed`` axis, else its train settings' (None)."""
    return row.axes.get("seed", row.settings.get("train", {}).get("seed"))


def without_seed(row: Row) -> Row:
    """The row as one of its configuration's seeds: no seed axis, and its network named by
    its train and data settings but the seed (so every seed of a configuration is one
    network, and configurations that differ only in their data - a training-set size, label
    noise - stay apart). A split seed that follows the train seed is a seed too."""
    seed = seed_of(row)
    train = {k: v for k, v in row.settings.get("train", {}).items() if k != "seed"}
    data = {k: v for k, v in row.settings.get("data", {}).items()
            if not (k == "split_seed" and v == seed)}
    return dataclasses.replace(
        row, axes={k: v for k, v in row.axes.items() if k != "seed"},
        stages={"train": json.dumps({"train": train, "data": data}, sort_keys=True,
                                    default=str)})


def point_label(row: Row, index: int, axes_shown: Iterable[str] | None = None) -> str:
    """A short readable name of a row: its sweep axes (only ``axes_shown`` when given),
    else its index.

    Example:
        >>> point_label(Row(axes={"head": "llr", "bits": 4}), 0)
        'head=llr, bits=4'
    """
    if row.axes:
        shown = set(axes_shown) if axes_shown is not None else set(row.axes)
        keys = [k for k in row.axes if k in shown]
        return ", ".join(f"{k}={short(row.axes[k])}" for k in keys or row.axes)
    return f"point {index}"


def point_labels(rows: Sequence[Row]) -> list[str]:
    """:func:`point_label` of each row, naming only the sweep axes that differ between rows
    (an axis with one value says nothing and makes every label longer).

    Example:
        >>> point_labels([Row(axes={"head": "llr", "bits": 2}),
        ...               Row(axes={"head": "llr", "bits": 4})])
        ['bits=2', 'bits=4']
    """
    values: dict[str, set[str]] = {}
    for r in rows:
        for k, v in r.axes.items():
            values.setdefault(k, set()).add(repr(v))
    varying = [k for k, vs in values.items() if len(vs) > 1]
    return [point_label(r, i, varying) for i, r in enumerate(rows)]


def group_names(rows: Sequence[Row], methods: Sequence[str | None] | None = None) -> list[str]:
    """A group name per row: one group per trained network (and per pruning method when
    ``methods`` gives each row's), named by what tells the networks apart.

    A network is named by the sweep axes that are constant within it but differ between
    networks (e.g. ``lenet5 / llr``); without such axes, by its head, then by its stage.

    Example:
        >>> group_names([Row(axes={"head": "llr", "bits": 2}, stages={"train": "a"}),
        ...              Row(axes={"head": "softmax", "bits": 2}, stages={"train": "b"})])
        ['llr', 'softmax']
    """
    nets = [network(r) for r in rows]
    members = group(zip(nets, rows, strict=True), lambda nr: nr[0])
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r.axes if k not in keys]
    constant: dict[Any, dict[str, str]] = {}
    for n, pairs in members.items():
        rs = [r for _, r in pairs]
        constant[n] = {k: repr(rs[0].axes.get(k)) for k in keys
                       if len({repr(r.axes.get(k)) for r in rs}) == 1}
    telling = [k for k in keys
               if all(k in c for c in constant.values())
               and len({c[k] for c in constant.values()}) > 1]
    names: dict[Any, str] = {}
    heads = {r.head for r in rows}
    for n, pairs in members.items():
        first = pairs[0][1]
        if telling:
            names[n] = " / ".join(short(first.axes[k]) for k in telling)
        elif len(members) == 1:
            names[n] = ""
        else:
            names[n] = str(first.head) if len(heads) > 1 else str(n)
    if len(set(names.values())) < len(names):  # heads do not tell networks apart
        names = {n: names[n] if len(members) == 1 or telling else str(n) for n in names}
    out = []
    for i, n in enumerate(nets):
        parts = [names[n]]
        if methods is not None and methods[i] is not None:
            parts.append(str(methods[i]))
        out.append(" / ".join(p for p in parts if p) or "all points")
    return out
