"""Format version 2: ECSQ files name their quantizer, int8 non-weights, row counts in coded
positions; version-1 files still read."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from leanbits.bits.container import VERSION, decode, encode
from leanbits.bits.index import coded_decode, coded_encode, golomb_bits
from leanbits.bits.stream import HEADER, BitWriter
from leanbits.errors import ConfigError, FormatError
from leanbits.models import Plan, build

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_bits_golden import CASES, HEADS, PLANS, _fill, _plain  # noqa: E402

#: bytes written by leanbits @df15237 (format version 1) for two of the golden cases
V1_FILES = {
    "mlp-coded-entropy-kmeans": bytes.fromhex(
    "4c42495401da1226c688171647c237e0a9bc97dc009857d7cadbd7d6c958d7d0ad4057c8ea8c57c0f55a17b5"
    "c3eaf79b747be786146587adda7647bf690b67c7dfd687d0792aa7d4a22647d7f979c03a1c2f4ca2fb2f4309"
    "5e3a870e4298dc91e832bae71da0ae7e7a2604ace2122c061c76666cb8d696dde1c5f8f391bd3606df25d6c3"
    "16487be4ff0040af31d5f3f3ef38ff135db06b51cb17925547a4c169aced24fe9a1ea13bf5bc6222224b33f9"
    "06222192d757ac1970d9cdf41308050ddc19a2f5151be7db6b13e39b808c2e8db87be553023cc255cff47b76"
    "c661857c27d6f5baea929e402d4e73497d70c1c64909124686e4bc5314daf72fe0887d1c23b768e294e65a16"
    "805ccacc50458f2ba8811042a980c6a2b8f0c3fabe3eaad8d5eace2cbce6bc986fe8cfc51f177dada5e97c13"
    "90657b4f00517a1b7fda782c671e7ab61de67bea4f627c4dd7727c81819e7d2be89a1d7238213fc17ee5925e"
    "ddb4142687fe47425c3bcf6586e3c1bff47b407a8ac02cb310b4c8b034a3dcbef91f197dd914fd7d2929c57b"
    "a61c817ae3d5a17a01c9347a0ff2e27b6e5cc27c1852d67ca75c027d1d1b147d75fc641e7244ec04d71c492e"
    "9739cf6a4c07ff2b6d6a8ebf33ec70f39694779854fd18395cad5bf34e2d522a65b04c12609d626568285e18"
    "69126f5c"
    ),
    "lenet5-auto-entropy-uniform-pc": bytes.fromhex(
    "4c42495401d482211642a142d0ba00800000000000033b3d0a44253d84d3a33ce7ba011e31fae84694020090"
    "4113d6c1868ff8efbce96a4b644a807b1eb67e7ad5e3fc7b7bb6b47b061d6e7a98841604a612645e904d4cf9"
    "6b51509125c4bce881649a47e679c20515d4c43674efafe4ff2228a35ca8226cb0e042d0bf927784ac30fea1"
    "148602a3a44096b6d556b53a286b88b2386c1e42f89b0272c609e6066e776752ae00000000795fe3d8787dc9"
    "b6764e9c927a6db4840000000079b4c4627a37fe782841212013820405039d9e9794afe5d1a62035a2768bf5"
    "d0e5a1d6b22460ecdcf2b32770f072dfccf03362dcef669270f27c5e3400000000f1476b1cee888920f42bea"
    "44f716a26c3203860a08142002409505a584ff59354b327bb2b15c4fd8fcd1640348a29342bb022ebb2462f5"
    "ea495a633b02fb0c1086245d4b"
    ),
}


def _model(case: str) -> tuple[nn.Module, Plan | None, dict]:
    family, settings = CASES[case]
    torch.manual_seed(0)
    if family is None:
        return _fill(_plain(), 0.4, 1), None, settings
    return _fill(build(PLANS[family]), 0.3, 0), PLANS[family], settings


def _frame(w: BitWriter, version: int = VERSION) -> bytes:
    import zlib

    body = b"LBIT" + bytes([version]) + w.to_bytes()
    return body + zlib.crc32(body).to_bytes(4, "big")


@pytest.mark.parametrize("case", sorted(V1_FILES))
def test_version_1_files_still_read(case):
    model, plan, settings = _model(case)
    family = CASES[case][0]
    now = encode(model, plan, HEADS[family], **settings)
    old = decode(V1_FILES[case])
    assert VERSION == 3 and now.data[4] == 2 and V1_FILES[case][4] == 1
    assert list(old.state) == list(now.state)
    assert all(torch.equal(old.state[k], now.state[k]) for k in now.state)
    assert all(torch.equal(old.masks[k], now.masks[k]) for k in now.masks)
    assert old.account.settings["quant"] == settings.get("quant", "kmeans")


def test_a_file_names_ecsq_and_reads_back_bit_exactly():
    model, plan, _ = _model("mlp-coded-entropy-kmeans")
    enc = encode(model, plan, HEADS["mlp"], bits=5, quant="ecsq", rate_lambda=0.05)
    out = decode(enc.data)
    assert len(enc.data) == enc.account.total_bytes
    assert all(torch.equal(out.state[k], enc.state[k]) for k in enc.state)
    a, b = out.account.to_dict(), enc.account.to_dict()
    assert a.pop("settings")["quant"] == "ecsq" and b.pop("settings")["rate_lambda"] == 0.05
    assert a == b
    assert all(r.quant == "ecsq" for r in out.account.layers if r.weights)
    with pytest.raises(ConfigError, match="rate_lambda applies to quant ecsq"):
        encode(model, plan, bits=4, quant="kmeans", rate_lambda=0.05)
    with pytest.raises(ConfigError, match="per_channel applies to quant uniform"):
        encode(model, plan, bits=4, quant="ecsq", per_channel=True)


def test_int8_non_weights_cost_a_scale_and_a_byte_each_and_read_back_exactly():
    model, plan, _ = _model("mlp-coded-entropy-kmeans")
    enc = encode(model, plan, HEADS["mlp"], bits=4, nonweight_dtype="int8")
    f16 = encode(model, plan, HEADS["mlp"], bits=4, nonweight_dtype="float16")
    out = decode(enc.data)
    assert len(enc.data) == enc.account.total_bytes
    assert out.account.settings["nonweight_dtype"] == "int8"
    for name, t in model.state_dict().items():
        assert torch.equal(out.state[name], enc.state[name])
        if name.endswith("bias"):
            step = float(t.abs().max()) / 127
            assert float((enc.state[name] - t).abs().max()) <= step / 2 * (1 + 1e-6)
    for row, half in zip(enc.account.layers, f16.account.layers, strict=True):
        biases = half.nonweight_bits // 16
        assert row.nonweight_bits == 32 + 8 * biases  # one float32 scale per tensor
        assert row.values_bits == half.values_bits and row.position_bits == half.position_bits


def _int8_file(byte: int, scale: float = 0.5) -> bytes:
    w = BitWriter()
    w.uint(0, 1, HEADER)  # no plan
    w.uint(0, 1, HEADER)  # no head
    w.uint(3, 2, HEADER)  # int8
    w.uv(1, HEADER)
    raw = b"b"
    w.uv(len(raw), HEADER)
    w.array(np.frombuffer(raw, dtype=np.uint8), 8, HEADER)
    w.uv(1, HEADER)
    w.uv(2, HEADER)  # shape (2,)
    w.uint(0, 2, HEADER)  # float tensor
    w.array(np.array([scale], dtype=np.float32).view(np.uint32), 32, HEADER)
    w.array(np.array([1, byte]), 8, HEADER)
    return w


def test_forged_int8_non_weights_are_refused():
    assert torch.equal(decode(_frame(_int8_file(0xFF))).state["b"], torch.tensor([0.5, -0.5]))
    with pytest.raises(FormatError, match="-128"):
        decode(_frame(_int8_file(0x80)))
    with pytest.raises(FormatError, match="scale"):
        decode(_frame(_int8_file(1, scale=float("nan"))))
    with pytest.raises(FormatError, match="dtype code 3"):  # version 1 had no int8
        decode(_frame(_int8_file(1), version=1))


def structured_mask(rows: int = 100, cols: int = 400, seed: int = 0) -> np.ndarray:
    """A pruned layer's pattern: each entry kept with probability proportional to its row's
    and its column's (log-normal) activity, as busy outputs and busy inputs make it; plus a
    dead and a full row."""
    rng = np.random.default_rng(seed)
    r = rng.lognormal(0.0, 1.0, size=(rows, 1))
    c = rng.lognormal(0.0, 1.0, size=(1, cols))
    m = rng.random((rows, cols)) < np.minimum(1.0, 0.05 * r * c / (r.mean() * c.mean()))
    m[3], m[7] = True, False
    return m


def test_row_counts_code_structured_positions_smaller_and_round_trip():
    m = structured_mask()
    n, k = m.size, int(m.sum())
    with_rows = coded_encode(m, m.shape[0])
    without = coded_encode(m, m.shape[0], row_model=False)
    assert with_rows.row_counts is not None and without.row_counts is None
    counts = with_rows.row_counts
    row_bits = golomb_bits(counts, with_rows.golomb) + 5  # + flag and order fields
    assert 32 * with_rows.words.size + row_bits < 0.97 * 32 * without.words.size
    back = coded_decode(with_rows.words, m.shape[0], n, k, with_rows.transpose,
                        with_rows.prior, counts)
    assert np.array_equal(back, m.ravel())
    plain = coded_decode(without.words, m.shape[0], n, k, without.transpose, without.prior)
    assert np.array_equal(plain, m.ravel())
    bad = counts.copy()
    bad[0] += 1
    with pytest.raises(ValueError, match="add up"):
        coded_decode(with_rows.words, m.shape[0], n, k, with_rows.transpose, with_rows.prior,
                     bad)


def test_a_layer_with_structured_positions_packs_the_row_model_and_reads_back():
    m = torch.from_numpy(structured_mask())
    net = nn.Sequential(nn.Linear(400, 100))
    with torch.no_grad():
        net[0].weight.mul_(m)
    enc = encode(net, bits=3, index="coded", nonweight_dtype="int8")
    out = decode(enc.data)
    assert torch.equal(out.masks["0.weight"], m)
    assert torch.equal(out.state["0.weight"], enc.state["0.weight"])
    assert out.account.to_dict() == {**enc.account.to_dict(), "settings": out.account.settings}
    assert len(enc.data) == enc.account.total_bytes


@pytest.mark.parametrize("order", [0, 1, 3, 7])
def test_golomb_bits_are_what_the_writer_spends(order):
    values = np.random.default_rng(order).integers(0, 500, size=50)
    w = BitWriter()
    for v in values.tolist():
        w.uv(v >> order, HEADER)
        w.uint(v & ((1 << order) - 1), order, HEADER)
    assert w.nbits == golomb_bits(values, order)
    assert math.isfinite(w.nbits)


def test_forged_row_counts_are_refused_in_one_line():
    def forged(counts: list[int]) -> bytes:
        w = BitWriter()
        w.uint(0, 1, HEADER)
        w.uint(0, 1, HEADER)
        w.uint(1, 2, HEADER)
        w.uv(1, HEADER)
        raw = b"w"
        w.uv(len(raw), HEADER)
        w.array(np.frombuffer(raw, dtype=np.uint8), 8, HEADER)
        w.uv(2, HEADER)
        w.uv(2, HEADER)
        w.uv(4, HEADER)  # shape (2, 4)
        w.uint(1, 2, HEADER)  # weight
        w.uint(0, 2, HEADER)  # kmeans
        w.uint(0, 4, HEADER)  # 1 bit
        w.uint(3, 2, HEADER)  # coded
        w.uint(0, 1, HEADER)  # fixed values
        w.uv(1, HEADER)
        w.array(np.array([0x3F800000]), 32, HEADER)  # codebook [1.0]
        w.uv(3, HEADER)  # k = 3
        w.uint(0, 1, HEADER)
        w.uint(7, 3, HEADER)
        w.uint(1, 1, HEADER)  # row counts
        w.uint(0, 4, HEADER)
        for c in counts:
            w.uv(c, HEADER)
        w.uv(0, HEADER)  # no words
        return _frame(w)

    for counts, msg in (([5, 0], "do not fit"), ([2, 0], "add up")):
        with pytest.raises(FormatError, match=msg) as err:
            decode(forged(counts))
        assert "\n" not in str(err.value)
