"""Hostile .lbits files: forged headers with a valid checksum are refused on their declared
sizes, before the decoder allocates or loops (docs/FORMAT.md, "Ceilings").

Each forged file of the table is one that used to cost seconds to minutes or gigabytes
(issue 10); the CLI must refuse it with exit 2 and one line. The property tests draw huge
dimensions and layer counts and assert the refusal is structural: the declared-size check
fires, and the decoder's traced memory stays far below what the declaration asks for.
"""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from leanbits import snapshot
from leanbits.bits import container
from leanbits.bits.container import decode, encode
from leanbits.bits.forge import (
    coded_positions,
    coded_words,
    frame,
    name_shape,
    one_level,
    start,
    static_coded,
    weight_settings,
)
from leanbits.bits.records import (
    MAX_CODED_ROWS,
    MAX_ELEMENTS,
    MAX_NDIM,
    MAX_TENSORS,
)
from leanbits.bits.stream import HEADER, BitWriter
from leanbits.cli import main
from leanbits.errors import ConfigError, FormatError
from leanbits.heads import Head
from leanbits.models import Plan, build
from leanbits.models.plan import MAX_LAYERS

# ------------------------------------------------------------------ forging helpers


def coded_rows_over_tensors(rows: int, tensors: int) -> bytes:
    """Valid coded tensors of ``rows`` rows each; together they scan more than the file's
    row ceiling (each adaptive row is one range-decoder call)."""
    w = start(tensors)
    words = static_coded(rows, 3)
    for i in range(tensors):
        name_shape(w, f"l{i}.weight", (rows,))
        weight_settings(w, index=3)
        w.uv(3, HEADER)
        coded_words(w, 0, 7, words)
    return frame(w)


def raw_plan(family: int, in_shape: tuple[int, int, int], conv: int, fc: int,
             widths: int = 1, out: int = 10, all_widths: bool = False) -> bytes:
    """A PLAN record written field by field. Unless ``all_widths``, at most 3 widths follow
    each count: the reader must refuse a count over the ceiling before reading any width."""
    w = BitWriter()
    w.uint(1, 1, HEADER)
    w.uint(0, 1, HEADER)
    w.uint(1, 2, HEADER)
    w.uv(family, HEADER)
    for v in in_shape:
        w.uv(v, HEADER)
    for count in (conv, fc):
        w.uv(count, HEADER)
        for _ in range(count if all_widths else min(count, 3)):
            w.uv(widths, HEADER)
    w.uv(out, HEADER)
    return frame(w)


def huge_head() -> bytes:
    """An llr-code head declaring a 65536 x 65536 code matrix in a few bytes."""
    w = start(plan=None, head=True)
    w.uv(2, HEADER)
    w.uv(65536, HEADER)
    w.uint(0, 1, HEADER)
    w.uint(0, 1, HEADER)
    w.uv(65536, HEADER)
    return frame(w)


def many_dims() -> bytes:
    w = start(1)
    name_shape(w, "w", (1,) * (MAX_NDIM + 1))
    return frame(w)


def tensor_count(count: int) -> bytes:
    w = start(count)
    w.array(np.zeros(2 * count, dtype=np.uint8), 1, HEADER)  # enough bits for every tag
    return frame(w)


FORGED = {
    # name: (bytes, what the one-line refusal names)
    "coded 1-D 1e6 elements, 24 bytes": (lambda: coded_positions((10**6,), 1), "rows"),
    "coded 1-D 4e6 elements, 1.6 KB": (lambda: coded_positions((4 * 10**6,), 384), "rows"),
    "134 M weights, 1-entry codebook, 65 KB": (lambda: one_level(134_000_000, 32_700),
                                               "elements"),
    "coded rows summed over tensors": (lambda: coded_rows_over_tensors(40_000, 2), "rows"),
    "plan with 40,000 layers, 15 KB": (
        lambda: raw_plan(0, (1, 1, 1), 0, 40_000, all_widths=True), "layers"),
    "plan input of 2**40 values": (lambda: raw_plan(0, (1, 1 << 20, 1 << 20), 0, 0),
                                   "in_shape"),
    "plan layer of width 2**40": (lambda: raw_plan(0, (1, 2, 2), 0, 1, widths=1 << 40),
                                  "ceiling"),
    "tensor of 2**40 elements": (lambda: frame_tensor((1 << 20, 1 << 20)), "elements"),
    "more tensors than the ceiling": (lambda: tensor_count(MAX_TENSORS + 1), "tensors"),
    "17 dimensions": (many_dims, "dimensions"),
    "65536 x 65536 code matrix": (huge_head, "bits"),
}


def frame_tensor(shape: tuple[int, ...]) -> bytes:
    w = start(1)
    name_shape(w, "w", shape)
    weight_settings(w, index=0)
    w.uv(0, HEADER)
    return frame(w)


@pytest.mark.parametrize("case", sorted(FORGED))
def test_forged_file_is_refused_in_one_line(case, tmp_path, capsys):
    build_file, names = FORGED[case]
    path = tmp_path / "forged.lbits"
    path.write_bytes(build_file())
    assert path.stat().st_size <= 1 << 20
    with pytest.raises(FormatError, match=names):
        decode(path.read_bytes(), str(path))
    for argv in (["unpack", str(path), "-o", str(tmp_path / "out")], ["eval", str(path)]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("leanbits: error:") and err.count("\n") == 1, err
        assert "Traceback" not in err and names in err
    assert not (tmp_path / "out").exists()


def test_the_row_ceiling_is_what_the_coded_decoder_loops_over():
    """Right at the ceiling a valid file decodes; one row more is refused unread."""
    data = coded_rows_over_tensors(MAX_CODED_ROWS // 2, 2)
    state = decode(data).state
    assert [int(t.count_nonzero()) for t in state.values()] == [3, 3]
    w = start(1)
    name_shape(w, "w", (MAX_CODED_ROWS + 1,))
    weight_settings(w, index=3)
    w.uv(3, HEADER)
    coded_words(w, 0, 0, np.zeros(0, dtype=np.uint32))  # no words at all: never decoded
    with pytest.raises(FormatError, match=f"{MAX_CODED_ROWS + 1} rows"):
        decode(frame(w))


def test_a_valid_file_at_the_element_ceiling_decodes():
    filler = 4000
    data = one_level(MAX_ELEMENTS - filler, filler)
    assert len(data) < 1 << 20
    got = decode(data)
    assert got.account.params == MAX_ELEMENTS and bool((got.state["w"] == 1).all())
    with pytest.raises(FormatError, match="elements"):
        decode(one_level(MAX_ELEMENTS - filler + 1, filler))


# ---------------------------------------------------------------- property tests

PROPERTY = settings(max_examples=80, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
SMALL_OR_HUGE = st.one_of(st.integers(0, 6), st.integers(1 << 22, 1 << 45))


def traced_decode(data: bytes) -> tuple[BaseException | None, int]:
    """Decode under tracemalloc: (the FormatError or None, peak traced bytes)."""
    tracemalloc.start()
    try:
        decode(data)
        error = None
    except FormatError as exc:
        error = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return error, peak


@PROPERTY
@given(shape=st.lists(SMALL_OR_HUGE, min_size=1, max_size=4), tag=st.integers(0, 2),
       index=st.integers(0, 3), bits=st.integers(1, 16),
       tail=st.binary(max_size=48))
def test_huge_declared_tensors_are_refused_before_allocating(shape, tag, index, bits, tail):
    w = start(1)
    name_shape(w, "w", tuple(shape))
    if tag == 1:
        weight_settings(w, index=index, levels=1, bits=bits)
    else:
        w.uint(tag, 2, HEADER)
    w.array(np.frombuffer(tail, dtype=np.uint8), 8, HEADER)
    data = frame(w)
    error, peak = traced_decode(data)
    if math.prod(shape) > MAX_ELEMENTS:
        # refused on the declaration: nothing the size of the tensor was ever allocated
        assert error is not None and "elements" in str(error)
        assert peak < 1 << 20
    else:
        assert peak < 16 << 20


@PROPERTY
@given(family=st.integers(0, 2), in_shape=st.tuples(SMALL_OR_HUGE, SMALL_OR_HUGE,
                                                    SMALL_OR_HUGE),
       conv=st.one_of(st.integers(0, 3), st.integers(MAX_LAYERS + 1, 1 << 40)),
       fc=st.one_of(st.integers(0, 3), st.integers(MAX_LAYERS + 1, 1 << 40)),
       width=SMALL_OR_HUGE)
def test_huge_plans_are_refused_before_building(family, in_shape, conv, fc, width):
    error, peak = traced_decode(raw_plan(family, in_shape, conv, fc, widths=width))
    assert error is not None  # no tensor records follow: never a valid file
    if conv > MAX_LAYERS:
        expected = "conv layers"  # refused at the count, before any width is read
    elif fc > MAX_LAYERS:
        expected = "fc layers"
    elif not all(1 <= v <= 6 for v in in_shape):
        expected = "in_shape"
    elif width > 6 and conv + fc > 0:
        expected = "ceiling"
    else:
        expected = None
    if expected is not None:
        assert expected in str(error), str(error)
        assert peak < 1 << 20


# ------------------------------------------------------------------- the writer side


def test_the_writer_keeps_to_the_row_ceiling(monkeypatch):
    """A writer never produces a file the reader refuses: with the ceiling lowered, coded
    cannot store the model, and auto picks the other encodings instead."""
    plan = Plan("mlp", (1, 8, 8), (), (12, 7), 10)
    torch.manual_seed(0)
    model = build(plan)
    masks = {name: torch.rand_like(p) < 0.5 for name, p in model.named_parameters()
             if name.endswith("weight")}
    monkeypatch.setattr(container, "MAX_CODED_ROWS", 10)
    with pytest.raises(ConfigError, match="rows"):
        encode(model, plan, index="coded", masks=masks)
    packed = encode(model, plan, index="auto", masks=masks)
    assert packed.account.layers[0].index != "coded"  # fc1 scans 12 or 64 rows: over 10
    assert {row.index for row in packed.account.layers if row.index} <= {
        "dense", "bitmask", "relative", "coded"}
    decoded = decode(packed.data)
    assert all(torch.equal(decoded.state[k], packed.state[k]) for k in packed.state)


def test_the_writer_refuses_more_tensors_than_a_file_holds():
    model = torch.nn.Sequential(*[torch.nn.Linear(1, 1) for _ in range(MAX_TENSORS // 2 + 1)])
    with pytest.raises(ConfigError, match=str(MAX_TENSORS)):
        encode(model)


# ---------------------------------------------------------------- NaN weights


@pytest.fixture
def nan_snapshot(tmp_path: Path) -> Path:
    plan = Plan("mlp", (1, 8, 8), (), (12,), 10)
    torch.manual_seed(0)
    snap = snapshot.save(tmp_path / "snap", build(plan), plan, Head("softmax", 10))
    weights = next(snap.glob("weights*.safetensors"))
    state = load_file(weights)
    state["fc1.weight"][0, :3] = float("nan")
    save_file(state, weights)
    return snap


@pytest.mark.parametrize("command", ["bits", "pack"])
def test_nan_weights_are_refused_in_one_line(nan_snapshot, tmp_path, capsys, command):
    out = tmp_path / "m.lbits"
    argv = [command, str(nan_snapshot)] + (["-o", str(out)] if command == "pack" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("leanbits: error:") and err.count("\n") == 1, err
    assert "NaN" in err and not out.exists()
