import pytest
import torch

from leanbits.errors import ConfigError
from leanbits.models import Plan, build, preset


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_exact_parameter_counts():
    assert n_params(build(preset("lenet-300-100"))) == 266_610
    assert n_params(build(preset("lenet5"))) == 431_080


@pytest.mark.parametrize("name", ["conv2", "conv4", "conv6", "lenet5", "lenet-300-100"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_models_run_on_both_input_sizes(name, shape):
    m = build(preset(name, shape))
    assert m(torch.zeros(2, *shape)).shape == (2, 10)


def test_conv_nets_match_lottery_ticket_sizes_on_cifar_shapes():
    # Frankle & Carbin report 4.3M / 2.4M / 1.7M-ish weights for conv2/4/6 on 32x32x3.
    assert 4.2e6 < n_params(build(preset("conv2", (3, 32, 32)))) < 4.4e6
    assert 2.3e6 < n_params(build(preset("conv4", (3, 32, 32)))) < 2.5e6


def test_plan_round_trip_and_rebuild_smaller():
    plan = preset("lenet5")
    assert Plan.from_dict(plan.to_dict()) == plan
    small = plan.with_widths((5, 7), (30,))
    m = build(small)
    assert m.fc1.in_features == 7 * 4 * 4 and m(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_bad_plans():
    with pytest.raises(ConfigError, match="valid"):
        preset("resnet")
    with pytest.raises(ConfigError):
        Plan("mlp", (1, 28, 28), (), (0,), 10)
    with pytest.raises(ConfigError, match="unknown plan keys"):
        Plan.from_dict({"family": "mlp", "in_shape": [1, 2, 2], "bogus": 1})


def test_one_definition_of_a_weight_layer():
    from torch import nn

    from leanbits.models import is_weight_layer, weight_layers

    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 1),
                          nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    assert [n for n, _ in weight_layers(model)] == ["0", "2", "5"]
    assert not is_weight_layer(model[3]) and is_weight_layer(nn.ConvTranspose2d(1, 1, 2))
    assert [n for n, _ in weight_layers(build(preset("lenet5")))] == [
        "conv1", "conv2", "fc1", "out"]
