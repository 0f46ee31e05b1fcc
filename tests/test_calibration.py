"""NLL and ECE (leanbits.calibration) against hand-computed values, and every head's
probability output they are measured on."""

from __future__ import annotations

import math

import pytest
import torch

from leanbits.calibration import ECE_BINS, Calibration, bin_index, expected_calibration_error
from leanbits.heads import Head
from leanbits.train import evaluate


def test_ece_of_a_hand_computed_fixture():
    # Five examples, 3 classes, 15 bins of width 1/15 = 0.0667.
    probs = torch.tensor([
        [0.95, 0.03, 0.02],  # conf 0.95 -> bin 14, predicted 0, target 0: right
        [0.92, 0.05, 0.03],  # conf 0.92 -> bin 13, predicted 0, target 1: wrong
        [0.12, 0.58, 0.30],  # conf 0.58 -> bin 8,  predicted 1, target 1: right
        [0.20, 0.35, 0.45],  # conf 0.45 -> bin 6,  predicted 2, target 0: wrong
        [0.30, 0.62, 0.08],  # conf 0.62 -> bin 9,  predicted 1, target 1: right
    ])
    targets = torch.tensor([0, 1, 1, 0, 1])
    assert bin_index(probs.max(1).values).tolist() == [14, 13, 8, 6, 9]
    # Each example alone in its bin: ECE = mean over examples of |correct - confidence|.
    by_hand = (abs(1 - 0.95) + abs(0 - 0.92) + abs(1 - 0.58) + abs(0 - 0.45)
               + abs(1 - 0.62)) / 5
    assert by_hand == pytest.approx(0.444)
    assert expected_calibration_error(probs, targets) == pytest.approx(by_hand, abs=1e-6)
    # Two examples sharing a bin average before the absolute value: confidences 0.93 and
    # 0.91 (bin 13), one right one wrong -> |0.5 - 0.92| for both, weight 2/2.
    shared = torch.tensor([[0.93, 0.07], [0.91, 0.09]])
    assert expected_calibration_error(shared, torch.tensor([0, 1])) == pytest.approx(0.42)
    c = Calibration()
    c.update(torch.log(probs), targets)
    nll = -sum(math.log(p) for p in (0.95, 0.05, 0.58, 0.20, 0.62)) / 5
    assert c.nll() == pytest.approx(nll, rel=1e-6)


def test_bins_are_right_closed_and_cover_zero_to_one():
    edges = torch.tensor([0.0, 1 / 3, 0.5, 0.5 + 1e-6, 1.0], dtype=torch.float64)
    assert bin_index(edges, bins=2).tolist() == [0, 0, 0, 1, 1]
    assert bin_index(torch.tensor([1.0])).item() == ECE_BINS - 1


def test_running_calibration_equals_one_shot_and_perfect_calibration_is_zero():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(300, 10, generator=g) * 3
    targets = torch.randint(0, 10, (300,), generator=g)
    lp = torch.log_softmax(logits, 1)
    c = Calibration()
    for i in range(0, 300, 64):
        c.update(lp[i:i + 64], targets[i:i + 64])
    assert c.ece() == pytest.approx(expected_calibration_error(lp.exp(), targets), abs=1e-9)
    assert c.nll() == pytest.approx(float(torch.nn.functional.nll_loss(lp, targets)), rel=1e-6)
    # Always right with confidence 1: no calibration error.
    sure = torch.eye(4)
    assert expected_calibration_error(sure, torch.arange(4)) == 0.0
    assert math.isnan(Calibration().ece()) and math.isnan(Calibration().nll())
    with pytest.raises(ValueError):
        Calibration(0)


def test_llr_probabilities_are_renormalised_sigmoids():
    out = torch.tensor([[2.0, -1.0, -3.0], [-40.0, -60.0, -80.0]])
    head = Head("llr", 3)
    p = torch.sigmoid(out.double())
    want = p / p.sum(1, keepdim=True)
    assert torch.allclose(head.probs(out).double(), want, rtol=1e-5)
    # log space: a very unlikely class keeps a finite log-probability
    assert torch.isfinite(head.log_probs(out)).all()
    assert head.log_probs(out)[1, 2].item() == pytest.approx(-40.0, abs=1e-3)


def test_evaluate_reports_nll_and_ece_of_the_head_probabilities():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x, y = torch.randn(50, 4), torch.randint(0, 3, (50,))
    for head in (Head("softmax", 3), Head("llr", 3), Head("softmax", 3, label_smoothing=0.2)):
        r = evaluate(model, head, x, y, batch_size=16)
        with torch.no_grad():
            lp = head.log_probs(model(x))
        assert r["nll"] == pytest.approx(float(-lp[torch.arange(50), y].mean()), rel=1e-5)
        assert r["ece"] == pytest.approx(expected_calibration_error(lp.exp(), y), abs=1e-6)
    # label smoothing changes the loss, not the NLL
    plain = evaluate(model, Head("softmax", 3), x, y)
    smooth = evaluate(model, Head("softmax", 3, label_smoothing=0.2), x, y)
    assert smooth["nll"] == pytest.approx(plain["nll"]) and smooth["loss"] != plain["loss"]
