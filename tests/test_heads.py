import math

import pytest
import torch
import torch.nn.functional as F

from leanbits.errors import ConfigError
from leanbits.heads import Head, binary_code


def test_softmax_loss_is_cross_entropy_closed_form():
    out = torch.tensor([[2.0, 0.0, -1.0]])
    head = Head("softmax", 3)
    expected = -(2.0 - math.log(math.exp(2) + 1 + math.exp(-1)))
    assert head.loss(out, torch.tensor([0])).item() == pytest.approx(expected, rel=1e-6)
    assert torch.allclose(head.probs(out).sum(1), torch.ones(1))


def test_llr_loss_sums_binary_cross_entropies():
    out = torch.tensor([[1.0, -2.0, 0.5]])
    head = Head("llr", 3)
    # class 1 is true: -log s(-2) - log(1 - s(1)) - log(1 - s(0.5))
    s = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    expected = -math.log(s(-2.0)) - math.log(1 - s(1.0)) - math.log(1 - s(0.5))
    assert head.loss(out, torch.tensor([1])).item() == pytest.approx(expected, rel=1e-6)
    assert head.predict(out).item() == 0


def test_llr_target_bounds_the_optimum():
    head = Head("llr", 2, llr_target=3.0)
    # the loss is minimised exactly where the LLRs equal +-A
    lv = torch.linspace(-8, 8, 1601)
    losses = torch.stack([head.loss(torch.tensor([[a, -a]]), torch.tensor([0])) for a in lv])
    assert lv[losses.argmin()].item() == pytest.approx(3.0, abs=0.011)


def test_binary_code_default():
    code = binary_code(10)
    assert code.shape == (10, 4)
    assert code[5].tolist() == [0, 1, 0, 1]  # MSB first
    assert Head("llr-code", 10).out_features == 4


def test_llr_code_soft_decoding_picks_codeword():
    head = Head("llr-code", 10)
    for k in range(10):
        bits = binary_code(10)[k]
        llr = (2 * bits - 1) * 4.0  # positive LLR = bit 1 more likely
        assert head.predict(llr.unsqueeze(0)).item() == k


def test_llr_code_decoding_matches_closed_form():
    head = Head("llr-code", 4)  # 2-bit code
    llr = torch.tensor([[1.5, -0.3]])
    s = head.scores(llr)[0]
    # class 2 = bits (1, 0): log s(1.5) + log s(0.3)
    assert s[2].item() == pytest.approx(F.logsigmoid(torch.tensor(1.5)).item()
                                        + F.logsigmoid(torch.tensor(0.3)).item(), rel=1e-6)
    assert head.predict(llr).item() == 2


def test_llr_code_with_user_error_correcting_code():
    # repetition-like 3-class code with 5 bits; one flipped bit still decodes right
    code = torch.tensor([[0, 0, 0, 0, 0], [1, 1, 1, 0, 0], [0, 0, 1, 1, 1]])
    head = Head("llr-code", 3, code=code)
    assert head.out_features == 5
    noisy = (2 * code[1].float() - 1) * 3.0
    noisy[0] = -3.0  # flip one bit of class 1's codeword
    assert head.predict(noisy.unsqueeze(0)).item() == 1
    loss = head.loss(noisy.unsqueeze(0), torch.tensor([1]))
    expected = F.binary_cross_entropy_with_logits(noisy, code[1].float(), reduction="sum")
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_probs_rows_sum_to_one():
    x = torch.randn(5, 10)
    for kind in ("softmax", "llr"):
        assert torch.allclose(Head(kind, 10).probs(x).sum(1), torch.ones(5), atol=1e-6)
    assert torch.allclose(Head("llr-code", 10).probs(x[:, :4]).sum(1), torch.ones(5), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "nope", "num_classes": 10},
        {"kind": "softmax", "num_classes": 10, "llr_target": 2.0},
        {"kind": "llr", "num_classes": 10, "llr_target": -1.0},
        {"kind": "llr-code", "num_classes": 3, "code": torch.tensor([[0, 1], [0, 1], [1, 1]])},
        {"kind": "llr-code", "num_classes": 3, "code": torch.tensor([[0, 2], [0, 1], [1, 1]])},
    ],
)
def test_bad_heads_are_refused(kwargs):
    with pytest.raises(ConfigError):
        Head(**kwargs)


def test_head_dict_round_trip():
    h = Head("llr-code", 3, llr_target=2.0, code=torch.tensor([[0, 0], [0, 1], [1, 1]]))
    h2 = Head.from_dict(h.to_dict())
    assert torch.equal(h.code, h2.code) and h2.llr_target == 2.0


def test_label_smoothing_is_softmax_cross_entropy_with_smoothed_targets():
    out, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    head = Head("softmax", 4, label_smoothing=0.2)
    target = torch.full((6, 4), 0.2 / 4)
    target[torch.arange(6), y] += 0.8
    by_hand = -(target * torch.log_softmax(out, 1)).sum(1).mean()
    assert head.loss(out, y).item() == pytest.approx(by_hand.item(), rel=1e-6)
    # predictions and probabilities are softmax's own
    assert torch.equal(head.probs(out), Head("softmax", 4).probs(out))
    assert Head.from_dict(head.to_dict()).label_smoothing == 0.2


@pytest.mark.parametrize("kwargs", [
    {"kind": "llr", "label_smoothing": 0.1},
    {"kind": "softmax", "label_smoothing": 0.0},
    {"kind": "softmax", "label_smoothing": 1.0},
    {"kind": "softmax", "label_smoothing": True},
])
def test_bad_label_smoothing_is_refused(kwargs):
    with pytest.raises(ConfigError, match="label_smoothing"):
        Head(num_classes=4, **kwargs)
