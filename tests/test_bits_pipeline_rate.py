"""The bits pipeline with ECSQ, codebook fine-tuning and int8 non-weights chosen on validation."""

from __future__ import annotations

import json

import pytest
import torch

from leanbits import snapshot
from leanbits.bits import BitsConfig, quantize_snapshot, unpack
from leanbits.bits.container import decode, encode
from leanbits.config import make
from leanbits.errors import ConfigError
from leanbits.heads import Head
from leanbits.models import Plan, build
from leanbits.train import evaluate

PLAN = Plan("mlp", (1, 28, 28), (), (24,), 10)


@pytest.fixture
def snap(tmp_path, tiny_splits):
    """A small MLP trained a little on the tiny fixture, half its weights pruned."""
    from leanbits.loop import epoch_batches, fit, make_optimizer

    torch.manual_seed(0)
    model = build(PLAN)
    head = Head("softmax", 10)
    data = (tiny_splits.train.x, tiny_splits.train.y)
    fit(model, list(model.parameters()), epoch_batches(data, 32, seed=0), head.loss,
        make_optimizer("adam", model.parameters(), 1e-3), epochs=3, seed=0)
    masks = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight"):
                masks[name] = p.abs() > p.abs().median()
                p.mul_(masks[name])
    d = snapshot.save(tmp_path / "snap", model, PLAN, head, {"data": {"dataset": "mnist"}},
                      masks=masks)
    return snapshot.load(d)


def test_ecsq_with_codebook_finetuning_keeps_codes_and_bits(snap, tiny_splits):
    plain, report0 = quantize_snapshot(snap, BitsConfig(quant="ecsq", bits=4, rate_lambda=0.05))
    tuned, report = quantize_snapshot(
        snap, BitsConfig(quant="ecsq", bits=4, rate_lambda=0.05, codebook_epochs=2,
                         codebook_lr=1e-3), tiny_splits)
    assert report0 == {} and report["codebook_epochs"] == 2
    for name in ("fc1.weight", "out.weight"):
        assert torch.equal(tuned.masks[name], plain.masks[name])
        assert not torch.equal(tuned.state[name], plain.state[name])
    assert tuned.account.values_bits == plain.account.values_bits  # same codes, same counts
    out = decode(tuned.data)
    assert all(torch.equal(out.state[k], tuned.state[k]) for k in tuned.state)
    assert out.account.settings["quant"] == "ecsq"

    def train_loss(enc):
        model = build(PLAN)
        model.load_state_dict(enc.state)
        return evaluate(model, snap.head, tiny_splits.train.x, tiny_splits.train.y)["loss"]

    assert train_loss(tuned) < train_loss(plain)


def test_auto_non_weights_choose_int8_only_when_validation_keeps(snap, tiny_splits):
    enc, report = quantize_snapshot(snap, BitsConfig(bits=3, nonweight_dtype="auto"),
                                    tiny_splits)
    keep = report["val_acc_int8"] >= report["val_acc_float16"]
    assert report["nonweight_dtype"] == ("int8" if keep else "float16")
    assert decode(enc.data).account.settings["nonweight_dtype"] == report["nonweight_dtype"]
    half = encode(snap.model, PLAN, snap.head, bits=3, masks=snap.masks)
    assert torch.equal(enc.state["fc1.weight"], half.state["fc1.weight"])
    if keep:  # 24 + 10 biases: two float32 scales and a byte each instead of 16 bits each
        assert enc.account.nonweight_bits == 2 * 32 + 8 * 34 < half.account.nonweight_bits


def test_bad_combinations_are_refused(snap, tiny_splits):
    with pytest.raises(ConfigError, match="free codebook"):
        quantize_snapshot(snap, BitsConfig(quant="uniform", codebook_epochs=1), tiny_splits)
    with pytest.raises(ConfigError, match="rate_lambda applies to quant ecsq"):
        quantize_snapshot(snap, BitsConfig(quant="kmeans", rate_lambda=0.1))
    with pytest.raises(ConfigError, match="below the minimum"):
        make(BitsConfig, {"rate_lambda": -1.0})


def test_cli_packs_ecsq_with_a_rate_weight(snap, tmp_path, capsys):
    from leanbits.cli import main

    out = tmp_path / "m.lbits"
    assert main(["pack", str(snap.path), "-o", str(out), "--quant", "ecsq", "--bits", "5",
                 "--rate-lambda", "0.1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["config"]["rate_lambda"] == 0.1 and report["settings"]["quant"] == "ecsq"
    assert out.stat().st_size == report["total_bytes"] == unpack(out).account.total_bytes
    assert main(["bits", str(snap.path), "--quant", "kmeans", "--rate-lambda", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "rate_lambda applies to quant ecsq" in err and err.count("\n") == 1


def test_pack_refuses_what_needs_data(snap, tmp_path):
    from leanbits.bits import pack
    from leanbits.config import to_dict

    for cfg, msg in ((BitsConfig(codebook_epochs=1), "fine-tune"),
                     (BitsConfig(nonweight_dtype="auto"), "auto")):
        with pytest.raises(ConfigError, match=msg):
            pack(snap.model, tmp_path / "x.lbits", snap.plan, snap.head, **to_dict(cfg))
    assert not (tmp_path / "x.lbits").exists()
