"""Shared fixtures: tiny seeded data that looks like MNIST (shapes, classes), and a sweep's
results without their timings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

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
                     shape: tuple[int, int, int] = (1, 28, 28), seed: int = 0,
                     noise: float = 0.5) -> TinySplits:
    """Linearly separable-ish random data: class-dependent means plus ``noise`` times
    standard normal noise."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(10, *shape, generator=g)

    def part(n: int) -> Part:
        y = torch.randint(0, 10, (n,), generator=g)
        x = centers[y] + noise * torch.randn(n, *shape, generator=g)
        return Part(x, y)

    return TinySplits(part(n_train), part(n_val), part(n_test))


@pytest.fixture
def tiny_splits() -> TinySplits:
    return make_tiny_splits()


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LEANBITS_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def small_mount(tmp_path):
    """Mount a 64 KiB tmpfs: ``small_mount("full")`` (writable, fills at once) or
    ``small_mount("ro")`` (read-only). Skips where mounting is not permitted (not root, no
    CAP_SYS_ADMIN, not Linux); unmounted afterwards."""
    import shutil
    import subprocess

    mounted = []

    def mount(kind: str):
        if shutil.which("mount") is None:
            pytest.skip("no mount command: a real full/read-only file system cannot be made")
        d = tmp_path / f"mnt-{kind}-{len(mounted)}"
        d.mkdir()
        opts = "size=64k" + (",ro" if kind == "ro" else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(d)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}); "
                        "needs root with CAP_SYS_ADMIN")
        mounted.append(d)
        return d

    yield mount
    for d in mounted:
        subprocess.run(["umount", str(d)], capture_output=True)


def untimed_results(path: Path) -> list[str]:
    """A sweep's results.json / results.jsonl as canonical JSON lines, every byte kept but
    the pruning methods' wall times (``method_seconds``: a timing of the machine, not a
    result; runs that rebuild the same stages reproduce everything else exactly). Each
    pruned row must have a positive time, every other row none."""
    text = Path(path).read_text(encoding="utf-8")
    doc = json.loads(text) if Path(path).suffix == ".json" else None
    rows = doc["rows"] if doc is not None else [json.loads(x) for x in text.splitlines()]
    for r in rows:
        seconds = r.pop("method_seconds")
        assert (seconds > 0) if "prune" in r["stages"] else seconds is None
    rest = [] if doc is None else [json.dumps({k: v for k, v in doc.items() if k != "rows"},
                                              sort_keys=True)]
    return [json.dumps(r, sort_keys=True) for r in rows] + rest

