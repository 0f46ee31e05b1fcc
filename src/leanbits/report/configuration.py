"""The configuration section: the experiment file and the runs' config files, verbatim.

A run of one seed per configuration lists every config file found (identical ones once,
named by every run that has it). A sweep of several seeds per configuration (the training
runs sharing a :attr:`TrainingRun.config`) lists one ``config.toml`` per configuration
instead of one per seed: the first seed's, titled with the seeds it stands for and the keys
that differ between them, as read from their files. Those are the keys that follow the seed
- ``train.seed``, and ``data.split_seed`` where it equals it - the same ones
:func:`leanbits.report.grouping.without_seed` leaves out of a configuration. Runs of one
configuration whose files differ in anything else are not one configuration by that
definition: each variant is listed with its seeds and the differing values in its title, and
a note says so.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leanbits import paths
from leanbits.report.collect import ConfigFile, TrainingRun, config_name
from leanbits.report.document import Block, Code, Heading
from leanbits.report.grouping import group
from leanbits.report.overseeds import per_seed_note
from leanbits.report.training import per_run_files

HEADING = "Configuration"
#: the train seed's key in a snapshot's config.toml (as flattened by :func:`flatten`)
SEED_KEY = "train.seed"
#: the split seed's key: a seed too where it equals the train seed
SPLIT_SEED_KEY = "data.split_seed"


def flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A TOML document's values by dotted key (tables opened, arrays kept as values).

    Example:
        >>> flatten({"train": {"seed": 1, "fc": [16, 8]}, "name": "x"})
        {'train.seed': 1, 'train.fc': [16, 8], 'name': 'x'}
    """
    out: dict[str, Any] = {}
    for k, v in table.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def seed_keys(values: Mapping[str, Any]) -> list[str]:
    """The keys of a flattened config.toml that are its seed: ``train.seed``, and
    ``data.split_seed`` when it equals the train seed (as :func:`grouping.without_seed`
    defines a configuration)."""
    keys = [SEED_KEY] if SEED_KEY in values else []
    if SPLIT_SEED_KEY in values and values[SPLIT_SEED_KEY] == values.get(SEED_KEY):
        keys.append(SPLIT_SEED_KEY)
    return keys


@dataclass(frozen=True)
class SeedConfig:
    """One seed's config.toml of a multi-seed configuration."""

    name: str
    text: str
    values: dict[str, Any]

    @property
    def rest(self) -> dict[str, str | None]:
        """Each value as canonical JSON, None for the seed keys: equal for the seeds of one
        configuration."""
        seeds = set(seed_keys(self.values))
        return {k: None if k in seeds else json.dumps(v, sort_keys=True, default=str)
                for k, v in self.values.items()}


def _value(rest: Mapping[str, str | None], key: str) -> str:
    """A value of :attr:`SeedConfig.rest` as a title shows it."""
    if key not in rest:
        return "absent"
    return rest[key] or "the seed"


def _differing(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Keys whose value (or presence) is not the same in every config, first-seen order."""
    keys = list(dict.fromkeys(k for c in configs for k in c))
    return [k for k in keys if len({json.dumps([k in c, c.get(k)], sort_keys=True, default=str)
                                    for c in configs}) > 1]


def _seeds(configs: Sequence[SeedConfig]) -> str:
    seeds = [c.values.get(SEED_KEY) for c in configs]
    if any(s is None for s in seeds):
        return f"{len(configs)} runs"
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


def _block(label: str, members: Sequence[SeedConfig], apart: Sequence[str]) -> Code:
    """The config.toml of the first of ``members``, titled with the configuration, its
    seeds, what differs between them and (``apart``) the keys that set it apart from the
    other variants of its configuration."""
    name = label + "".join(f", {k} = {_value(members[0].rest, k)}" for k in apart)
    differ = _differing([c.values for c in members])
    why = (f" ({' and '.join(differ)} follow{'s' if len(differ) == 1 else ''} the seed)"
           if differ else " (identical files)" if len(members) > 1 else "")
    shown = members[0].values.get(SEED_KEY)
    return Code(members[0].text, "toml",
                f"{name} - {_seeds(members)}{why}; shown: "
                + (f"seed {shown}, " if shown is not None and len(members) > 1 else "")
                + members[0].name)


def configuration_section(configs: Sequence[ConfigFile], runs: Sequence[TrainingRun],
                          notes: list[str]) -> list[Block]:
    """The section's blocks: every config file, one per configuration of a multi-seed run.

    Args:
        configs: the config and experiment files found (:attr:`RunData.configs`).
        runs: the training runs, their configurations named (:func:`training.name_runs`).
        notes: where a config that differs between the seeds of a configuration is noted
            (or that no config file was found).

    Returns:
        The heading and one code block per file or configuration; empty when there is no
        config file.
    """
    if not configs:
        notes.append(f"{HEADING}: no config.toml or experiment file found.")
        return []
    by_name = {name: c for c in configs for name in c.names}
    lines = [(label, members) for label, members in group(
        [r for r in runs if r.config is not None], lambda r: r.config).items()
        if len(members) > 1]  # a configuration with one run left is that run
    grouped: dict[str, list[SeedConfig]] = {}
    for label, members in lines:
        for run in members:
            name = config_name(run.label)
            found = by_name.get(name)
            if found is None:  # a run without config.toml has nothing to list
                continue
            try:
                values = flatten(tomllib.loads(found.text))
            except tomllib.TOMLDecodeError:
                continue  # listed as found, with the files that are not a seed's
            grouped.setdefault(label, []).append(SeedConfig(name, found.text, values))
    blocks: list[Block] = [Heading(HEADING)]
    taken = {c.name for members in grouped.values() for c in members}
    placed = False
    for file in configs:
        if not placed and taken.intersection(file.names):
            blocks += _seed_blocks(grouped, notes)
            placed = True
        left = [n for n in file.names if n not in taken]
        if left:
            blocks.append(Code(file.text, file.language, ", ".join(left)))
    if grouped:
        blocks.append(per_seed_note(per_run_files(
            [r for _, members in lines for r in members], paths.config(Path()).name)))
    return blocks


def _seed_blocks(grouped: Mapping[str, Sequence[SeedConfig]], notes: list[str]) -> list[Block]:
    """One block per configuration (per variant where its files differ but in the seed)."""
    blocks: list[Block] = []
    for label, members in grouped.items():
        variants = list(group(members, lambda c: tuple(sorted(c.rest.items()))).values())
        apart = _differing([v[0].rest for v in variants])
        if apart:
            notes.append(
                f"{HEADING}: the runs of {label} differ in more than the seed "
                f"({', '.join(apart)}), so their config.toml are listed apart with their "
                "seeds; the tables above still take them as one configuration.")
        blocks += [_block(label, v, apart) for v in variants]
    return blocks
