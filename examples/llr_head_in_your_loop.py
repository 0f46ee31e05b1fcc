"""Use an LLR output head in an ordinary PyTorch training loop.

The network is yours; leanbits only supplies the head: the loss (a binary cross-entropy
per class on the LLR outputs) and the decision (argmax of the LLRs). Here: a small CNN on
synthetic 10-class data, then the same loop with the codeword head, which needs only
ceil(log2 10) = 4 outputs.

    python examples/llr_head_in_your_loop.py [--steps 200]
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from leanbits.heads import Head

CENTERS = torch.randn(10, 1, 12, 12, generator=torch.Generator().manual_seed(1234))


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = CENTERS
    y = torch.randint(0, 10, (n,), generator=g)
    return centers[y] + 0.8 * torch.randn(n, 1, 12, 12, generator=g), y


def my_cnn(outputs: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * 6 * 6, 32), nn.ReLU(), nn.Linear(32, outputs),
    )


def fit(head: Head, steps: int, seed: int = 0) -> float:
    torch.manual_seed(seed)
    x, y = make_data(2048, seed)
    xv, yv = make_data(512, seed + 1)
    model = my_cnn(head.out_features)  # the head says how many outputs it reads
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,))
        loss = head.loss(model(x[idx]), y[idx])  # <- leanbits' loss in your loop
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = model(xv)
        acc = (head.predict(out) == yv).float().mean().item()
        llr = out.abs().mean().item()
    print(f"{head.kind:8s} outputs={head.out_features:2d}  val acc {acc:.3f}  "
          f"mean |LLR| {llr:.2f}")
    return acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    for head in (Head("llr", 10), Head("llr-code", 10), Head("llr", 10, llr_target=6.0)):
        acc = fit(head, args.steps)
        assert acc > 0.5, f"{head.kind} did not learn (val acc {acc:.2f})"


if __name__ == "__main__":
    main()
