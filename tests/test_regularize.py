import pytest
import torch
from torch import nn

from leanbits.errors import ConfigError
from leanbits.regularize import Regularizer, group_shrink_, soft_threshold_


def test_soft_threshold_gives_exact_zeros():
    w = torch.tensor([0.5, -0.05, 0.1, -0.3, 0.0])
    soft_threshold_(w, 0.1)
    assert w.tolist() == pytest.approx([0.4, 0.0, 0.0, -0.2, 0.0])
    assert (w == 0).sum() == 3


def test_group_shrink_zeroes_whole_groups_and_scales_others():
    w = torch.tensor([[3.0, 4.0], [0.03, 0.04], [0.6, 0.8]])  # row norms 5, 0.05, 1
    group_shrink_(w, 0.5, dim=0)
    assert torch.equal(w[1], torch.zeros(2))
    assert torch.allclose(w[0], torch.tensor([3.0, 4.0]) * 0.9)
    assert torch.allclose(w[2], torch.tensor([0.6, 0.8]) * 0.5)


def test_conv_filters_are_groups():
    conv = nn.Conv2d(2, 3, 3)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.weight[1] *= 1e-3
    Regularizer(group=10.0, group_kind="out").prox_(nn.Sequential(conv), lr=0.01)
    assert torch.count_nonzero(conv.weight[1]) == 0
    assert torch.count_nonzero(conv.weight[0]) == conv.weight[0].numel()


def test_l2_penalty_and_per_layer_override():
    m = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        m[0].weight.fill_(1.0)
        m[1].weight.fill_(2.0)
    reg = Regularizer(l2=1.0, per_layer={"1": {"l2": 0.0}})
    assert reg.penalty(m).item() == pytest.approx(0.5 * 4.0)


def test_regularizer_validation():
    with pytest.raises(ConfigError):
        Regularizer(l1=-1.0)
    with pytest.raises(ConfigError):
        Regularizer(per_layer={"fc1": {"l3": 1.0}})
    with pytest.raises(ConfigError, match="unknown layer"):
        Regularizer(per_layer={"nope": {"l1": 1.0}}).check_layers(nn.Sequential(nn.Linear(1, 1)))
