"""The .lbits container: bit-exact round trips, file size == account, refusing bad files."""

from __future__ import annotations

import json
import math
import zlib

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from leanbits import snapshot
from leanbits.bits import (
    BitsConfig,
    count_bits,
    evaluate_lbits,
    load,
    pack,
    quantize_snapshot,
    unpack,
)
from leanbits.bits.container import decode, encode
from leanbits.errors import ConfigError, FormatError
from leanbits.heads import Head
from leanbits.models import Plan, build

PLANS = {
    "mlp": Plan("mlp", (1, 8, 8), (), (12, 7), 10),
    "lenet5": Plan("lenet5", (1, 16, 16), (3, 4), (9,), 10),
    "convnet": Plan("convnet", (1, 8, 8), (3, 4), (6,), 3),
}


def pruned(plan: Plan, keep: float = 0.3, seed: int = 0) -> tuple[nn.Module, dict]:
    torch.manual_seed(seed)
    model = build(plan)
    masks = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight"):
                masks[name] = torch.rand_like(p) < keep
                p.mul_(masks[name])
    return model, masks


def assert_same_state(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


def assert_same_account(a, b) -> None:
    da, db = a.to_dict(), b.to_dict()
    for d in (da, db):
        d.pop("settings")
    assert da == db


@pytest.mark.parametrize("family", sorted(PLANS))
def test_pack_unpack_is_bit_exact_and_file_size_is_the_account(tmp_path, family):
    plan = PLANS[family]
    model, masks = pruned(plan)
    code = torch.tensor([[0, 0, 1], [0, 1, 0], [1, 0, 0], [1, 1, 0], [0, 1, 1]])
    head = (Head("llr-code", 5, code=code) if family == "convnet"
            else Head("llr", 10, llr_target=4.0))
    path = tmp_path / "m.lbits"
    acc = pack(model, path, plan, head, bits=4, masks=masks)
    assert path.stat().st_size == acc.total_bytes == math.ceil(acc.total_bits / 8)
    expected = encode(model, plan, head, bits=4, masks=masks)
    got = unpack(path)
    assert_same_state(got.state, expected.state)
    assert got.plan == plan and got.head.to_dict() == head.to_dict()
    assert all(torch.equal(got.masks[k], masks[k]) for k in masks)
    assert_same_account(got.account, acc)
    net = load(path)
    x = torch.randn(3, *plan.in_shape)
    ref = build(plan)
    ref.load_state_dict(expected.state)
    assert torch.equal(net(x), ref(x))


@pytest.mark.parametrize("index", ["dense", "bitmask", "relative", "coded", "auto"])
@pytest.mark.parametrize("values", ["fixed", "entropy"])
@pytest.mark.parametrize("quant", ["kmeans", "uniform"])
def test_every_encoding_round_trips(index, values, quant):
    plan = PLANS["lenet5"]
    model, _ = pruned(plan, keep=0.2, seed=3)
    enc = encode(model, plan, None, bits=3, quant=quant, index=index, values=values,
                 per_channel=quant == "uniform", nonweight_dtype="bfloat16")
    out = decode(enc.data)
    assert_same_state(out.state, enc.state)
    assert_same_account(out.account, enc.account)
    assert len(enc.data) == enc.account.total_bytes


@pytest.mark.parametrize("index", ["dense", "bitmask", "relative", "coded"])
@pytest.mark.parametrize("bits", [1, 16])
def test_edge_layers_round_trip(index, bits):
    net = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 3), nn.Linear(3, 2), nn.Conv2d(1, 2, 1))
    with torch.no_grad():
        net[0].weight.zero_()  # no nonzeros at all
        net[1].weight.fill_(0.25)  # every weight nonzero, one value
        net[2].weight.zero_()
        net[2].weight[1, 2] = -3.0  # a single nonzero
    enc = encode(net, bits=bits, index=index, nonweight_dtype="float32")
    out = decode(enc.data)
    assert_same_state(out.state, enc.state)
    assert torch.equal(out.state["1.weight"], net[1].weight.detach())
    assert torch.equal(out.state["0.bias"], net[0].bias.detach())  # float32: exact
    assert_same_account(out.account, enc.account)


def test_a_model_without_plan_loads_into_a_template(tmp_path):
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(12, 2))
    net(torch.randn(4, 1, 4, 4))  # move the BatchNorm statistics, incl. the int counter
    path = tmp_path / "g.lbits"
    acc = pack(net, path, bits=6, quant="uniform")
    template = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(12, 2))
    loaded = load(path, model=template)
    assert loaded is template
    assert int(template[1].num_batches_tracked) == 1
    assert torch.equal(template[1].running_mean, unpack(path).state["1.running_mean"])
    # weight, running mean and variance: 3 float16 each; the bias is still all zero, so it
    # is stored sparse (one bit per element, no value); then the int64 counter
    assert acc.layers[1].nonweight_bits == 3 * 3 * 16 + 3 + 64
    with pytest.raises(FormatError, match="without a plan"):
        load(path)
    with pytest.raises(FormatError, match="does not fit"):
        load(path, model=nn.Sequential(nn.Linear(2, 2)))


def test_account_totals_and_json(tmp_path):
    plan = PLANS["mlp"]
    model, masks = pruned(plan)
    acc = count_bits(model, plan, Head("softmax", 10), bits=4, masks=masks)
    d = json.loads(json.dumps(acc.to_dict()))
    parts = ("values_bits", "position_bits", "codebook_bits", "nonweight_bits", "header_bits")
    assert sum(d[p] for p in parts) == d["total_bits"]
    params = sum(p.numel() for p in model.parameters())
    assert d["dense_float32_bits"] == 32 * params == 32 * d["params"]
    assert d["compression"] == pytest.approx(32 * params / d["total_bits"])
    assert d["nonzero"] == sum(int(m.sum()) for m in masks.values())
    assert [r["name"] for r in d["layers"]] == ["fc1", "fc2", "out"]
    assert [r["nonweight_bits"] for r in d["layers"]] == [16 * 12, 16 * 7, 16 * 10]  # biases
    assert "total" in acc.format_table() and "bound" in acc.format_table()


def test_nonweight_precision_is_counted():
    plan = PLANS["mlp"]
    model, _ = pruned(plan)
    biases = sum(p.numel() for n, p in model.named_parameters() if n.endswith("bias"))
    for dtype, width in (("float32", 32), ("float16", 16), ("bfloat16", 16)):
        acc = count_bits(model, plan, bits=4, nonweight_dtype=dtype)
        assert acc.nonweight_bits == width * biases


def test_bad_settings_are_refused():
    model, _ = pruned(PLANS["mlp"])
    with pytest.raises(ConfigError, match="index"):
        count_bits(model, index="zip")
    with pytest.raises(ConfigError, match="plan"):
        count_bits(model, PLANS["lenet5"])
    with pytest.raises(ConfigError, match="not Linear/Conv"):
        count_bits(model, masks={"fc1.bias": torch.ones(12, dtype=torch.bool)})


# ----------------------------------------------------------------------- bad files


@pytest.fixture(scope="module")
def valid_file() -> bytes:
    model, masks = pruned(PLANS["lenet5"], keep=0.25)
    return encode(model, PLANS["lenet5"], Head("llr", 10), bits=3, masks=masks).data


def test_foreign_empty_and_future_files_are_refused(tmp_path, valid_file):
    for data, msg in ((b"", "too short"), (b"PK\x03\x04" + bytes(40), "not a .lbits"),
                      (valid_file[:4] + b"\x04" + valid_file[5:], "version 4")):
        with pytest.raises(FormatError, match=msg):
            decode(data)
    with pytest.raises(FormatError, match="cannot read"):
        unpack(tmp_path / "missing.lbits")
    with pytest.raises(FormatError, match="checksum"):
        decode(valid_file + b"\x00")


FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.data())
def test_truncated_files_are_refused(valid_file, data):
    cut = data.draw(st.integers(0, len(valid_file) - 1))
    with pytest.raises(FormatError):
        decode(valid_file[:cut])


@FUZZ
@given(data=st.data())
def test_flipped_bytes_are_refused(valid_file, data):
    corrupt = bytearray(valid_file)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(corrupt) - 1))
        corrupt[i] ^= data.draw(st.integers(1, 255))
    if bytes(corrupt) != valid_file:
        with pytest.raises(FormatError):
            decode(bytes(corrupt))


@FUZZ
@given(data=st.data())
def test_forged_bodies_with_a_valid_checksum_never_crash(valid_file, data):
    """Past the checksum, the parser itself must refuse garbage cleanly (or decode it)."""
    body = bytearray(valid_file[:-4])
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(5, len(body) - 1))
        body[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(6, len(body)))
    forged = bytes(body[:cut])
    forged += zlib.crc32(forged).to_bytes(4, "big")
    try:
        decode(forged)
    except FormatError:
        pass


def test_a_forged_huge_plan_is_refused_before_allocating(valid_file):
    from leanbits.bits.container import MAGIC, VERSION
    from leanbits.bits.stream import HEADER, BitWriter

    w = BitWriter()
    w.uint(1, 1, HEADER)
    w.uint(0, 1, HEADER)
    w.uint(1, 2, HEADER)
    # The plan's fields written by hand: Plan itself refuses a plan this big.
    for v in (0, 1, 1000, 1000, 0, 1, 100_000, 10):  # mlp 1x1000x1000, no conv, fc 100000
        w.uv(v, HEADER)
    body = MAGIC + bytes([VERSION]) + w.to_bytes()
    with pytest.raises(FormatError, match="ceiling|elements"):
        decode(body + zlib.crc32(body).to_bytes(4, "big"))


# ----------------------------------------------------------------------- CLI, refit


@pytest.fixture
def snap_dir(tmp_path):
    plan = Plan("mlp", (1, 28, 28), (), (16,), 10)
    model, masks = pruned(plan, keep=0.2)
    return snapshot.save(tmp_path / "snap", model, plan, Head("softmax", 10),
                         config={"data": {"dataset": "mnist"}}, masks=masks)


def test_refit_moves_only_non_weights(snap_dir, tiny_splits):
    snap = snapshot.load(snap_dir)
    plain, _ = quantize_snapshot(snap, BitsConfig(bits=2))
    refit, report = quantize_snapshot(snap, BitsConfig(bits=2, refit=2, refit_lr=1e-2),
                                      tiny_splits)
    assert report["refit_epochs"] == 2 and math.isfinite(report["refit_loss"])
    for name in ("fc1.weight", "out.weight"):
        assert torch.equal(refit.state[name], plain.state[name])
    assert not torch.equal(refit.state["fc1.bias"], plain.state["fc1.bias"])
    assert_same_state(decode(refit.data).state, refit.state)
    with pytest.raises(ConfigError, match="re-fit"):
        pack(snap.model, snap_dir / "x.lbits", snap.plan, snap.head, refit=1)


def test_cli_bits_pack_unpack(snap_dir, tmp_path, capsys, tiny_splits, monkeypatch):
    from leanbits.bits import pipeline
    from leanbits.cli import main

    assert main(["bits", str(snap_dir), "--bits", "3", "--index", "relative", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["settings"]["index"] == "relative" and report["total_bytes"] > 0
    out = tmp_path / "m.lbits"
    assert main(["pack", str(snap_dir), "-o", str(out), "--quant", "uniform"]) == 0
    assert f"{out.stat().st_size} bytes" in capsys.readouterr().out
    assert main(["unpack", str(out), "-o", str(tmp_path / "back")]) == 0
    back = snapshot.load(tmp_path / "back")
    assert_same_state(back.model.state_dict(), unpack(out).state)
    assert back.masks is not None and set(back.masks) == {"fc1.weight", "out.weight"}
    assert main(["bits", str(snap_dir), "--bits", "17"]) == 2
    assert "bits" in capsys.readouterr().err
    out.write_bytes(out.read_bytes()[:-3])
    assert main(["unpack", str(out), "-o", str(tmp_path / "bad")]) == 2
    assert "checksum" in capsys.readouterr().err

    monkeypatch.setattr(pipeline, "_snapshot_splits", lambda snap: tiny_splits)
    assert main(["bits", str(snap_dir), "--refit", "1", "--accuracy", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert 0 <= report["val_acc"] <= 1 and report["refit_epochs"] == 1


def test_evaluate_lbits(snap_dir, tmp_path, tiny_splits):
    snap = snapshot.load(snap_dir)
    path = tmp_path / "e.lbits"
    acc = pack(snap.model, path, snap.plan, snap.head, masks=snap.masks)
    report = evaluate_lbits(path, tiny_splits)
    assert set(report) >= {"val_acc", "val_loss", "test_acc", "test_loss", "total_bits"}
    assert report["total_bytes"] == acc.total_bytes == path.stat().st_size
