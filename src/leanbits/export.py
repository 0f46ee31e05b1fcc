"""Export a (compacted) model to ONNX or safetensors, checked against PyTorch, and measure
its inference speed against the dense model.

ONNX export uses PyTorch's TorchScript-based exporter (``dynamo=False``): it needs no extra
packages for the plain Conv/Linear/ReLU/pool chains leanbits builds and is fast. The
exported file is always run in onnxruntime and compared with PyTorch before it is kept.
"""

from __future__ import annotations

import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from leanbits.errors import LeanbitsError
from leanbits.fileio import atomic_path


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise LeanbitsError(
            "ONNX export needs onnxruntime and onnx: pip install 'leanbits[onnx]'"
        ) from None
    return onnxruntime


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
        atol: largest allowed absolute difference between onnxruntime and PyTorch.

    Returns:
        ``{"path", "max_abs_diff", "same_predictions", "bytes"}``.

    Raises:
        LeanbitsError: onnxruntime is missing or the exported model disagrees.

    Example:
        >>> export_onnx(model, (1, 28, 28), "model.onnx", dynamic_batch=True)  # doctest: +SKIP
    """
    ort = _ort()
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
        diff = float(np.max(np.abs(got - want))) if got.size else 0.0
        same = bool(np.array_equal(got.argmax(1), want.argmax(1)))
        if diff > atol or not same:
            raise LeanbitsError(
                f"the ONNX model disagrees with PyTorch (max |diff| {diff:.2e} > {atol:.0e} "
                f"or different predictions); nothing was written to {path}"
            )
    return {"path": str(path), "max_abs_diff": diff, "same_predictions": same,
            "bytes": path.stat().st_size}


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
            p = Path(onnx_dir) / f"{name}.onnx"
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
