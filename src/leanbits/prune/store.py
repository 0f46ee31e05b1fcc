"""What pruning leaves on disk: a pruned snapshot with its compact rebuild and
``report.json``, written as one unit (:func:`save_result`), finding such an output again
when it was made with the same settings (:func:`load_saved`), and the ``profile.json`` of a
pruning profile (:func:`save_profile`). ``leanbits prune`` / ``profile`` and the sweep's
prune and profile stages all write through here, so their outputs have one layout (file
names in :mod:`leanbits.paths`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from leanbits import paths, snapshot
from leanbits.config import to_dict
from leanbits.fileio import write_text_atomic
from leanbits.models.layers import weight_layers
from leanbits.prune.masks import weight_key
from leanbits.prune.search import PruneResult
from leanbits.results import DENSE_PARAMS, Row, profile_document
from leanbits.settings.prune import PruneConfig


def save_result(out: Path, result: PruneResult, report: dict[str, Any],
                force: bool = False) -> None:
    """Write the pruned snapshot, ``compact/`` and ``report.json`` (last) into ``out``, as
    one unit (built in ``OUT.partial``; see :class:`leanbits.snapshot.SnapshotWriter`).

    Args:
        out: the output directory.
        result: the pruned snapshot and its compact rebuild.
        report: the pruning report (also the pruned snapshot's metrics).
        force: replace ``out`` even if it holds a snapshot made from other settings.
    """
    small = result.compact_model
    # The compact model stores its zeros as masks so later stages see the same sparsity.
    small_masks = {weight_key(n): m.weight.detach() != 0 for n, m in weight_layers(small)}
    compact_metrics = {k: report[k] for k in ("val_acc", "test_acc") if k in report}
    compact_metrics.update(report.get("compact", {}))
    # The rebuild has fewer parameters than the model it came from: keep that model's count,
    # the numerator of compression (leanbits.results.compression) when the rebuild is packed.
    compact_metrics[DENSE_PARAMS] = sum(p.numel() for p in result.model.parameters())
    with snapshot.SnapshotWriter(out, config=result.config, force=force) as w:
        snapshot.write(w.path, result.model, result.plan, result.head, result.config, report,
                       result.masks)
        snapshot.write(paths.compact(w.path), small, result.compact_plan, result.head,
                       result.config, compact_metrics, small_masks)
        write_text_atomic(paths.report(w.path), json.dumps(report, indent=2, sort_keys=True))


def load_saved(out: Path, cfg: PruneConfig, source: Path) -> dict[str, Any] | None:
    """The report of ``out`` when it holds a finished result of pruning ``source`` with
    exactly ``cfg``; None otherwise (nothing there, other settings, or a damaged report)."""
    if not (paths.report(out).is_file() and paths.config(out).is_file()):
        return None
    stored = snapshot.read_toml(paths.config(out))
    want = {k: v for k, v in to_dict(cfg).items() if v is not None}
    if stored.get("prune") != want or stored.get("source") != str(source):
        return None
    try:
        return json.loads(paths.report(out).read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def save_profile(out: Path, rows: list[Row], config: Mapping[str, Any],
                 source: str | None) -> Path:
    """Write ``profile.json`` (:func:`leanbits.results.profile_document`) into ``out``.

    Args:
        out: the output directory (created if needed).
        rows: the profile's rows, dense first.
        config: the settings every run shared.
        source: the profiled snapshot (a path, absolute or relative to the document).

    Returns:
        The path of ``profile.json``.
    """
    Path(out).mkdir(parents=True, exist_ok=True)
    path = paths.profile(out)
    write_text_atomic(path, json.dumps(profile_document(rows, config, source), indent=2,
                                       sort_keys=True, default=float))
    return path
