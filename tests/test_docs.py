"""docs/CLI.md is generated from the config dataclasses; it must match the code."""

import dataclasses
from pathlib import Path

from leanbits.docgen import _configs, cli_reference

DOC = Path(__file__).resolve().parent.parent / "docs" / "CLI.md"


def test_cli_reference_is_up_to_date():
    assert DOC.read_text(encoding="utf-8") == cli_reference(), (
        "docs/CLI.md is stale: run `python -m leanbits.docgen > docs/CLI.md`"
    )


def test_every_config_field_is_documented_with_help():
    text = DOC.read_text(encoding="utf-8")
    for _title, cls in _configs():
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"
            assert f"| `{f.name}` |" in text
