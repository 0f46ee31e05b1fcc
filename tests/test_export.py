"""ONNX export of compacted models, checked in onnxruntime; compaction's refusals."""

import pytest
import torch
from torch import nn

from leanbits.errors import LeanbitsError, PruneError
from leanbits.export import bench_models, export_onnx
from leanbits.models import Plan, build
from leanbits.prune import apply_masks, compact, compact_sequential, prune

pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install leanbits[onnx])")

PLANS = [
    Plan("mlp", (1, 8, 8), (), (24, 16), 10),
    Plan("lenet5", (1, 28, 28), (4, 6), (20,), 10),
    Plan("convnet", (1, 8, 8), (4, 6), (12,), 10),
]


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.family)
@pytest.mark.parametrize("dynamic", [False, True])
def test_compact_model_exports_and_matches_pytorch(tmp_path, plan, dynamic):
    torch.manual_seed(0)
    model = build(plan).eval()
    masks = prune(model, sparsity=0.7)
    apply_masks(model, masks)
    small, small_plan = compact(model, plan, masks)
    x = torch.randn(8, *plan.in_shape)
    r = export_onnx(small, plan.in_shape, tmp_path / "m.onnx", dynamic_batch=dynamic,
                    batch_size=8, check_inputs=x)
    assert r["same_predictions"] and r["max_abs_diff"] <= 1e-5 * max(
        1.0, float(small(x).detach().abs().max()))
    assert (tmp_path / "m.onnx").stat().st_size == r["bytes"]
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    n = 3 if dynamic else 8
    got = sess.run(None, {"input": x[:n].numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(got), model(x[:n]).detach(), atol=1e-4,
                               rtol=1e-4)  # the compact export computes the masked model


def test_disagreeing_export_writes_nothing(tmp_path, monkeypatch):
    model = build(PLANS[0]).eval()
    import leanbits.export as ex

    real = ex.np.max
    monkeypatch.setattr(ex.np, "max", lambda a, *k, **kw: real(a, *k, **kw) + 1.0)
    with pytest.raises(LeanbitsError, match="disagrees"):
        export_onnx(model, (1, 8, 8), tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


def test_nan_weights_are_refused_before_export(tmp_path):
    model = build(PLANS[0]).eval()
    with torch.no_grad():
        model[-1].weight[0, 0] = float("nan")
    with pytest.raises(LeanbitsError, match="NaN or infinite values"):
        export_onnx(model, (1, 8, 8), tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


def test_infinite_outputs_cannot_pass_the_check(tmp_path):
    # Finite weights whose outputs overflow float32: the check must fail, not compare inf.
    model = build(PLANS[0]).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(3e38)
    with pytest.raises(LeanbitsError, match="NaN or infinite outputs"):
        export_onnx(model, (1, 8, 8), tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_agreement_is_never_within_tolerance_on_non_finite_outputs(bad):
    import numpy as np

    from leanbits.export import _agreement

    good = np.zeros((2, 3), dtype=np.float32)
    broken = good.copy()
    broken[0, 0] = bad
    for got, want in ((broken, good), (good, broken), (broken, broken)):
        diff, scale, same = _agreement(got, want)
        assert not (diff <= 1e-5 * scale) and not same


def test_compaction_names_the_first_unsupported_layer():
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    with pytest.raises(PruneError, match="Tanh"):
        compact_sequential(model, None)


def test_bench_reports_both_models_and_runtimes(tmp_path):
    plan = PLANS[0]
    rows = bench_models({"dense": build(plan), "compact": build(plan.with_widths((), (8, 8)))},
                        plan.in_shape, batch_sizes=(1, 4), repeats=3, warmup=1,
                        onnx_dir=tmp_path)
    assert {(r["model"], r["runtime"], r["batch"]) for r in rows} == {
        (m, rt, b) for m in ("dense", "compact") for rt in ("pytorch", "onnxruntime")
        for b in (1, 4)}
    assert all(r["median_ms"] > 0 for r in rows)
