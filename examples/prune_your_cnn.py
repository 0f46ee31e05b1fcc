"""Prune a CNN you defined yourself, re-fit only its biases, compact it, count its bits.

Nothing here is a leanbits model: a plain ``nn.Sequential`` with BatchNorm, trained on
synthetic 10-class images. leanbits prunes it once (global magnitude), re-fits the
non-weight parameters (biases and BatchNorm scale/shift) with the weights frozen,
removes the units that lost all their connections, and counts the bits of the result.

    python examples/prune_your_cnn.py [--sparsity 0.9] [--steps 300]
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import leanbits
from leanbits.heads import Head

CENTERS = torch.randn(10, 1, 16, 16, generator=torch.Generator().manual_seed(7))


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    return CENTERS[y] + 1.0 * torch.randn(n, 1, 16, 16, generator=g), y


def my_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 3 * 3, 64), nn.ReLU(), nn.Linear(64, 10),
    )


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    torch.manual_seed(0)
    x, y = make_data(4096, 0)
    xv, yv = make_data(1024, 1)
    head = Head("softmax", 10)
    model = my_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(args.steps):
        model.train()
        idx = torch.randint(0, len(x), (128,))
        loss = head.loss(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    dense_acc = accuracy(model, xv, yv)

    masks = leanbits.prune(model, sparsity=args.sparsity)  # global magnitude, model untouched
    leanbits.apply_masks(model, masks)
    pruned_acc = accuracy(model, xv, yv)
    weights_before = {k: v.clone() for k, v in model.state_dict().items() if "weight" in k}
    leanbits.refit_nonweights(model, (x, y), head.loss, epochs=2, lr=1e-2)
    refit_acc = accuracy(model, xv, yv)
    for k, v in weights_before.items():  # BatchNorm "weight" is a scale: it may move
        conv_or_linear = not k.startswith("1.")
        assert not conv_or_linear or torch.equal(v, model.state_dict()[k])

    small = leanbits.compact_sequential(model.eval(), masks)[0]
    assert abs(accuracy(small, xv, yv) - refit_acc) < 1e-6
    account = leanbits.count_bits(small, bits=4)
    dense_params = sum(p.numel() for p in my_cnn().parameters())
    print(f"dense accuracy            {dense_acc:.3f}")
    print(f"pruned {args.sparsity:.0%}, no re-fit    {pruned_acc:.3f}")
    print(f"pruned, biases re-fitted  {refit_acc:.3f}")
    print(f"compact model: {sum(p.numel() for p in small.parameters()):,} parameters "
          f"(dense {dense_params:,}); 4-bit total {account.total_bytes:,} bytes = "
          f"{32 * dense_params / account.total_bits:.1f}x smaller than dense float32")
    assert refit_acc > 0.5


if __name__ == "__main__":
    main()
