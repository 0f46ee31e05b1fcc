"""The bits pipeline on snapshots and files (its settings, :class:`BitsConfig`, are in
:mod:`leanbits.settings.bits`):
:func:`quantize_snapshot` (encode a snapshot; when asked, fine-tune its codebooks, re-fit its
non-weights on the quantized weights, and keep int8 non-weights if validation allows),
:func:`snapshot_bits` (what ``leanbits bits`` / ``pack`` compute), :func:`evaluate_lbits`
(accuracy of what a ``.lbits`` file holds) and :func:`unpack_to_snapshot` (a file back
into a snapshot directory). The commands in :mod:`leanbits.cli.bits` only parse flags and
print what these return.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from leanbits import paths, snapshot
from leanbits.bits.container import Encoded, encode, weight_names
from leanbits.bits.files import unpack
from leanbits.bits.finetune import codebooks_of, finetune_codebook
from leanbits.data import snapshot_data
from leanbits.errors import ConfigError, FormatError
from leanbits.heads import Head
from leanbits.models import build
from leanbits.prune import refit_nonweights
from leanbits.results import dense_params_of
from leanbits.settings.bits import AUTO_DTYPE, BitsConfig
from leanbits.train import evaluate, evaluate_splits


def _snapshot_splits(snap: Any) -> Any:
    """The data set a snapshot was trained on, checked to fit its model."""
    where = snap.path if snap.path is not None else "snapshot"
    splits = snapshot_data(snap.config, source=paths.config(Path(where)))
    snapshot.check_fits_data(snap.plan, snap.head, splits, where)
    return splits


def _part(splits: Any, name: str) -> Any:
    if isinstance(splits, Mapping):
        return splits.get(name)
    return getattr(splits, name, None)


def _refit_nonweights(
    model: nn.Module, head: Head, x: torch.Tensor, y: torch.Tensor, epochs: int,
    lr: float = 1e-3, batch_size: int = 128, seed: int = 0,
) -> dict[str, float]:
    """Re-fit only the non-weight parameters, quantized weights frozen (the quantized
    weights must not move, or the file would no longer hold the model that was measured).

    Returns:
        ``{"refit_epochs": epochs, "refit_loss": mean loss over the data afterwards}``.
    """
    if epochs <= 0:
        return {"refit_epochs": 0, "refit_loss": math.nan}
    refit_nonweights(model, (x, y), head.loss, epochs=epochs, lr=lr, batch_size=batch_size,
                     seed=seed)
    model.eval()
    return {"refit_epochs": epochs,
            "refit_loss": evaluate(model, head, x[:10000], y[:10000])["loss"]}


def quantize_snapshot(snap: Any, cfg: BitsConfig, splits: Any = None) -> tuple[Encoded, dict]:
    """Encode a snapshot as ``cfg`` says: quantize; then, if asked, fine-tune the codebooks
    (codes fixed), re-fit the non-weights (weights fixed), and keep int8 non-weights only
    when they keep the validation accuracy of float16.

    Args:
        snap: a :class:`leanbits.snapshot.Snapshot` (model, plan, head, masks, config).
        cfg: the settings.
        splits: train/val/test data for the training and the int8 check (loaded from the
            snapshot's data set when needed and not given).

    Returns:
        ``(encoded, report)``: the encoded file (bytes, account, state) and what was done:
        ``codebook_epochs``, ``refit_epochs``/``refit_loss``, and with ``nonweight_dtype
        auto`` the ``nonweight_dtype`` chosen and ``val_acc_float16``/``val_acc_int8``.

    Raises:
        ConfigError: codebook fine-tuning of a uniform quantizer, or ``auto`` without a
            validation split.
    """
    if cfg.codebook_epochs > 0 and cfg.quant == "uniform":
        raise ConfigError("codebook_epochs needs a free codebook (quant kmeans or ecsq); "
                          "uniform levels are fixed multiples of one scale")
    settings = cfg.encode_settings()
    encoded = encode(snap.model, snap.plan, snap.head, masks=snap.masks, **settings)
    # A compact rebuild's compression counts the parameters of the model it came from.
    dense = dense_params_of(snap.metrics)
    encoded.account.dense_params = dense
    if not cfg.needs_data():
        return encoded, {}
    splits = splits if splits is not None else _snapshot_splits(snap)
    report: dict[str, Any] = {}
    source = snap.model
    if cfg.codebook_epochs > 0 or cfg.refit > 0:
        model = copy.deepcopy(snap.model)
        model.load_state_dict(encoded.state)  # quantized weights, non-weights as stored
        train = _part(splits, "train")
        names = weight_names(model)
        if cfg.codebook_epochs > 0:
            finetune_codebook(model, codebooks_of(model, names, cfg.bits), (train.x, train.y),
                              snap.head.loss, epochs=cfg.codebook_epochs, lr=cfg.codebook_lr,
                              batch_size=cfg.refit_batch_size, seed=cfg.seed)
            report["codebook_epochs"] = cfg.codebook_epochs
        if cfg.refit > 0:
            report.update(_refit_nonweights(model, snap.head, train.x, train.y, cfg.refit,
                                            cfg.refit_lr, cfg.refit_batch_size, cfg.seed))
        tuned = encode(model, snap.plan, snap.head, masks=snap.masks, **settings)
        for name in names:  # re-quantizing quantized (or fine-tuned) weights must be exact
            if not torch.equal(tuned.state[name], model.get_parameter(name).detach()):
                raise RuntimeError(f"re-quantizing {name} after training changed it")
        encoded, source = tuned, model
    if cfg.nonweight_dtype == AUTO_DTYPE:
        encoded, choice = _choose_nonweight_dtype(snap, source, settings, encoded, splits)
        report.update(choice)
    encoded.account.dense_params = dense
    return encoded, report


def _choose_nonweight_dtype(snap: Any, source: nn.Module, settings: dict[str, Any],
                            half: Encoded, splits: Any) -> tuple[Encoded, dict[str, Any]]:
    """int8 non-weights when their validation accuracy is at least float16's (``half``)."""
    val = _part(splits, "val")
    if val is None:
        raise ConfigError("nonweight_dtype auto chooses on the validation split, and the "
                          "data has none")
    ints = encode(source, snap.plan, snap.head, masks=snap.masks,
                  **{**settings, "nonweight_dtype": "int8"})
    acc = {}
    for dtype, enc in (("float16", half), ("int8", ints)):
        model = copy.deepcopy(snap.model)
        model.load_state_dict(enc.state)
        acc[dtype] = evaluate(model, snap.head, val.x, val.y)["acc"]
    chosen = "int8" if acc["int8"] >= acc["float16"] else "float16"
    return (ints if chosen == "int8" else half), {
        "nonweight_dtype": chosen, "val_acc_float16": acc["float16"],
        "val_acc_int8": acc["int8"]}


def snapshot_bits(snapshot_dir: str | Path, cfg: BitsConfig,
                  accuracy: bool = False) -> tuple[Any, Encoded, dict[str, Any]]:
    """Load a snapshot and encode it (``leanbits bits`` / ``pack``).

    Args:
        snapshot_dir: the snapshot directory.
        cfg: the settings.
        accuracy: also evaluate the quantized model on the validation and test splits.

    Returns:
        ``(snapshot, encoded, extra)``: ``extra`` holds the re-fit figures and, with
        ``accuracy``, ``val_acc``/``val_loss``/``test_acc``/``test_loss``.
    """
    snap = snapshot.load(snapshot_dir)
    splits = _snapshot_splits(snap) if cfg.needs_data() or accuracy else None
    encoded, extra = quantize_snapshot(snap, cfg, splits)
    if accuracy:
        model = copy.deepcopy(snap.model)
        model.load_state_dict(encoded.state)
        extra.update(evaluate_splits(model, snap.head, splits))
    return snap, encoded, extra


def evaluate_lbits(
    path: str | Path, splits: Any = None, dataset: str = "mnist",
    names: Sequence[str] = ("val", "test"),
) -> dict[str, Any]:
    """Accuracy and loss of the model a ``.lbits`` file holds, with its bit totals.

    Args:
        path: the file (packed with a plan and a head).
        splits: data with ``.val``/``.test`` parts (each ``.x``, ``.y``) or a mapping of them;
            None loads ``dataset`` with :func:`leanbits.data.load_data`.
        dataset: data set to load when ``splits`` is None.
        names: which parts to evaluate.

    Returns:
        ``{"model", "val_acc", "val_loss", "test_acc", "test_loss", "total_bits",
        "total_bytes", "compression"}`` (accuracy keys for the parts evaluated).

    Example:
        >>> evaluate_lbits("lenet.lbits", splits)["test_acc"]  # doctest: +SKIP
        0.981
    """
    unpacked = unpack(path)
    if unpacked.plan is None or unpacked.head is None:
        raise FormatError(f"{path}: packed without a plan or head; it cannot be evaluated alone")
    if splits is None:
        splits = snapshot_data({"data": {"dataset": dataset}})
    snapshot.check_fits_data(unpacked.plan, unpacked.head, splits, path)
    model = build(unpacked.plan)
    model.load_state_dict(unpacked.state)
    acc = unpacked.account
    report: dict[str, Any] = {"model": str(path)}
    report.update(evaluate_splits(model, unpacked.head, splits, tuple(names)))
    report.update(total_bits=acc.total_bits, total_bytes=acc.total_bytes,
                  compression=acc.compression)
    return report


def unpack_to_snapshot(lbits: str | Path, out: str | Path,
                       force: bool = False) -> tuple[Path, dict[str, Any]]:
    """Decode a ``.lbits`` file into a normal snapshot directory.

    Args:
        lbits: the file (packed with a plan and a head).
        out: the snapshot directory to write.
        force: replace an existing snapshot there (otherwise it is refused).

    Returns:
        ``(snapshot directory, summary)``; the summary (``total_bits``, ``total_bytes``,
        ``compression``, ``source``) is also the snapshot's ``metrics.json`` ``bits`` entry.

    Raises:
        FormatError: the file is damaged or was packed without a plan or head.
    """
    unpacked = unpack(lbits)
    if unpacked.plan is None or unpacked.head is None:
        raise FormatError(
            f"{lbits}: packed without a plan or head, so it cannot become a snapshot; "
            "use leanbits.bits.load(path, model=template) from Python"
        )
    model = build(unpacked.plan)
    model.load_state_dict(unpacked.state)
    acc = unpacked.account
    summary = {"total_bits": acc.total_bits, "total_bytes": acc.total_bytes,
               "compression": acc.compression, "source": str(lbits)}
    path = snapshot.save(out, model, unpacked.plan, unpacked.head,
                         config={"bits": dict(acc.settings)}, metrics={"bits": summary},
                         masks=unpacked.masks, force=force)
    return path, summary
