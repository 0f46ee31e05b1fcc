"""The command line: --help everywhere, one-line user errors, --json output, train → eval."""

import json
import subprocess
import sys

import pytest

from leanbits.cli import build_parser, main
from leanbits.data import sources


def _subcommands(parser):
    for action in parser._actions:  # argparse has no public API for this
        if action.__class__.__name__ == "_SubParsersAction":
            yield from action.choices.items()


def _all_parsers(parser, prefix=()):
    for name, sub in _subcommands(parser):
        yield (*prefix, name), sub
        yield from _all_parsers(sub, (*prefix, name))


def test_every_subcommand_has_help(capsys):
    paths = [p for p, _ in _all_parsers(build_parser())]
    assert {("train",), ("eval",), ("data", "fetch"), ("prune",), ("bits",), ("pack",)} <= set(
        paths
    )
    for path in paths:
        with pytest.raises(SystemExit) as exc:
            main([*path, "--help"])
        assert exc.value.code == 0
        assert "usage: leanbits" in capsys.readouterr().out


def test_python_dash_m_works():
    out = subprocess.run([sys.executable, "-m", "leanbits", "--version"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("leanbits ")


def test_bad_config_key_is_one_line_error(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[train]\nepoch = 3\n")
    assert main(["train", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "epoch" in err[0] and "valid:" in err[0]
    assert not (tmp_path / "runs").exists()


def test_bad_value_is_one_line_error(capsys):
    assert main(["train", "--lr", "fast"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lr" in err[0]


def test_missing_snapshot_is_one_line_error(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope")]) == 2
    assert "not a leanbits snapshot" in capsys.readouterr().err


def _mnist_ready() -> bool:
    return any(d["name"] == "mnist" and d["complete"] for d in sources.info())


@pytest.mark.skipif(not _mnist_ready(), reason="MNIST not cached; run `leanbits data fetch mnist`")
def test_train_then_eval_json_on_real_mnist(tmp_path, capsys):
    out = tmp_path / "snap"
    rc = main(["train", "--limit-train", "600", "--epochs", "3", "--batch-size", "32",
               "--fc", "32,16", "--out", str(out), "--json", "--no-progress"])
    assert rc == 0
    final = json.loads(capsys.readouterr().out)
    assert final["snapshot"] == str(out) and final["val_acc"] > 0.5
    assert (out / "config.toml").is_file() and (out / "metrics.jsonl").is_file()
    assert main(["eval", str(out), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["val_acc"] == pytest.approx(final["val_acc"])
    assert 0.5 < ev["test_acc"] <= 1.0
