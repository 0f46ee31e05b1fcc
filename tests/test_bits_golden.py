"""The ``.lbits`` bytes are frozen: fixed seeded models must pack to known SHA-256 digests.

The digests are those of format version 2 (ECSQ named in the file, int8 non-weights, row
counts in coded positions); version 1's were computed before the container was split into
modules (main @343e354), and two version-1 files are kept in ``test_bits_format_v2.py``. A
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
    "mlp-coded-entropy-ecsq-int8": ("mlp", dict(bits=5, quant="ecsq", rate_lambda=0.05,
                                                nonweight_dtype="int8")),
    "lenet5-coded-entropy-int8": ("lenet5", dict(bits=3, nonweight_dtype="int8")),
}

DIGESTS = {
    "mlp-coded-entropy-kmeans":
        "fc5cbe211ebbeb977e97e726f641ec16427814671dd09afcd5c3c6da22fa8a6c",
    "mlp-dense-fixed-uniform":
        "3dce528fc4f145b73a6dc5ae11956833970b39c0ebc9f8f800c52549b30dc8a2",
    "mlp-bitmask-entropy-f32":
        "5a9fb8db9b9725a0c2bb1769f090d2728c18e598c62d90380d947a0f2163105e",
    "mlp-relative-fixed-bf16":
        "41f9586a81699d5b0c4c8ae77918be6d613856896c098740d1cc84318817d94f",
    "lenet5-auto-entropy-uniform-pc":
        "634b4c0a340f40b2214f243041b06e542f80de758af143b742de3753c9e0f817",
    "lenet5-coded-fixed-1bit":
        "6a6753021c3cbc8b453659c421705872f21270130f2c36433124d2987565fc22",
    "convnet-relative-entropy-kmeans":
        "69a9ddeeab6aee99fb71b50d92b5a9ae91dcd6a48ad09c2f59ad6e0866e8092c",
    "convnet-coded-entropy-uniform":
        "d4834a086350bf30cf8b87792cd32619ee6cd065f4fded7be652d552389141d0",
    "plain-auto-entropy":
        "33498c3794a6de05e6f5f67d6509d2fbc1c934c71f107200ed3a1ed45eb29d53",
    "plain-dense-fixed-f32":
        "e3d52da4385a0c3f172d7e783245fdd816fc1c1fdbb557ce9da22bdcce1b248e",
    "mlp-coded-entropy-ecsq-int8":
        "30aa91102b3cd66bc9a8d3f0eadf2d531d1f220a70e6e1c95169ea25a31692c6",
    "lenet5-coded-entropy-int8":
        "5af37fda77de7d79f5c6315ae37ee5792c44a59797698325e19d74c995fd2509",
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
