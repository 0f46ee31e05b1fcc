"""Forged snapshots, .lbits plans and flags: each is refused with exit 2 and one line.

Every case edits a valid tiny snapshot (or passes a bad flag), runs the command through
``leanbits.cli.main`` and checks: exit status 2, exactly one line on stderr, and that the
line names the bad value. Snapshot cases also check that nothing was built: the schema is
checked before any model exists (``build`` raises if called), so a forged width costs
microseconds, not gigabytes. Data comes from tiny synthetic MNIST-shaped splits.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from leanbits import cli, snapshot
from leanbits.bits.container import MAGIC, VERSION, encode
from leanbits.bits.stream import HEADER, BitWriter
from leanbits.data import datasets
from leanbits.heads import Head
from leanbits.models import Plan, build

PLAN = Plan("mlp", (1, 28, 28), (), (8,), 10)
CONFIG = {"data": {"dataset": "mnist", "val_size": 64, "split_seed": 0}}


@pytest.fixture(autouse=True)
def tiny_data(monkeypatch, tiny_splits):
    """Every command sees tiny MNIST-shaped data instead of MNIST."""
    monkeypatch.setattr(datasets, "load_splits", lambda *a, **k: tiny_splits)
    return tiny_splits


@pytest.fixture
def base(tmp_path) -> Path:
    torch.manual_seed(0)
    return snapshot.save(tmp_path / "snap", build(PLAN), PLAN, Head("softmax", 10), CONFIG,
                         {"val_acc": 0.5})


# ----------------------------------------------------------------------- forgers


def _plan(**changes) -> Callable[[Path], None]:
    def forge(d: Path) -> None:
        meta = json.loads((d / "model.json").read_text())
        meta["plan"].update(changes)
        (d / "model.json").write_text(json.dumps(meta))
    return forge


def _head(**changes) -> Callable[[Path], None]:
    def forge(d: Path) -> None:
        meta = json.loads((d / "model.json").read_text())
        meta["head"].update(changes)
        (d / "model.json").write_text(json.dumps(meta))
    return forge


def _raw(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda d: (d / name).write_bytes(data)


def _weights(edit: Callable[[dict], dict]) -> Callable[[Path], None]:
    def forge(d: Path) -> None:
        state = load_file(str(d / "weights.safetensors"))
        save_file(edit(state), str(d / "weights.safetensors"))
    return forge


def _set(key: str, value: torch.Tensor) -> Callable[[dict], dict]:
    return lambda s: {**s, key: value}


def _poison(value: float) -> Callable[[dict], dict]:
    def edit(s: dict) -> dict:
        s["fc1.weight"][0, 0] = value
        return s
    return edit


def _masks(tensors: dict) -> Callable[[Path], None]:
    return lambda d: save_file(tensors, str(d / "masks.safetensors"))


SNAPSHOT_CASES = {
    # model.json: types, ranges and ceilings of the plan
    "fc 1e6 (3.7 GB before)": (_plan(fc=[1_000_000, 100]), "eval", "1,000,000"),
    "fc 1e7": (_plan(fc=[10_000_000]), "eval", "ceiling of 65,536"),
    "fc 1e9": (_plan(fc=[1_000_000_000]), "eval", "ceiling of 65,536"),
    "fc as a string": (_plan(fc="abc"), "eval", "'abc'"),
    "fc with strings": (_plan(fc=["300", "x"]), "eval", "'300'"),
    "fc 300.7 not truncated": (_plan(fc=[300.7]), "eval", "300.7"),
    "fc true": (_plan(fc=[True]), "eval", "True"),
    "out as a word": (_plan(out="ten"), "eval", "'ten'"),
    "in_shape of 2 items": (_plan(in_shape=[28, 28]), "eval", "[28, 28]"),
    "negative in_shape": (_plan(in_shape=[1, -28, 28]), "eval", "-28"),
    "in_shape 2**40": (_plan(in_shape=[1, 2**40, 1]), "eval", "1,099,511,627,776"),
    "too many parameters": (_plan(fc=[60_000, 60_000]), "eval", "parameters"),
    "input too small for lenet5": (_plan(family="lenet5", in_shape=[1, 2, 2], conv=[3]),
                                   "eval", "too small"),
    "conv on an mlp": (_plan(conv=[4]), "eval", "no conv"),
    "unknown family": (_plan(family="resnet"), "eval", "'resnet'"),
    "unknown plan key": (_plan(depth=3), "eval", "depth"),
    "plan not an object": (_raw("model.json", b'{"plan": [1], "head": {}}'), "eval", "plan"),
    "non-UTF-8 model.json": (_raw("model.json", b"\xff\xfe{}"), "eval", "UTF-8"),
    "model.json not JSON": (_raw("model.json", b"{plan"), "eval", "JSON"),
    "model.json nesting bomb": (_raw("model.json", b"[" * 100_000), "eval", "JSON"),
    "model.json a list": (_raw("model.json", b"[1, 2]"), "eval", "plan and head"),
    # model.json: the head, and the head against the plan
    "num_classes 5, output 10": (_head(num_classes=5), "eval", "5 classes"),
    "num_classes a word": (_head(num_classes="ten"), "eval", "'ten'"),
    "num_classes 1e9": (_head(num_classes=10**9), "eval", "1000000000"),
    "unknown head": (_head(kind="sigmoid"), "eval", "'sigmoid'"),
    "llr_target on softmax": (_head(llr_target=5.0), "eval", "llr_target"),
    # weights: float tensors of exactly the plan's shapes, finite
    "bool weights": (_weights(lambda s: {k: v > 0 for k, v in s.items()}), "eval", "BOOL"),
    "int8 weights": (_weights(lambda s: {k: v.to(torch.int8) for k, v in s.items()}), "eval",
                     "I8"),
    "wrong weight shape": (_weights(_set("fc1.weight", torch.zeros(8, 10))), "eval", "(8, 10)"),
    "extra tensor": (_weights(_set("fc9.weight", torch.zeros(1))), "eval", "fc9.weight"),
    "NaN weight (eval)": (_weights(_poison(float("nan"))), "eval", "NaN"),
    "NaN weight (bits)": (_weights(_poison(float("nan"))), "bits", "NaN"),
    "NaN weight (pack)": (_weights(_poison(float("nan"))), "pack", "NaN"),
    "infinite weight": (_weights(_poison(float("inf"))), "bits", "infinite"),
    "weights not safetensors": (_raw("weights.safetensors", b"\x08" + b"\0" * 7 + b"{}"),
                                "eval", "safetensors"),
    "weights missing": (lambda d: (d / "weights.safetensors").unlink(), "eval", "missing"),
    # masks: 0/1, named and shaped like the plan's weights
    "mask of the wrong shape": (_masks({"fc1.weight": torch.ones(3, 3, dtype=torch.uint8)}),
                                "bits", "(3, 3)"),
    "mask of a bias": (_masks({"fc1.bias": torch.ones(8, dtype=torch.uint8)}), "bits",
                       "fc1.bias"),
    "mask of floats": (_masks({"fc1.weight": torch.ones(8, 784)}), "bits", "F32"),
    "mask holding 2": (_masks({"fc1.weight": torch.full((8, 784), 2, dtype=torch.uint8)}),
                       "bits", "other than 0 and 1"),
    # config.toml
    "data = 'mnist'": (_raw("config.toml", b'data = "mnist"\n'), "eval", "'mnist'"),
    "val_size = 'lots'": (_raw("config.toml", b'[data]\nval_size = "lots"\n'), "eval",
                          "'lots'"),
    "unknown dataset": (_raw("config.toml", b'[data]\ndataset = "cifar"\n'), "eval", "cifar"),
    "config.toml not TOML": (_raw("config.toml", b"[data\n"), "eval", "TOML"),
    "metrics.json a list": (_raw("metrics.json", b"[]"), "eval", "metrics"),
}

#: [data] values are checked where the data is loaded, after the snapshot itself
CHECKED_WITH_THE_DATA = {"val_size = 'lots'", "unknown dataset"}

COMMAND = {"eval": ["eval"], "bits": ["bits"], "pack": ["pack", "-o", "x.lbits"]}


def _one_line_error(capsys, needle: str, notes: int = 0) -> str:
    """The error is one line (the last), after at most ``notes`` progress lines."""
    err = capsys.readouterr().err.strip().splitlines()
    assert 1 <= len(err) <= 1 + notes, err
    assert err[-1].startswith("leanbits: error: ") and needle in err[-1], err[-1]
    return err[-1]


@pytest.mark.parametrize("case", SNAPSHOT_CASES, ids=list(SNAPSHOT_CASES))
def test_forged_snapshot_is_refused_in_one_line(case, base, capsys, monkeypatch, tmp_path):
    forge, command, needle = SNAPSHOT_CASES[case]
    forge(base)

    def no_build(plan):  # the schema is checked before any model is built
        raise AssertionError(f"built a model from a forged snapshot: {plan}")

    if case not in CHECKED_WITH_THE_DATA:
        monkeypatch.setattr(snapshot.reader, "build", no_build)
    monkeypatch.chdir(tmp_path)
    assert cli.main([*COMMAND[command], str(base)]) == 2
    _one_line_error(capsys, needle)
    assert not (tmp_path / "x.lbits").exists()


FLAG_CASES = {
    "--fc 1000000000": (["--fc", "1000000000"], "65536"),
    "--fc 300.7": (["--fc", "300.7"], "300.7"),
    "--fc empty": (["--fc", ""], "lists no values"),
    "--fc 0": (["--fc", "0"], "below the minimum"),
    "--seed 1e23": (["--seed", "99999999999999999999999"], "99999999999999999999999"),
    "--seed -1": (["--seed", "-1"], "below the minimum"),
    "--split-seed huge": (["--split-seed", str(2**64)], str(2**64)),
    "--fc too many parameters": (["--fc", "60000,60000"], "parameters"),
}
#: refused once the data says the input size, after the "training ..." line
AFTER_THE_DATA = {"--fc too many parameters"}


@pytest.mark.parametrize("case", FLAG_CASES, ids=list(FLAG_CASES))
def test_bad_train_flag_is_refused_in_one_line(case, tmp_path, capsys):
    flags, needle = FLAG_CASES[case]
    out = tmp_path / "run"
    assert cli.main(["train", *flags, "--epochs", "1", "--out", str(out)]) == 2
    _one_line_error(capsys, needle, notes=int(case in AFTER_THE_DATA))
    assert not out.exists() and not (tmp_path / "run.partial").exists()


def test_an_empty_hidden_list_is_allowed_when_explicit(tmp_path, capsys):
    cfg = tmp_path / "linear.toml"
    cfg.write_text("[train]\nfc = []\nepochs = 1\ntrain_eval_size = 0\n")
    assert cli.main(["train", "--config", str(cfg), "--out", str(tmp_path / "run"),
                     "--json"]) == 0
    assert snapshot.load(tmp_path / "run").plan.fc == ()


# ----------------------------------------------------------------------- .lbits plans


def _lbits(path: Path, plan: Plan, head: Head) -> Path:
    torch.manual_seed(0)
    enc = encode(build(plan), plan, head, bits=4, quant="kmeans", index="coded",
                 values="entropy", nonweight_dtype="float16")
    path.write_bytes(enc.data)
    return path


def _forged_plan_lbits(path: Path, fields: tuple[int, ...]) -> Path:
    """A .lbits file whose header declares the given plan fields (valid CRC)."""
    w = BitWriter()
    w.uint(1, 1, HEADER)
    w.uint(0, 1, HEADER)
    w.uint(1, 2, HEADER)
    for v in fields:
        w.uv(v, HEADER)
    body = MAGIC + bytes([VERSION]) + w.to_bytes()
    path.write_bytes(body + zlib.crc32(body).to_bytes(4, "big"))
    return path


LBITS_CASES = {
    "input 1x2x2 against 1x28x28 data": (
        lambda p: _lbits(p, Plan("mlp", (1, 2, 2), (), (4,), 10), Head("softmax", 10)),
        "1x2x2"),
    "3 classes against 10": (
        lambda p: _lbits(p, Plan("mlp", (1, 28, 28), (), (4,), 3), Head("softmax", 3)),
        "3 classes"),
    "plan in_shape 2**40": (
        lambda p: _forged_plan_lbits(p, (0, 1, 2**40, 1, 0, 1, 4, 10)), "1,099,511,627,776"),
    "plan channels 2**40": (
        lambda p: _forged_plan_lbits(p, (0, 2**40, 1, 1, 0, 1, 4, 10)), "1,099,511,627,776"),
    "lenet5 in_shape 2**40 (was a 16-line C++ stack)": (
        lambda p: _forged_plan_lbits(p, (1, 1, 2**40, 2**40, 1, 3, 1, 4, 10)),
        "1,099,511,627,776"),
    "lenet5 input too small": (
        lambda p: _forged_plan_lbits(p, (1, 1, 2, 2, 1, 3, 1, 4, 10)), "too small"),
}


@pytest.mark.parametrize("case", LBITS_CASES, ids=list(LBITS_CASES))
def test_lbits_whose_plan_does_not_fit_is_refused(case, tmp_path, capsys):
    make, needle = LBITS_CASES[case]
    path = make(tmp_path / "m.lbits")
    assert cli.main(["eval", str(path)]) == 2
    _one_line_error(capsys, needle)


def test_snapshot_whose_plan_does_not_fit_its_data_is_refused(tmp_path, capsys):
    plan = Plan("mlp", (1, 2, 2), (), (4,), 10)
    d = snapshot.save(tmp_path / "s", build(plan), plan, Head("softmax", 10), CONFIG)
    assert cli.main(["eval", str(d)]) == 2
    _one_line_error(capsys, "1x2x2")
    plan = Plan("mlp", (1, 28, 28), (), (4,), 3)
    d = snapshot.save(tmp_path / "t", build(plan), plan, Head("llr", 3), CONFIG)
    assert cli.main(["bits", str(d), "--accuracy"]) == 2
    _one_line_error(capsys, "3 classes")


def test_the_untouched_snapshot_still_evaluates(base, capsys):
    assert cli.main(["eval", str(base), "--json"]) == 0
    assert 0.0 <= json.loads(capsys.readouterr().out)["val_acc"] <= 1.0
