"""Shared fixtures: tiny seeded data that looks like MNIST (shapes, classes)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch


@dataclass
class Part:
    x: torch.Tensor
    y: torch.Tensor


@dataclass
class TinySplits:
    train: Part
    val: Part
    test: Part
    num_classes: int = 10


def make_tiny_splits(n_train: int = 256, n_val: int = 64, n_test: int = 64,
                     shape: tuple[int, int, int] = (1, 28, 28), seed: int = 0) -> TinySplits:
    """Linearly separable-ish random data: class-dependent means plus noise."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(10, *shape, generator=g)

    def part(n: int) -> Part:
        y = torch.randint(0, 10, (n,), generator=g)
        x = centers[y] + 0.5 * torch.randn(n, *shape, generator=g)
        return Part(x, y)

    return TinySplits(part(n_train), part(n_val), part(n_test))


@pytest.fixture
def tiny_splits() -> TinySplits:
    return make_tiny_splits()


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LEANBITS_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"
