"""Position encodings and entropy coding: hand-computed sizes, best r, near-entropy coding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from leanbits.bits import count_bits, pack, unpack
from leanbits.bits.entropy import (
    decode_symbols,
    empirical_entropy_bits,
    encode_symbols,
    quantize_frequencies,
)
from leanbits.bits.index import (
    MAX_R,
    choose_relative_r,
    coded_decode,
    coded_encode,
    fixed_width,
    golomb_bits,
    info_bound_bits,
    relative_decode,
    relative_encode,
    relative_entries,
    relative_size_bits,
)


def uv_bits(x: int) -> int:
    """Length of the Exp-Golomb code of x (docs/FORMAT.md)."""
    return 2 * (x + 1).bit_length() - 1


# A 1 x 16 layer with nonzeros at 1, 2, 9 and two distinct values: k-means at 1 bit is
# lossless with a codebook of K = 2 entries.
POSITIONS = [1, 2, 9]


def one_by_sixteen() -> nn.Sequential:
    net = nn.Sequential(nn.Linear(16, 1, bias=False))
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].weight[0, POSITIONS] = torch.tensor([0.5, -0.25, 0.5])
    return net


#: header of that model: frame (magic 32, version 8, crc 32) + flags 4 + tensor count
#: uv(1) + name uv(8) + 8 bytes + ndim uv(2) + dims uv(1), uv(16) + tag 2 + settings 9
HEADER_BITS = 72 + 4 + uv_bits(1) + uv_bits(8) + 64 + uv_bits(2) + uv_bits(1) + uv_bits(16) + 11
CODEBOOK_BITS = uv_bits(2) + 2 * 32
K_BITS = uv_bits(3)  # the nonzero count, stored by every encoding


@pytest.mark.parametrize(
    ("index", "positions", "values"),
    [
        ("dense", K_BITS, 16 * 2),  # 16 codes of an alphabet {zero, c0, c1}: 2 bits each
        ("bitmask", K_BITS + 16, 3 * 1),  # n bits; 3 codes of 1 bit
        # gaps 1, 0, 6 -> r = 3 needs no filler: 5-bit r field, uv(3 entries), 3 x 3 bits
        ("relative", K_BITS + 5 + uv_bits(3) + 3 * 3, 3 * 1),
    ],
)
def test_hand_computed_totals_for_a_one_by_sixteen_layer(tmp_path, index, positions, values):
    acc = count_bits(one_by_sixteen(), bits=1, index=index, values="fixed")
    (row,) = acc.layers
    assert (row.values_bits, row.position_bits, row.codebook_bits) == (
        values, positions, CODEBOOK_BITS)
    assert row.nonweight_bits == 0 and acc.header_bits == HEADER_BITS
    total = HEADER_BITS + CODEBOOK_BITS + positions + values
    assert acc.total_bits == total and acc.total_bytes == math.ceil(total / 8)
    assert row.position_bound_bits == pytest.approx(math.log2(math.comb(16, 3)))
    path = tmp_path / "w.lbits"
    assert pack(one_by_sixteen(), path, bits=1, index=index, values="fixed").total_bits == total
    assert path.stat().st_size == math.ceil(total / 8)


def test_coded_layer_size_is_its_words_plus_five_bits_of_model_and_any_row_counts():
    acc = count_bits(one_by_sixteen(), bits=1, index="coded", values="fixed")
    mask = np.zeros(16, dtype=bool)
    mask[POSITIONS] = True
    coded = coded_encode(mask, rows=1)
    words = coded.words.size
    rows = 0 if coded.row_counts is None else 4 + golomb_bits(coded.row_counts, coded.golomb)
    assert acc.layers[0].position_bits == K_BITS + 1 + 3 + 1 + rows + uv_bits(words) + 32 * words


def test_relative_fields_with_fillers_by_hand():
    fields, filler = relative_encode(np.array(POSITIONS), r=2)  # gap 6 > 3: one filler
    assert fields.tolist() == [1, 0, 3, 2] and filler.tolist() == [False, False, True, False]
    assert relative_decode(fields, filler, 16).tolist() == POSITIONS
    assert relative_entries(np.array(POSITIONS), 2) == 4
    # the value alphabet gains the zero (filler) code: 2 + 1 symbols -> 2 bits
    assert relative_size_bits(np.array(POSITIONS), 2, codebook_size=2) == 4 * (2 + 2)


def test_relative_picks_a_filler_r_when_that_is_smallest(tmp_path):
    positions = np.array([*range(40), 130])  # forty neighbours, then one gap of 89
    assert choose_relative_r(positions, 2) == 2  # 63 entries x 4 bits beats 41 x 8
    w = torch.zeros(1, 131)
    w[0, positions] = torch.tensor([1.0, -1.0] * 20 + [1.0])
    net = nn.Sequential(nn.Linear(131, 1, bias=False))
    net[0].weight.data.copy_(w)
    acc = pack(net, tmp_path / "f.lbits", bits=1, index="relative", values="fixed")
    entries = relative_entries(positions, 2)
    assert acc.layers[0].position_bits == uv_bits(41) + 5 + uv_bits(entries) + 2 * entries
    assert acc.layers[0].values_bits == entries * 2
    assert torch.equal(unpack(tmp_path / "f.lbits").state["0.weight"], w)


@pytest.mark.parametrize("seed", range(6))
def test_relative_r_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 3000))
    density = rng.choice([0.005, 0.05, 0.3, 0.9])
    positions = np.flatnonzero(rng.random(n) < density)
    if seed == 0:  # clumpy: long empty stretches
        positions = np.sort(rng.choice(n // 10, size=5, replace=False) * 10)
    for k in (1, 2, 16, 300):
        best = min(range(1, MAX_R + 1), key=lambda r: (relative_size_bits(positions, r, k), r))
        assert choose_relative_r(positions, k) == best
        f, filler = relative_encode(positions, best)
        assert f.size == relative_entries(positions, best)
        assert relative_decode(f, filler, n).tolist() == positions.tolist()


def test_info_bound_and_fixed_width():
    assert info_bound_bits(16, 3) == pytest.approx(math.log2(560))
    assert info_bound_bits(10, 0) == 0 and info_bound_bits(10, 10) == pytest.approx(0)
    assert [fixed_width(a) for a in (1, 2, 3, 4, 5, 65536)] == [0, 1, 2, 2, 3, 16]


def test_entropy_coded_values_are_within_one_percent_of_empirical_entropy():
    rng = np.random.default_rng(0)
    for alphabet, conc in ((16, 0.5), (5, 2.0), (256, 0.3)):
        p = rng.dirichlet(np.full(alphabet, conc))
        symbols = rng.choice(alphabet, size=20_000, p=p)
        coded = encode_symbols(symbols, alphabet)
        h = empirical_entropy_bits(symbols)
        assert coded.payload_bits <= 1.01 * h + 64
        assert np.array_equal(decode_symbols(coded.words, coded.freqs, symbols.size), symbols)


def test_coded_positions_are_within_one_percent_of_the_bound():
    rng = np.random.default_rng(1)
    mask = rng.random((100, 200)) < 0.1
    coded = coded_encode(mask, rows=100)
    bound = info_bound_bits(mask.size, int(mask.sum()))
    assert 32 * coded.words.size <= 1.01 * bound + 64
    out = coded_decode(coded.words, 100, mask.size, int(mask.sum()), coded.transpose, coded.prior)
    assert np.array_equal(out, mask.ravel())


def test_coded_positions_learn_dead_inputs():
    rng = np.random.default_rng(2)
    mask = rng.random((300, 400)) < 0.2
    mask[:, rng.random(400) < 0.5] = False  # half the inputs are dead
    coded = coded_encode(mask, rows=300)
    # iid bound ~58k bits; the alive half alone has ~43k bits of entropy
    assert 32 * coded.words.size < 0.85 * info_bound_bits(mask.size, int(mask.sum()))
    out = coded_decode(coded.words, 300, mask.size, int(mask.sum()), coded.transpose, coded.prior)
    assert np.array_equal(out, mask.ravel())


def test_frequency_quantization_keeps_seen_symbols():
    assert quantize_frequencies(np.array([1000, 10, 0, 1]), 4).tolist() == [15, 1, 0, 1]
    assert quantize_frequencies(np.array([3, 5]), 16).tolist() == [39321, 65535]
