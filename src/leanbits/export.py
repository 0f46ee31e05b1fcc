"""Export a (compacted) model to ONNX or safetensors, checked against PyTorch, and measure
its inference speed against the dense model: :func:`export_onnx`, :func:`bench_models`,
and on snapshot directories :func:`export_snapshot` and :func:`bench_snapshot` (what
``leanbits export`` / ``bench`` run; :mod:`leanbits.cli.export` only parses and prints).

ONNX export uses PyTorch's TorchScript-based exporter (``dynamo=False``): it needs no extra
packages for the plain Conv/Linear/ReLU/pool chains leanbits builds and is fast. The
exported file is always run in onnxruntime and compared with PyTorch before it is kept.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from leanbits import paths, snapshot
from leanbits.data import snapshot_data
from leanbits.errors import ConfigError, LeanbitsError
from leanbits.fileio import atomic_path, check_output_file
from leanbits.prune import compact, macs


def _ort():
    try:
        import onnxruntime  # optional dependency (leanbits[onnx]), loaded only to export
    except ImportError:
        raise LeanbitsError(
            "ONNX export needs onnxruntime and onnx: pip install 'leanbits[onnx]'"
        ) from None
    return onnxruntime


def _check_finite(model: nn.Module, path: str | Path) -> None:
    """Refuse a model whose parameters or buffers hold NaN or infinite values."""
    for name, t in (*model.named_parameters(), *model.named_buffers()):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise LeanbitsError(f"{name} holds NaN or infinite values, so the exported "
                                f"model could not be checked; nothing was written to {path}")


def _agreement(got: np.ndarray, want: np.ndarray) -> tuple[float, float, bool]:
    """``(max |got - want|, output scale, same argmax)`` of two output batches.

    Any NaN or infinite value in either batch makes the difference NaN and the predictions
    different, so no comparison with a tolerance can pass on it.
    """
    if not (np.isfinite(got).all() and np.isfinite(want).all()):
        return float("nan"), float("nan"), False
    diff = float(np.max(np.abs(got - want))) if got.size else 0.0
    scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    same = bool(np.array_equal(got.argmax(1), want.argmax(1)))
    return diff, scale, same


def export_onnx(
    model: nn.Module,
    in_shape: tuple[int, ...],
    path: str | Path,
    dynamic_batch: bool = False,
    batch_size: int = 1,
    opset: int = 17,
    check_inputs: torch.Tensor | None = None,
    atol: float = 1e-5,
) -> dict[str, Any]:
    """Write ``model`` as ONNX and check it in onnxruntime against PyTorch.

    Args:
        model: the network (put in eval mode for export).
        in_shape: shape of one example, e.g. ``(1, 28, 28)``.
        path: output ``.onnx`` file (written atomically, only if the check passes).
        dynamic_batch: make the batch dimension symbolic.
        batch_size: batch size baked in when ``dynamic_batch`` is off.
        opset: ONNX opset version.
        check_inputs: inputs for the check (default: 64 seeded random examples, or
            ``batch_size`` when the batch is fixed); real data can be passed too.
        atol: largest allowed difference between onnxruntime and PyTorch, relative to the
            output scale: ``max|diff| <= atol * max(1, max|output|)``. A bare absolute
            1e-5 is below float32 resolution for outputs of size 20-100 (LLRs often are:
            one ulp at 64 is 7.6e-6), where reordered sums differ by a few ulps.

    Returns:
        ``{"path", "max_abs_diff", "max_rel_diff", "same_predictions", "bytes"}``.

    Raises:
        LeanbitsError: onnxruntime is missing, the model holds NaN or infinite values, or
            the exported model disagrees (a NaN or infinite output counts as disagreeing,
            so the check cannot pass on one).

    Example:
        >>> export_onnx(model, (1, 28, 28), "model.onnx", dynamic_batch=True)  # doctest: +SKIP
    """
    ort = _ort()
    _check_finite(model, path)
    model = model.eval()
    n = 64 if dynamic_batch else batch_size
    if check_inputs is None:
        g = torch.Generator().manual_seed(0)
        check_inputs = torch.randn(n, *in_shape, generator=g)
    example = check_inputs[: (2 if dynamic_batch else batch_size)]
    if not dynamic_batch and check_inputs.shape[0] != batch_size:
        check_inputs = check_inputs[:batch_size]
    path = Path(path)
    with atomic_path(path) as tmp:
        kwargs: dict[str, Any] = {"input_names": ["input"], "output_names": ["output"],
                                  "opset_version": opset, "dynamo": False}
        if dynamic_batch:
            kwargs["dynamic_axes"] = {"input": {0: "batch"}, "output": {0: "batch"}}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), str(tmp), **kwargs)
        sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = sess.run(None, {"input": check_inputs.numpy().astype(np.float32)})[0]
        with torch.no_grad():
            want = model(check_inputs).numpy()
        diff, scale, same = _agreement(got, want)
        if np.isnan(diff):
            raise LeanbitsError(
                "the model gives NaN or infinite outputs on the check inputs, so the ONNX "
                f"model cannot be checked against PyTorch; nothing was written to {path}"
            )
        # Written so that NaN fails too: every comparison with NaN is False.
        if not (diff <= atol * scale and same):
            raise LeanbitsError(
                f"the ONNX model disagrees with PyTorch (max |diff| {diff:.2e} > "
                f"{atol:.0e} x output scale {scale:.3g}, or different predictions); "
                f"nothing was written to {path}"
            )
    return {"path": str(path), "max_abs_diff": diff, "max_rel_diff": diff / scale,
            "same_predictions": same, "bytes": path.stat().st_size}


def _median_time(fn, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_models(
    models: dict[str, nn.Module],
    in_shape: tuple[int, ...],
    batch_sizes: tuple[int, ...] = (1, 256),
    repeats: int = 50,
    warmup: int = 10,
    onnx_dir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Median latency of each model in PyTorch (and onnxruntime when ``onnx_dir``).

    Models are timed interleaved per (runtime, batch) so noise affects them alike.

    Returns:
        rows ``{"model", "runtime", "batch", "median_ms", "throughput_per_s"}``.
    """
    rows = []
    g = torch.Generator().manual_seed(0)
    sessions: dict[str, Any] = {}
    if onnx_dir is not None:
        ort = _ort()
        for name, m in models.items():
            p = paths.onnx(Path(onnx_dir), name)
            export_onnx(m, in_shape, p, dynamic_batch=True)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = torch.get_num_threads()
            sessions[name] = ort.InferenceSession(str(p), opts,
                                                  providers=["CPUExecutionProvider"])
    for batch in batch_sizes:
        x = torch.randn(batch, *in_shape, generator=g)
        xn = x.numpy()
        reps = max(5, repeats // (4 if batch > 64 else 1))
        for name, m in models.items():
            m.eval()

            def run_torch(m=m, x=x):
                with torch.inference_mode():
                    m(x)

            t = _median_time(run_torch, reps, warmup)
            rows.append({"model": name, "runtime": "pytorch", "batch": batch,
                         "median_ms": t * 1e3, "throughput_per_s": batch / t})
        for name, sess in sessions.items():
            t = _median_time(lambda sess=sess, xn=xn: sess.run(None, {"input": xn}), reps, warmup)
            rows.append({"model": name, "runtime": "onnxruntime", "batch": batch,
                         "median_ms": t * 1e3, "throughput_per_s": batch / t})
    return rows


# ----------------------------------------------------------------------------- snapshots
def dense_and_compact(snapshot_dir: str | Path) -> tuple[Any, nn.Module, nn.Module, Any]:
    """``(snapshot, dense_model, compact_model, compact_plan)`` of a snapshot directory.

    The dense model is the snapshot's network at full width (pruned weights are zeros);
    the compact one has dead units physically removed: ``DIR/compact`` when the snapshot
    comes from ``leanbits prune``, otherwise compacted here from the snapshot's masks.
    """
    snap = snapshot.load(snapshot_dir)
    compact_dir = paths.compact(snapshot_dir)
    if compact_dir.is_dir() and paths.model_json(compact_dir).is_file():
        small = snapshot.load(compact_dir)
        return snap, snap.model.eval(), small.model.eval(), small.plan
    model, plan = compact(snap.model, snap.plan, snap.masks)
    return snap, snap.model.eval(), model.eval(), plan


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def export_snapshot(
    snapshot_dir: str | Path,
    onnx: str | Path | None = None,
    safetensors: str | Path | None = None,
    dynamic_batch: bool = False,
    real_data: bool = True,
) -> dict[str, Any]:
    """Export a snapshot's compact model as ONNX (checked in onnxruntime) and/or safetensors.

    Args:
        snapshot_dir: the snapshot (its ``compact/`` rebuild when it has one).
        onnx: the ``.onnx`` file to write, or None.
        safetensors: the ``.safetensors`` file to write (plan and head in its metadata),
            or None.
        dynamic_batch: make the ONNX batch dimension symbolic.
        real_data: also check the ONNX model on 256 validation examples.

    Returns:
        ``{"snapshot", "plan", "params_dense", "params_compact", "macs_dense",
        "macs_compact"}`` plus, per file written, its path, size and (ONNX) the check's
        ``onnx_max_abs_diff_<random|real>`` / ``..._max_rel_diff_...`` /
        ``..._same_predictions_...``.

    Raises:
        ConfigError: neither file was asked for.
        OutputError: an output path is a directory, device, FIFO or socket (checked first).
        LeanbitsError: onnxruntime is missing, the model holds NaN or infinite values, or
            the exported model disagrees.
    """
    if not onnx and not safetensors:
        raise ConfigError("nothing to export: give --onnx FILE and/or --safetensors FILE")
    for out in (onnx, safetensors):
        if out:
            check_output_file(out)  # before any work
    snap, dense, small, plan = dense_and_compact(snapshot_dir)
    in_shape = tuple(plan.in_shape)
    report: dict[str, Any] = {
        "snapshot": str(snapshot_dir),
        "plan": plan.to_dict(),
        "params_dense": _count(dense),
        "params_compact": _count(small),
        "macs_dense": int(macs(dense, in_shape)["dense"]),
        "macs_compact": int(macs(small, in_shape)["dense"]),
    }
    if onnx:
        g = torch.Generator().manual_seed(0)
        random_x = torch.randn(64, *in_shape, generator=g)
        checks = [("random", random_x)]
        if real_data:
            splits = snapshot_data(snap.config)
            checks.append(("real", splits.val.x[:256]))
        for label, x in checks:
            r = export_onnx(small, in_shape, onnx, dynamic_batch=dynamic_batch,
                            batch_size=x.shape[0] if not dynamic_batch else 1,
                            check_inputs=x)
            report[f"onnx_max_abs_diff_{label}"] = r["max_abs_diff"]
            report[f"onnx_max_rel_diff_{label}"] = r["max_rel_diff"]
            report[f"onnx_same_predictions_{label}"] = r["same_predictions"]
        report["onnx"] = str(onnx)
        report["onnx_bytes"] = Path(onnx).stat().st_size
    if safetensors:
        meta = {"leanbits": json.dumps({"plan": plan.to_dict(), "head": snap.head.to_dict()})}
        snapshot.save_tensors(safetensors, small.state_dict(), metadata=meta)
        report["safetensors"] = str(safetensors)
        report["safetensors_bytes"] = Path(safetensors).stat().st_size
    return report


#: bounds of ``leanbits bench`` (a batch of random inputs is allocated per size)
MAX_BENCH_BATCH = 65536
MAX_BENCH_REPEATS = 100_000


def _check_bench(batch_sizes: tuple[int, ...], repeats: int) -> None:
    for b in batch_sizes:
        if not 1 <= b <= MAX_BENCH_BATCH:
            raise ConfigError(f"batch size {b} is out of range; give sizes from 1 to "
                              f"{MAX_BENCH_BATCH}")
    if not 1 <= repeats <= MAX_BENCH_REPEATS:
        raise ConfigError(f"--repeats {repeats} is out of range; give 1 to {MAX_BENCH_REPEATS}")


def bench_snapshot(
    snapshot_dir: str | Path,
    batch_sizes: tuple[int, ...] = (1, 256),
    repeats: int = 50,
    onnx: bool = True,
) -> dict[str, Any]:
    """Latency of a snapshot's dense and compact model (:func:`bench_models`), side by side.

    Returns:
        ``{"snapshot", "rows", "summary", "mac_reduction", "threads"}``; each summary entry
        is ``{"runtime", "batch", "dense_ms", "compact_ms", "speedup", "mac_reduction",
        "speedup_over_mac_reduction"}``.

    Raises:
        ConfigError: a batch size or ``repeats`` is out of range (checked first).
    """
    _check_bench(batch_sizes, repeats)
    _snap, dense, small, plan = dense_and_compact(snapshot_dir)
    in_shape = tuple(plan.in_shape)
    with tempfile.TemporaryDirectory() as tmp:
        rows = bench_models({"dense": dense, "compact": small}, in_shape, batch_sizes,
                            repeats=repeats, onnx_dir=tmp if onnx else None)
    mac_ratio = macs(dense, in_shape)["dense"] / max(1, macs(small, in_shape)["dense"])
    by = {(r["model"], r["runtime"], r["batch"]): r for r in rows}
    summary = []
    for (model, runtime, batch), r in by.items():
        if model == "compact":
            d = by[("dense", runtime, batch)]
            summary.append({"runtime": runtime, "batch": batch,
                            "dense_ms": d["median_ms"], "compact_ms": r["median_ms"],
                            "speedup": d["median_ms"] / r["median_ms"],
                            "mac_reduction": mac_ratio,
                            "speedup_over_mac_reduction": d["median_ms"] / r["median_ms"]
                            / mac_ratio})
    return {"snapshot": str(snapshot_dir), "rows": rows, "summary": summary,
            "mac_reduction": mac_ratio, "threads": torch.get_num_threads()}
