"""Format version 3: float non-weights whose zeros are skipped (tag 3), written only when they
are smaller; a file without one stays version 2."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from leanbits.bits.container import PLAIN_VERSION, VERSION, decode, encode
from leanbits.bits.stream import HEADER, BitWriter
from leanbits.errors import FormatError

WIDTH = {"float32": 32, "float16": 16, "bfloat16": 16, "int8": 8}


def _net(zeros: int) -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 40), nn.ReLU(), nn.Linear(40, 3))
    with torch.no_grad():
        net[0].bias[:zeros] = 0.0  # e.g. the biases of dead units
    return net


@pytest.mark.parametrize("dtype", sorted(WIDTH))
def test_zero_biases_cost_a_bit_each_and_read_back_bit_exactly(dtype):
    dense = encode(_net(0), bits=4, nonweight_dtype=dtype)
    sparse = encode(_net(30), bits=4, nonweight_dtype=dtype)
    assert dense.data[4] == PLAIN_VERSION and sparse.data[4] == VERSION == 3
    scale = 32 if dtype == "int8" else 0
    # 40 mask bits and the 10 stored values, against 40 values
    assert sparse.account.layers[0].nonweight_bits == scale + 40 + 10 * WIDTH[dtype]
    assert dense.account.layers[0].nonweight_bits == scale + 40 * WIDTH[dtype]
    assert sparse.account.layers[1].nonweight_bits == dense.account.layers[1].nonweight_bits
    out = decode(sparse.data)
    assert len(sparse.data) == sparse.account.total_bytes
    for name, t in sparse.state.items():
        assert torch.equal(out.state[name], t)
        assert torch.equal(out.state[name].view(torch.int32), t.view(torch.int32))  # bits
    assert bool((out.state["0.bias"][:30] == 0).all())
    kept = _net(30)[0].bias.detach()[30:]
    if dtype == "int8":  # one scale for the tensor: max |b| / 127, each value within half
        step = float(kept.abs().max()) / 127
        assert float((out.state["0.bias"][30:] - kept).abs().max()) <= step / 2 * (1 + 1e-6)
    else:  # the same rounding as a dense record's
        assert torch.equal(out.state["0.bias"][30:], dense.state["0.bias"][30:])


def test_sparse_only_when_smaller_and_negative_zero_reads_as_stored():
    # one float16 zero in 40 would cost 40 mask bits to save 16: written dense
    assert encode(_net(1), bits=4).data[4] == PLAIN_VERSION
    net = _net(30)
    with torch.no_grad():
        net[0].bias[:30] = -0.0
    enc = encode(net, bits=4)
    out = decode(enc.data)
    assert enc.data[4] == VERSION
    # what encode says the file holds is what it holds, sign bit included
    assert torch.equal(enc.state["0.bias"].view(torch.int32), out.state["0.bias"].view(torch.int32))


def _frame(w: BitWriter, version: int) -> bytes:
    import zlib

    body = b"LBIT" + bytes([version]) + w.to_bytes()
    return body + zlib.crc32(body).to_bytes(4, "big")


def _sparse_file(mask: list[int], values: list[float], dtype_code: int = 1,
                 scale: float | None = None) -> BitWriter:
    w = BitWriter()
    w.uint(0, 1, HEADER)  # no plan
    w.uint(0, 1, HEADER)  # no head
    w.uint(dtype_code, 2, HEADER)
    w.uv(1, HEADER)
    w.uv(1, HEADER)
    w.array(np.frombuffer(b"b", dtype=np.uint8), 8, HEADER)
    w.uv(1, HEADER)
    w.uv(len(mask), HEADER)  # shape (n,)
    w.uint(3, 2, HEADER)  # sparse float
    if scale is not None:
        w.array(np.array([scale], dtype=np.float32).view(np.uint32), 32, HEADER)
    w.array(np.array(mask), 1, HEADER)
    if dtype_code == 3:
        w.array(np.array(values, dtype=np.int64) & 0xFF, 8, HEADER)
    else:
        w.array(np.array(values, dtype=np.float16).view(np.uint16), 16, HEADER)
    return w


def test_forged_sparse_non_weights_are_refused_in_one_line():
    good = _sparse_file([0, 1, 0, 1], [0.5, -2.0])
    assert torch.equal(decode(_frame(good, 3)).state["b"], torch.tensor([0.0, 0.5, 0.0, -2.0]))
    int8 = _sparse_file([1, 0, 1], [2, -1], dtype_code=3, scale=0.25)
    assert torch.equal(decode(_frame(int8, 3)).state["b"], torch.tensor([0.5, 0.0, -0.25]))
    for version in (1, 2):  # tag 3 did not exist then
        with pytest.raises(FormatError, match="unknown tensor tag 3"):
            decode(_frame(good, version))
    with pytest.raises(FormatError, match="stores a zero"):  # one encoding per tensor
        decode(_frame(_sparse_file([1, 1], [0.5, 0.0]), 3))
    with pytest.raises(FormatError, match="stores a zero"):
        decode(_frame(_sparse_file([1, 1], [3, 0], dtype_code=3, scale=1.0), 3))
    with pytest.raises(FormatError, match="-128"):
        decode(_frame(_sparse_file([1], [-128], dtype_code=3, scale=1.0), 3))
    # the mask says 4 values, 2 follow: too few bits left
    with pytest.raises(FormatError) as err:
        decode(_frame(_sparse_file([1, 1, 1, 1], [0.5, 1.0]), 3))
    assert "\n" not in str(err.value)
