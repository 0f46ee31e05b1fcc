"""The result row: one evaluated model, as every writer stores it and the report reads it.

A :class:`Row` is written by the sweep (one per grid point, ``results.json``), by a pruning
profile (one per method and level, ``profile.json`` of ``leanbits profile`` and of a
sweep's profile stage) and so by the demo, which is a sweep. ``leanbits report`` reads
nothing else about results. Fields are plain names with one meaning each; a quantity a
writer does not know is None (or empty). This module imports nothing of leanbits: every
layer may use it.

Compression has one definition (:func:`compression`): 32 bits times the parameters of the
dense trained model, over the total bits of the packed model. The row stores both terms
(``dense_bits``, ``total_bits``) beside the ratio.

Example:
    >>> row = Row(val_acc=0.98, total_bits=1000, dense_bits=32000, compression=32.0)
    >>> Row.from_dict(row.to_dict()) == row
    True
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: the parts of a packed model's bits, as ``bits_breakdown`` and ``layer_bits`` name them
BIT_PARTS = ("values", "position", "codebook", "nonweight", "header", "padding")
#: the parts a layer has (header and padding belong to the whole file)
LAYER_BIT_PARTS = ("values", "position", "codebook", "nonweight")


#: the ``metrics.json`` key of a pruned model's compact rebuild that holds the parameters
#: of the model it was rebuilt from (the numerator of :func:`compression` when it is packed)
DENSE_PARAMS = "dense_params"


def dense_params_of(metrics: Mapping[str, Any]) -> int | None:
    """The dense model's parameters a snapshot's metrics record (:data:`DENSE_PARAMS`);
    None when they record none (the snapshot is its own dense model).

    Example:
        >>> dense_params_of({"dense_params": 266610}), dense_params_of({})
        (266610, None)
    """
    v = metrics.get(DENSE_PARAMS)
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def compression(dense_params: int | None, total_bits: int | None) -> float | None:
    """32 x parameters of the dense float32 model over the packed model's total bits.

    Returns:
        The ratio, or None when either term is unknown (or no bits were counted).

    Example:
        >>> compression(266610, 328032)
        26.00824309823432
    """
    if dense_params is None or not total_bits:
        return None
    return 32 * dense_params / total_bits


@dataclass(frozen=True)
class Row:
    """One evaluated model.

    Attributes:
        point: index of the row in its file (a sweep's grid point; a profile's level).
        axes: ``{axis name: value label}`` that tell this row apart from its neighbours,
            e.g. ``{"head": "llr", "bits": 4}``; a profile row has ``method`` and
            ``sparsity`` (the requested level).
        stages: ``{kind: "kind/key"}``: the stage directories (relative to the run's
            stage root) the model came from.
        settings: ``{"data": {...}, kind: {every config field}}`` per stage.
        val_acc, test_acc, val_loss, test_loss: of this row's model (a packed model: as
            decoded from its file).
        params: parameters of this row's model (a pruned model: of its compact rebuild).
        weights: prunable weights of this row's model.
        nonzero_weights: of those, the nonzero ones.
        max_abs_weight, weight_l2: largest |w| and L2 norm of all prunable weights.
        sparsity: fraction of the trained model's prunable weights that pruning removed
            (None: not pruned).
        effective_connections: nonzero weights whose units are both alive (None: not
            pruned).
        layer_sparsity: ``{layer: fraction of its weights zero}`` (a packed model: of the
            layer as stored; a profile row: weights that are not effective connections).
        total_bits: every bit of the packed model (None: not packed).
        bits_breakdown: ``{part: bits}`` over :data:`BIT_PARTS`; all but ``padding`` add
            up to ``total_bits``.
        layer_bits: ``{layer: {part: bits}}`` over :data:`LAYER_BIT_PARTS`.
        file_bytes: size of the ``.lbits`` file.
        dense_bits: 32 x parameters of the dense trained model.
        compression: ``dense_bits / total_bits`` (:func:`compression`).
        method_seconds: wall seconds of the pruning method alone - its own training and
            scoring, no data loading or evaluation (None: not pruned). With a learning-rate
            grid, of the kept run; ``metrics["prune"]["grid_wall_time_s"]`` is the grid's.
        metrics: ``{stage kind: that stage's full metrics}`` (e.g. the trained model's
            accuracy before pruning: ``metrics["train"]["test_acc"]``).
        error: why the row has no measurements (e.g. a level too sparse for the net).
    """

    point: int = 0
    axes: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, str] = field(default_factory=dict)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    val_acc: float | None = None
    test_acc: float | None = None
    val_loss: float | None = None
    test_loss: float | None = None
    params: int | None = None
    weights: int | None = None
    nonzero_weights: int | None = None
    max_abs_weight: float | None = None
    weight_l2: float | None = None
    sparsity: float | None = None
    effective_connections: int | None = None
    layer_sparsity: dict[str, float] | None = None
    total_bits: int | None = None
    bits_breakdown: dict[str, int] | None = None
    layer_bits: dict[str, dict[str, int]] | None = None
    file_bytes: int | None = None
    dense_bits: int | None = None
    compression: float | None = None
    method_seconds: float | None = None
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None

    @property
    def head(self) -> str | None:
        """The output head the model was trained with (``settings["train"]["head"]``)."""
        return self.settings.get("train", {}).get("head")

    @property
    def method(self) -> str | None:
        """The pruning method (``settings["prune"]["method"]``); None when not pruned."""
        return self.settings.get("prune", {}).get("method")

    def accuracy(self, key: str) -> float | None:
        """``val_acc`` or ``test_acc`` by name (None when unknown or not a number)."""
        value = {"val_acc": self.val_acc, "test_acc": self.test_acc}[key]
        return value if _is_number(value) else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict with every field (None included)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Row:
        """The row a :meth:`to_dict` dict describes; missing fields are None (or empty),
        keys that are not fields are ignored (a newer writer's additions)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in names}
        for k in ("axes", "stages", "settings", "metrics"):
            if values.get(k) is None:
                values.pop(k, None)
        return cls(**values)


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and not (isinstance(value, float) and math.isnan(value)))


def profile_document(rows: list[Row], config: Mapping[str, Any], source: str | None,
                     ) -> dict[str, Any]:
    """The JSON document of a pruning profile (``profile.json``).

    Args:
        rows: the profile's rows, dense first.
        config: the settings every run shared.
        source: the profiled snapshot (a path, absolute or relative to the document).
    """
    return {"source": source, "config": dict(config), "rows": [r.to_dict() for r in rows]}


def profile_rows(doc: Mapping[str, Any]) -> list[Row]:
    """The rows of a :func:`profile_document`.

    Raises:
        ValueError: ``doc`` has no list of rows.
    """
    rows = doc.get("rows")
    if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
        raise ValueError("no list of row objects under 'rows'")
    return [Row.from_dict(r) for r in rows]
