"""Quantizers: zero stays zero, k-means as Deep Compression, uniform levels, exact dequantize."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from leanbits.bits import count_bits, dequantize, quantize_kmeans, quantize_uniform
from leanbits.errors import ConfigError


def sparse_weight(shape=(8, 12), keep=0.3, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g)
    return w * (torch.rand(shape, generator=g) < keep)


@pytest.mark.parametrize("bad", [0, 17, -1, 2.5, True, "4"])
def test_bad_bits_are_refused_with_a_clear_error(bad):
    for fn in (quantize_kmeans, quantize_uniform):
        with pytest.raises(ConfigError, match="bits must be"):
            fn(torch.ones(2, 2), bad)
    with pytest.raises(ConfigError, match="bits must be"):
        count_bits(torch.nn.Sequential(torch.nn.Linear(2, 2)), bits=bad)


def test_kmeans_is_lossless_when_the_codebook_can_hold_every_value():
    g = torch.Generator().manual_seed(1)
    values = torch.tensor([-0.7, -0.1, 0.05, 0.3, 0.31, 1.2, 2.0])
    w = values[torch.randint(0, 7, (10, 10), generator=g)]
    w[torch.rand(10, 10, generator=g) < 0.5] = 0.0
    q = quantize_kmeans(w, bits=3)  # 8 >= 7 distinct nonzeros
    assert torch.equal(q.dequantized, w)
    assert 0.0 not in q.codebook.tolist()
    assert torch.equal(q.codes < 0, w == 0)


def test_kmeans_linear_init_and_lloyd_by_hand():
    # init linspace(1, 12, 2) = [1, 12]; boundary 6.5 -> {1,2,3} and {10,11,12} -> 2 and 11
    w = torch.tensor([1.0, 2.0, 3.0, 0.0, 10.0, 11.0, 12.0])
    q = quantize_kmeans(w, bits=1)
    assert q.codebook.tolist() == [2.0, 11.0]
    assert q.dequantized.tolist() == [2.0, 2.0, 2.0, 0.0, 11.0, 11.0, 11.0]


def test_kmeans_zero_is_exact_and_codes_are_nearest():
    w = sparse_weight((20, 30), keep=0.2)
    q = quantize_kmeans(w, bits=2)
    assert q.codebook.numel() <= 4 and 0.0 not in q.codebook.tolist()
    assert torch.equal(q.dequantized == 0, w == 0)  # a nonzero never becomes zero here
    nz = w[w != 0]
    nearest = q.codebook[(nz.reshape(-1, 1) - q.codebook.reshape(1, -1)).abs().argmin(1)]
    assert torch.equal(q.dequantized[w != 0], nearest)


def test_uniform_levels_by_hand():
    w = torch.tensor([[0.0, 0.5, -1.0, 0.26, -0.01]])
    q = quantize_uniform(w, bits=2)  # L = 2, s = 0.5: levels +-0.5, +-1.0
    # mid-tread: -0.01 is under half a step (0.25), so it becomes a pruned position
    assert q.dequantized.tolist() == [[0.0, 0.5, -1.0, 0.5, 0.0]]
    assert q.codes.tolist() == [[-1, 2, 0, 2, -1]]
    sign = quantize_uniform(w, bits=1)  # levels +-max; |w| <= max/2 rounds to zero
    assert sign.dequantized.tolist() == [[0.0, 0.0, -1.0, 0.0, 0.0]]


def test_uniform_per_channel_uses_one_scale_per_output():
    w = torch.tensor([[1.0, -2.0, 0.0], [0.1, 0.0, -0.05]])
    q = quantize_uniform(w, bits=3, per_channel=True)
    assert q.scales.tolist() == pytest.approx([0.5, 0.025])
    assert q.codebook.shape == (2, 8)
    assert torch.equal(q.dequantized, w)  # every value is a multiple of its row's scale


@pytest.mark.parametrize("bits", [1, 3, 8, 16])
def test_dequantize_reproduces_exactly_and_requantizing_is_idempotent(bits):
    w = sparse_weight((6, 10), keep=0.6, seed=bits)
    for q in (quantize_kmeans(w, bits), quantize_uniform(w, bits),
              quantize_uniform(w, bits, per_channel=True)):
        assert torch.equal(dequantize(q.codes, q.codebook), q.dequantized)
        again = (quantize_kmeans(q.dequantized, bits) if q.method == "kmeans" else
                 quantize_uniform(q.dequantized, bits, per_channel=q.codebook.ndim == 2))
        assert torch.equal(again.dequantized, q.dequantized)


def test_mask_zeroes_weights_and_all_zero_layers_work():
    w = torch.ones(3, 4)
    mask = torch.zeros(3, 4, dtype=torch.bool)
    mask[0, 1] = True
    q = quantize_kmeans(w, 4, mask=mask)
    assert q.dequantized.sum().item() == 1.0 and q.codebook.tolist() == [1.0]
    empty = quantize_kmeans(torch.zeros(2, 2), 4)
    assert empty.codebook.numel() == 0 and torch.equal(empty.dequantized, torch.zeros(2, 2))
    assert torch.equal(quantize_uniform(torch.zeros(2, 2), 4).dequantized, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="NaN"):
        quantize_kmeans(torch.tensor([1.0, float("nan")]), 2)


def test_kmeans_sixteen_bits_keeps_a_bounded_codebook():
    w = torch.from_numpy(np.random.default_rng(0).normal(size=(300, 300)).astype(np.float32))
    q = quantize_kmeans(w, 16)
    assert q.codebook.numel() <= 1 << 16
    assert torch.all(q.codebook[1:] > q.codebook[:-1])
    assert (q.dequantized - w).abs().max() < 1e-3
