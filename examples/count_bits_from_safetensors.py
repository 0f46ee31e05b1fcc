"""Count the bits of a model you have as a .safetensors file, then pack and reload it.

The model is an MLP of your own, saved with safetensors (as any training script might).
leanbits loads its weights into your template, prunes it at a few levels and, for each,
shows where the bits go — values, positions, codebooks, biases, header — under every
position encoding. Then it writes the packed file and checks that the reloaded
weights are bit-identical to the quantized ones.

    python examples/count_bits_from_safetensors.py [--file model.safetensors]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

import leanbits


def my_mlp() -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", help="a safetensors file for my_mlp() (default: make one)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    path = Path(args.file) if args.file else tmp / "model.safetensors"
    if not args.file:  # stand-in for the user's own trained file
        torch.manual_seed(0)
        save_file(my_mlp().state_dict(), str(path))

    model = my_mlp()
    model.load_state_dict(load_file(str(path)))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{path.name}: {n_params:,} parameters, {32 * n_params:,} bits as float32\n")
    print(f"{'sparsity':>8} {'index':>8} {'values':>7} {'positions':>9} {'bound':>7} "
          f"{'codebook':>8} {'biases':>6} {'header':>6} {'total':>7} {'x f32':>6}")
    for sparsity in (0.0, 0.8, 0.95):
        masks = leanbits.prune(model, sparsity=sparsity) if sparsity else None
        m = my_mlp()
        m.load_state_dict(model.state_dict())
        if masks:
            leanbits.apply_masks(m, masks)
        for index in ("dense", "bitmask", "relative", "coded"):
            a = leanbits.count_bits(m, bits=4, index=index, masks=masks)
            print(f"{sparsity:>8.2f} {index:>8} {a.values_bits:>7} {a.position_bits:>9} "
                  f"{a.position_bound_bits:>7.0f} {a.codebook_bits:>8} {a.nonweight_bits:>6} "
                  f"{a.header_bits:>6} {a.total_bits:>7} {a.compression:>6.1f}")

    packed = tmp / "model.lbits"
    account = leanbits.pack(m, packed, bits=4, index="coded", masks=masks)
    assert packed.stat().st_size == account.total_bytes
    back = leanbits.load(packed, model=my_mlp())
    unpacked = leanbits.unpack(packed)
    for k, v in back.state_dict().items():
        assert torch.equal(v, unpacked.state[k])
    print(f"\nwrote {packed.name}: {packed.stat().st_size} bytes (= the account's "
          f"{account.total_bits} bits rounded up); reloaded into my_mlp() bit for bit")


if __name__ == "__main__":
    main()
