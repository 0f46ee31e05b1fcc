"""Training on real MNIST (a 2,000-example subset); skipped only when MNIST is not cached.

`make test` fetches MNIST first, so in CI these always run.
"""

import pytest
import torch

from leanbits.data import DataConfig, sources
from leanbits.train import TrainConfig, train


def _mnist_ready() -> bool:
    return any(d["name"] == "mnist" and d["complete"] for d in sources.info())


pytestmark = pytest.mark.skipif(
    not _mnist_ready(), reason="MNIST is not in the cache; run `leanbits data fetch mnist`"
)


@pytest.fixture(scope="module")
def subset():
    from leanbits.data.datasets import load_splits

    return load_splits("mnist", val_size=5000, seed=0, limit_train=2000)


def test_lenet_300_100_reaches_90_percent_on_2000_examples(subset):
    cfg = TrainConfig(model="lenet-300-100", head="llr", epochs=8, batch_size=64, lr=0.05)
    a = train(DataConfig(limit_train=2000), cfg, subset, None, progress=False,
              log=lambda _l: None)
    assert a.final["val_acc"] >= 0.90
    b = train(DataConfig(limit_train=2000), cfg, subset, None, progress=False,
              log=lambda _l: None)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
