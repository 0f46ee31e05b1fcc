"""The ``.lbits`` bytes are frozen: fixed seeded models must pack to known SHA-256 digests.

The digests were computed before the container was split into modules (main @343e354), so a
refactor that changes a single bit fails here. A deliberate format change must update
``docs/FORMAT.md``, bump the version if old files no longer read, and replace the digests.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from torch import nn

from leanbits.bits.container import decode, encode
from leanbits.heads import Head
from leanbits.models import Plan, build

PLANS = {
    "mlp": Plan("mlp", (1, 8, 8), (), (12, 7), 10),
    "lenet5": Plan("lenet5", (1, 16, 16), (3, 4), (9,), 10),
    "convnet": Plan("convnet", (1, 8, 8), (3, 4), (6,), 3),
}
HEADS = {
    "mlp": Head("softmax", 10),
    "lenet5": Head("llr", 10, llr_target=4.0),
    "convnet": Head("llr-code", 5, code=torch.tensor(
        [[0, 0, 1], [0, 1, 0], [1, 0, 0], [1, 1, 0], [0, 1, 1]])),
}


def _fill(model: nn.Module, keep: float, seed: int) -> nn.Module:
    """Overwrite every float tensor with seeded numpy values (independent of torch's RNG);
    weights get a peaked distribution and a random mask of density ``keep``."""
    rng = np.random.default_rng(seed)
    state = model.state_dict()
    for name, t in state.items():
        if not t.is_floating_point():
            state[name] = torch.full_like(t, 7)
            continue
        v = rng.laplace(0.0, 0.1, size=t.shape).astype(np.float32)
        if name.endswith("weight") and t.ndim > 1:
            v *= rng.random(size=t.shape) < keep
        state[name] = torch.from_numpy(v)
    model.load_state_dict(state)
    return model


def _plain() -> nn.Module:
    """A model without a plan: names and shapes are stored, and an int64 buffer too."""
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Flatten(),
                         nn.Linear(3 * 6 * 6, 5))


CASES = {
    # name: (family or None, settings)
    "mlp-coded-entropy-kmeans": ("mlp", dict(bits=4)),
    "mlp-dense-fixed-uniform": ("mlp", dict(bits=3, index="dense", values="fixed",
                                            quant="uniform")),
    "mlp-bitmask-entropy-f32": ("mlp", dict(bits=2, index="bitmask",
                                            nonweight_dtype="float32")),
    "mlp-relative-fixed-bf16": ("mlp", dict(bits=5, index="relative", values="fixed",
                                            nonweight_dtype="bfloat16")),
    "lenet5-auto-entropy-uniform-pc": ("lenet5", dict(bits=4, index="auto", quant="uniform",
                                                      per_channel=True)),
    "lenet5-coded-fixed-1bit": ("lenet5", dict(bits=1, values="fixed")),
    "convnet-relative-entropy-kmeans": ("convnet", dict(bits=6, index="relative")),
    "convnet-coded-entropy-uniform": ("convnet", dict(bits=8, quant="uniform")),
    "plain-auto-entropy": (None, dict(bits=3, index="auto")),
    "plain-dense-fixed-f32": (None, dict(bits=2, index="dense", values="fixed",
                                         nonweight_dtype="float32")),
}

DIGESTS = {
    "mlp-coded-entropy-kmeans":
        "8039073239d9100bd4e50504b982fa5425ea895c89976c0204fd318303260d9a",
    "mlp-dense-fixed-uniform":
        "b633f1b8b292cfe61f18f477efe14652603e15a8f7d503e7641ce73800f29e5b",
    "mlp-bitmask-entropy-f32":
        "aad31702a65e2974e1a581a44ada9b3ed0e8b8688e2f82fa28dee1dbe8fedf35",
    "mlp-relative-fixed-bf16":
        "7c05afe7366d883cb3fc304016d5b7b02860037730f465aa0069011699eb376e",
    "lenet5-auto-entropy-uniform-pc":
        "2bcf606e368d1b44d4e7b4bd0d10f9d2f30d869e40a1332237880b32d621a7af",
    "lenet5-coded-fixed-1bit":
        "e88512c578c6afdd0876d9de2243aededc1d96f239a27caa33926491e25cde06",
    "convnet-relative-entropy-kmeans":
        "cd9c7d0b940cd16dba68680eb4f127f39e8a3812435519b29392551ef876eab1",
    "convnet-coded-entropy-uniform":
        "cff2f5be9b61e1d68f845af353339db01cc0cc4aa2f216d9eb55419a9bc4e259",
    "plain-auto-entropy":
        "9a9f355c72c1b21845523aa5bf1c8d7e8fb11d5b9d64bd026ccc6e34e4c2c8dc",
    "plain-dense-fixed-f32":
        "ffb8374e3753e78907deca15bc5da68a02a67b1ce381a6fd7b22e6f49f60397f",
}


def _pack(case: str) -> bytes:
    family, settings = CASES[case]
    torch.manual_seed(0)
    if family is None:
        return encode(_fill(_plain(), 0.4, 1), **settings).data
    model = _fill(build(PLANS[family]), 0.3, 0)
    return encode(model, PLANS[family], HEADS[family], **settings).data


@pytest.mark.parametrize("case", sorted(CASES))
def test_packed_bytes_are_unchanged(case):
    data = _pack(case)
    assert hashlib.sha256(data).hexdigest() == DIGESTS[case], (
        f"{case}: the .lbits bytes changed ({len(data)} bytes now)")
    decode(data)  # and they still read
