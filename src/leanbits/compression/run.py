"""One compression, end to end: :func:`compress` (a model and its data splits to the
smallest ``.lbits`` file whose validation accuracy meets the requirement, written
atomically, its work directory locked while the search runs and removed after success),
:func:`compress_snapshot` (the same on a snapshot directory, with the data it was trained
on) and the :class:`CompressResult` both return.
"""

from __future__ import annotations

import contextlib
import copy
import math
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn
from tqdm import tqdm

from leanbits import paths, snapshot
from leanbits.bits.account import Account
from leanbits.bits.files import unpack
from leanbits.compression.cache import WorkDir, cache_key, digest
from leanbits.compression.recipe import (
    CompressConfig,
    check_recipe,
    check_target,
    quantizer_grid,
)
from leanbits.compression.search import Candidate, Loss, Search, accuracy, run_search, xy
from leanbits.config import make, to_dict
from leanbits.data import snapshot_data
from leanbits.errors import ConfigError
from leanbits.fileio import check_output_file, exclusive_lock, write_bytes_atomic
from leanbits.heads import Head
from leanbits.models import Plan
from leanbits.models.layers import weight_layers


@dataclass
class CompressResult:
    """What :func:`compress` chose and wrote.

    Attributes:
        output: the ``.lbits`` file written (None when no output was asked for).
        data: the file's bytes.
        account: its bit account (``account.total_bytes == len(data)``).
        model: a copy of the model holding the decoded state (weights as in the file).
        chosen: the winning :class:`Candidate`.
        required_val_acc: the validation accuracy the file had to reach.
        dense_val_acc: validation accuracy of the model given.
        val_acc: validation accuracy of the decoded file (equals ``chosen.val_acc``).
        test_acc: test accuracy of the decoded file, or None without a test split.
        weights: prunable weights of the model; ``nonzero``: those the file stores.
        epochs: backprop epochs spent on method runs (cached ones included).
        budget_exhausted: a method run was skipped because the budget was spent.
        evaluated, reused: method runs + candidates computed now / read from the work dir.
        candidates: every candidate scored, in order.
    """

    output: Path | None
    data: bytes
    account: Account
    model: nn.Module
    chosen: Candidate
    required_val_acc: float
    dense_val_acc: float
    val_acc: float
    test_acc: float | None
    weights: int
    nonzero: int
    epochs: float
    budget_exhausted: bool
    evaluated: int
    reused: int
    candidates: list[Candidate] = field(default_factory=list)

    @property
    def compression(self) -> float:
        """Dense float32 size of every parameter over the file's size."""
        return self.account.compression

    @property
    def weights_kept(self) -> float:
        """Prunable weights of the model over the nonzero weights the file stores."""
        return self.weights / self.nonzero if self.nonzero else math.inf

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (the ``--json`` output of ``leanbits compress``)."""
        return {
            "output": None if self.output is None else str(self.output),
            "method": self.chosen.method, "sparsity": self.chosen.sparsity,
            "settings": self.chosen.settings, "required_val_acc": self.required_val_acc,
            "dense_val_acc": self.dense_val_acc, "val_acc": self.val_acc,
            "test_acc": self.test_acc, "weights": self.weights, "nonzero": self.nonzero,
            "weights_kept": self.weights_kept, "compression": self.compression,
            "file_bytes": len(self.data), "epochs": self.epochs,
            "budget_exhausted": self.budget_exhausted, "evaluated": self.evaluated,
            "reused": self.reused, "candidates": [c.to_dict() for c in self.candidates],
            **self.account.to_dict(),
        }


def compress(
    model: nn.Module,
    data: Any,
    loss: Loss | None = None,
    *,
    max_drop: float | None = None,
    target_accuracy: float | None = None,
    config: CompressConfig | None = None,
    plan: Plan | None = None,
    head: Head | None = None,
    masks: Mapping[str, Tensor] | None = None,
    output: str | Path | None = None,
    work_dir: str | Path | None = None,
    progress: bool | None = None,
) -> CompressResult:
    """The smallest ``.lbits`` file of ``model`` whose validation accuracy meets a requirement.

    Args:
        model: a trained model (a leanbits model or any ``nn.Module`` with Linear / Conv2d
            layers); not modified.
        data: splits with ``train`` and ``val`` parts (and ``test`` for the final report),
            each with ``.x`` / ``.y`` or an ``(x, y)`` pair; attributes or a mapping.
        loss: ``loss(model(x), y)`` for the methods' training (default: ``head.loss``).
        max_drop: allowed loss of validation accuracy relative to ``model`` (a fraction).
        target_accuracy: required validation accuracy (a fraction); give exactly one, or
            neither to use ``config.max_drop`` / ``config.target_accuracy``.
        config: the recipe (default :class:`CompressConfig`).
        plan, head: stored in the file so it is self-describing (a leanbits model);
            ``head.predict`` also scores accuracy (arg-max without a head).
        masks: masks the model already has; every candidate keeps within them.
        output: the ``.lbits`` file to write (atomically); None writes nothing.
        work_dir: where method runs and candidates are cached (default
            ``OUTPUT.partial`` with an output, else no cache); removed after success.
        progress: show a progress bar (default: when stderr is a terminal).

    Returns:
        A :class:`CompressResult`; the test accuracy is that of the decoded file.

    Raises:
        ConfigError: a bad requirement or recipe.
        OutputError: an output that exists and is not a regular file.
        PruneError: no level of any method met the requirement within the budget.

    Example:
        >>> r = leanbits.compress(model, splits, head.loss, max_drop=0.002, head=head,
        ...                       plan=plan, output="model.lbits")  # doctest: +SKIP
        >>> r.compression, r.test_acc  # doctest: +SKIP
        (120.3, 0.9841)
    """
    cfg = config if config is not None else CompressConfig()
    cfg = make(CompressConfig, to_dict(cfg))  # validated, whatever built it
    if max_drop is None and target_accuracy is None:
        max_drop, target_accuracy = cfg.max_drop, cfg.target_accuracy
    kind, value = check_target(max_drop, target_accuracy)
    check_recipe(cfg)
    prune_cfg = cfg.prune_config()
    if loss is None:
        if head is None:
            raise ConfigError("compress needs a loss function (or a head whose loss is used)")
        loss = head.loss
    if output is not None:
        check_output_file(output)  # a directory, device, FIFO... is never replaced
        output = Path(output)
    work_path = (Path(work_dir) if work_dir is not None else
                 paths.partial(output) if output is not None else None)
    val = xy(data, "val")
    train = xy(data, "train")
    dense_val = accuracy(model, *val, head=head)
    required = dense_val - value if kind == "max_drop" else value

    # Everything that decides the search, and nothing else (never the test split).
    run_key = cache_key(
        digest(model.state_dict().items()), digest(sorted((masks or {}).items())),
        digest([("tx", train[0]), ("ty", train[1]), ("vx", val[0]), ("vy", val[1])]),
        to_dict(cfg), repr(plan), repr(head), kind, value,
    )
    show = sys.stderr.isatty() if progress is None else progress
    lock = (exclusive_lock(paths.sibling_lock(work_path)) if work_path is not None
            else contextlib.nullcontext())
    with lock, tqdm(desc="compress", unit="run", disable=not show, leave=False) as bar:
        search = Search(model, data, loss, cfg, prune_cfg, plan, head, masks,
                        WorkDir(work_path, run_key), run_key, bar)
        grid = quantizer_grid(cfg)
        best = run_search(search, grid, required)
        pruned = search.prune(best.method, best.sparsity)
        assert pruned is not None
        encoded = search.encode(pruned, best.settings)
    if len(encoded.data) != encoded.account.total_bytes:
        raise RuntimeError("file size differs from its account")
    decoded_state = encoded.state
    if output is not None:
        write_bytes_atomic(output, encoded.data)
        decoded_state = unpack(output).state  # what the file holds, read back
    decoded = copy.deepcopy(pruned[0])
    decoded.load_state_dict(decoded_state)
    val_acc = accuracy(decoded, *val, head=head)
    test = xy(data, "test", required=False)
    test_acc = accuracy(decoded, *test, head=head) if test is not None else None
    if work_path is not None and paths.compress(work_path).is_file():
        shutil.rmtree(work_path, ignore_errors=True)
    weights = sum(layer.weight.numel() for _, layer in weight_layers(model))
    return CompressResult(
        output=output, data=encoded.data, account=encoded.account, model=decoded,
        chosen=best, required_val_acc=required, dense_val_acc=dense_val, val_acc=val_acc,
        test_acc=test_acc, weights=weights, nonzero=best.nonzero, epochs=search.epochs,
        budget_exhausted=search.budget_exhausted, evaluated=search.evaluated,
        reused=search.reused, candidates=search.candidates,
    )


def compress_snapshot(
    snapshot_dir: str | Path, output: str | Path, *, max_drop: Any = None,
    target_accuracy: Any = None, config: CompressConfig | None = None,
    progress: bool | None = None,
) -> CompressResult:
    """:func:`compress` on a snapshot directory, with the data set it was trained on.

    Args:
        snapshot_dir: from ``leanbits train`` or ``leanbits prune``.
        output: the ``.lbits`` file to write.
        max_drop, target_accuracy, config, progress: as :func:`compress`.

    Returns:
        The :class:`CompressResult`.
    """
    if max_drop is None and target_accuracy is None and config is not None:
        max_drop, target_accuracy = config.max_drop, config.target_accuracy
    check_target(max_drop, target_accuracy)  # before loading anything
    snap = snapshot.load(snapshot_dir)
    splits = snapshot_data(snap.config, source=paths.config(Path(snapshot_dir)))
    snapshot.check_fits_data(snap.plan, snap.head, splits, snapshot_dir)
    return compress(snap.model, splits, snap.head.loss, max_drop=max_drop,
                    target_accuracy=target_accuracy, config=config, plan=snap.plan,
                    head=snap.head, masks=snap.masks, output=output, progress=progress)
