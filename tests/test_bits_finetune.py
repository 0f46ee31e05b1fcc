"""Codebook fine-tuning: codes, masks and codebook size stay; the loss goes down."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from leanbits.bits.finetune import codebook_gradient, codebooks_of, finetune_codebook
from leanbits.bits.quantize import quantize_ecsq, quantize_kmeans, quantize_uniform
from leanbits.errors import ConfigError
from leanbits.loop import epoch_batches, fit, make_optimizer

NAMES = ["1.weight", "3.weight"]


def trained_net(splits) -> nn.Sequential:
    """A small pruned MLP trained on the tiny fixture (seeded)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 24), nn.ReLU(), nn.Linear(24, 10))
    data = (splits.train.x, splits.train.y)
    opt = make_optimizer("adam", net.parameters(), 1e-3)
    fit(net, list(net.parameters()), epoch_batches(data, 32, seed=0), F.cross_entropy, opt,
        epochs=3, seed=0)
    with torch.no_grad():
        for name in NAMES:
            w = net.get_parameter(name)
            w.mul_(w.abs() > w.abs().median())  # half the weights pruned
    return net


def quantize_net(net: nn.Module, bits: int = 2, method: str = "kmeans") -> dict:
    out = {}
    for name in NAMES:
        w = net.get_parameter(name)
        q = quantize_kmeans(w, bits) if method == "kmeans" else quantize_ecsq(w, bits + 1, 0.05)
        out[name] = q
        with torch.no_grad():
            w.copy_(q.dequantized)
    return out


def train_loss(net, splits) -> float:
    with torch.no_grad():
        return float(F.cross_entropy(net(splits.train.x), splits.train.y))


def same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Codes ``a`` and ``b`` group the weights the same way (up to renumbering)."""
    pairs = torch.unique(torch.stack([a.reshape(-1), b.reshape(-1)]), dim=1)
    return pairs.shape[1] == torch.unique(a).numel() == torch.unique(b).numel()


def test_codebook_gradient_is_the_sum_of_its_weights_gradients(tiny_splits):
    net = trained_net(tiny_splits)
    q = quantize_net(net)
    F.cross_entropy(net(tiny_splits.val.x), tiny_splits.val.y).backward()
    for name in NAMES:
        g = net.get_parameter(name).grad
        by_hand = torch.stack([g[q[name].codes == j].sum() for j in range(q[name].num_levels)])
        assert torch.allclose(codebook_gradient(g, q[name].codes, q[name].num_levels), by_hand,
                              rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("method", ["kmeans", "ecsq"])
def test_finetuning_keeps_codes_masks_and_size_and_lowers_the_loss(tiny_splits, method):
    net = trained_net(tiny_splits)
    q = quantize_net(net, method=method)
    before = train_loss(net, tiny_splits)
    biases = {n: p.detach().clone() for n, p in net.named_parameters() if n.endswith("bias")}
    out = finetune_codebook(net, q, (tiny_splits.train.x, tiny_splits.train.y), F.cross_entropy,
                            epochs=3, lr=1e-3, batch_size=32, nonweights=False)
    assert train_loss(net, tiny_splits) < 0.9 * before
    for name in NAMES:
        w = net.get_parameter(name)
        assert isinstance(w, nn.Parameter) and not hasattr(net, "parametrizations")
        assert torch.equal(out[name].codes < 0, q[name].codes < 0)  # the mask
        assert same_partition(out[name].codes, q[name].codes)  # which weights share a value
        assert out[name].num_levels == q[name].num_levels
        assert not torch.equal(out[name].codebook, q[name].codebook)  # it did train
        assert torch.equal(w.detach(), out[name].dequantized)  # the model holds exactly it
        again = quantize_kmeans(w, q[name].bits)  # and it packs losslessly
        assert torch.equal(again.dequantized, w.detach())
    for n, b in biases.items():  # nonweights=False: untouched
        assert torch.equal(net.get_parameter(n), b)


def test_finetuning_is_reproducible_and_trains_nonweights_when_asked(tiny_splits):
    runs = []
    for _ in range(2):
        net = trained_net(tiny_splits)
        q = quantize_net(net)
        bias = net[1].bias.detach().clone()
        finetune_codebook(net, q, (tiny_splits.train.x, tiny_splits.train.y), F.cross_entropy,
                          epochs=1, lr=1e-3, batch_size=64, seed=3)
        assert not torch.equal(net[1].bias, bias)
        runs.append({k: v.detach().clone() for k, v in net.state_dict().items()})
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_codebooks_of_reads_a_quantized_model_back_exactly(tiny_splits):
    net = trained_net(tiny_splits)
    q = quantize_net(net, bits=3)
    back = codebooks_of(net, NAMES, bits=3)
    for name in NAMES:
        assert torch.equal(back[name].codes, q[name].codes)
        assert torch.equal(back[name].codebook, q[name].codebook)
    fresh = trained_net(tiny_splits)  # not quantized: refused
    with pytest.raises(ConfigError, match="distinct values"):
        codebooks_of(fresh, NAMES, bits=3)


def test_bad_requests_are_refused(tiny_splits):
    net = trained_net(tiny_splits)
    data = (tiny_splits.train.x, tiny_splits.train.y)
    w = net.get_parameter("1.weight")
    with pytest.raises(ConfigError, match="free codebook"):
        finetune_codebook(net, {"1.weight": quantize_uniform(w, 3)}, data, F.cross_entropy)
    with pytest.raises(ConfigError, match="not a weight"):
        finetune_codebook(net, {"1.bias": quantize_kmeans(w, 3)}, data, F.cross_entropy)
    with pytest.raises(ConfigError, match="shape"):
        finetune_codebook(net, {"3.weight": quantize_kmeans(w, 3)}, data, F.cross_entropy)
    with pytest.raises(ConfigError, match="nothing to fine-tune"):
        finetune_codebook(net, {}, data, F.cross_entropy)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    q = {"1.weight": quantize_kmeans(w, 3)}

    def bad_loss(out, y):
        return F.cross_entropy(out, y) * float("nan")

    with pytest.raises(Exception, match="loss became"):
        finetune_codebook(net, q, data, bad_loss)
    after = net.state_dict()
    assert list(after) == list(state) and all(torch.equal(after[k], state[k]) for k in state)
