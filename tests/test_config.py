import pytest

from leanbits.config import make, non_default, stage_hash
from leanbits.data import DataConfig
from leanbits.errors import ConfigError
from leanbits.train import TrainConfig, parse_per_layer


def test_unknown_key_lists_valid_ones():
    with pytest.raises(ConfigError, match="valid: .*epochs"):
        make(TrainConfig, {"epoch": 3})


def test_bad_values_are_named():
    with pytest.raises(ConfigError, match="head"):
        make(TrainConfig, {"head": "sigmoid"})
    with pytest.raises(ConfigError, match="lr"):
        make(TrainConfig, {"lr": -1})
    with pytest.raises(ConfigError, match="epochs"):
        make(TrainConfig, {"epochs": "many"})


def test_coercion_from_strings():
    cfg = make(TrainConfig, {"epochs": "3", "fc": "50,20", "lr": "0.1"})
    assert cfg.epochs == 3 and cfg.fc == (50, 20) and cfg.lr == 0.1


def test_hash_depends_only_on_non_default_settings():
    a = make(TrainConfig, {"epochs": 3})
    b = make(TrainConfig, {"epochs": 3, "lr": TrainConfig().lr})
    assert non_default(a) == {"epochs": 3}
    assert stage_hash(DataConfig(), a) == stage_hash(DataConfig(), b)
    assert stage_hash(DataConfig(), a) != stage_hash(DataConfig(), make(TrainConfig, {"epochs": 4}))


def test_per_layer_parsing():
    assert parse_per_layer("fc1.l1=1e-4, out.l2=0") == {"fc1": {"l1": 1e-4}, "out": {"l2": 0.0}}
    with pytest.raises(ConfigError):
        parse_per_layer("fc1=3")
