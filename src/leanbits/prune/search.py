"""Pruning a snapshot with full reporting, profiles over levels, and the sparsity search.

Every method is measured the same way (:func:`measure`): validation and test accuracy,
nonzero weights, effective connections, live units per layer, dense / sparse /
effective multiply-accumulates per example, backprop epochs and the method's own wall time.
A method's learning rate can be chosen from a small grid (``PruneConfig.lr_grid``) by
validation accuracy alone; the test split is read once, for the chosen run.

``data`` is any object with ``.train.x/.train.y/.val.x/.val.y/.test.x/.test.y`` tensors
(:class:`leanbits.data.datasets.Splits` or a test double).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from leanbits import paths
from leanbits.config import make, to_dict
from leanbits.errors import PruneError
from leanbits.models.layers import weight_layers
from leanbits.prune.baselines import OWN_SPARSITY
from leanbits.prune.compaction import compact, macs
from leanbits.prune.magnitude import LayerEmptiedError
from leanbits.prune.masks import check_amount, count_nonzero_weights, model_masks
from leanbits.prune.methods import lr_field, run_method
from leanbits.prune.refit import nonweight_parameters
from leanbits.prune.structure import analyse
from leanbits.results import Row
from leanbits.settings.prune import PruneConfig
from leanbits.snapshot import Snapshot, load_tensors
from leanbits.train import TrainConfig, evaluate, evaluate_splits


@dataclass
class PruneResult(Snapshot):
    """A pruned snapshot (masked model, same plan) plus its compact rebuild."""

    compact_model: nn.Module | None = None
    compact_plan: Any = None


def _train_part(data: Any, cfg: PruneConfig) -> tuple[Tensor, Tensor]:
    x, y = data.train.x, data.train.y
    if cfg.limit_train is not None:
        x, y = x[: cfg.limit_train], y[: cfg.limit_train]
    return x, y


def _accuracy(model: nn.Module, head: Any, data: Any) -> dict[str, float]:
    return evaluate_splits(model, head, data)


def measure(
    model: nn.Module,
    input_shape: tuple[int, ...],
    head: Any,
    data: Any,
    masks: Mapping[str, Tensor] | None = None,
    x_dead: Tensor | None = None,
) -> dict[str, Any]:
    """Accuracy and size of a (masked) model: the common part of every report.

    Returns:
        ``val_acc``, ``val_loss``, ``test_acc``, ``test_loss``, ``weights`` (prunable
        weights in total), ``nonzero_weights``, ``sparsity`` (fraction of prunable weights
        that are zero or masked), ``effective_connections``, ``connections`` and
        ``live_units`` / ``units`` per layer, ``macs_dense``, ``macs_sparse``,
        ``macs_effective`` (per example) and ``nonweight_params``.
    """
    full = model_masks(model, masks)
    report: dict[str, Any] = dict(_accuracy(model, head, data))
    total = sum(m.weight.numel() for _, m in weight_layers(model))
    mac = macs(model, input_shape, full)
    nonzero = count_nonzero_weights(model, full)
    s = analyse(model, full, x_dead)
    conns = s.connections()
    report.update(
        weights=total,
        nonzero_weights=nonzero,
        sparsity=1.0 - nonzero / total if total else 0.0,
        effective_connections=sum(conns.values()),
        connections=conns,
        live_units=s.live_units(),
        units=dict(s.units),
        macs_dense=mac["dense"],
        macs_sparse=mac["sparse"],
        macs_effective=sum(mac["layers"][k]["positions"] * c for k, c in conns.items()),
        nonweight_params=sum(p.numel() for _, p in nonweight_parameters(model)),
    )
    return report


def dense_report(snapshot: Snapshot, data: Any) -> dict[str, Any]:
    """:func:`measure` of the snapshot as it is (its own masks, if any)."""
    return measure(snapshot.model, snapshot.plan.in_shape, snapshot.head, data, snapshot.masks)


def load_early_state(snapshot: Snapshot) -> dict[str, Tensor] | None:
    """The snapshot's early weights (for rewinding), or None if it has none."""
    if snapshot.path is None or not paths.early_weights(snapshot.path).is_file():
        return None
    return load_tensors(paths.early_weights(snapshot.path))


def _with(cfg: PruneConfig, **changes: Any) -> PruneConfig:
    values = to_dict(cfg)
    values.update(changes)
    return make(PruneConfig, values)


def train_config_of(snapshot: Snapshot) -> TrainConfig | None:
    """The settings ``snapshot`` was trained with (None when its config has none).

    Keys this version does not know (a snapshot from another version) are left out.
    """
    train = snapshot.config.get("train") if isinstance(snapshot.config, Mapping) else None
    if not isinstance(train, Mapping):
        return None
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return make(TrainConfig, {k: v for k, v in train.items() if k in known})


def lr_candidates(method: str, cfg: PruneConfig,
                  train: TrainConfig | None = None) -> list[PruneConfig]:
    """One config per learning rate of ``cfg.lr_grid`` (factors of the method's rate).

    Without a grid, or for a method that trains nothing, ``[cfg]``. The rewind rate
    defaults to the original training rate (``train.lr``), which the factors then scale.

    Example:
        >>> [c.finetune_lr for c in lr_candidates("finetune",
        ...                                       PruneConfig(lr_grid=(0.5, 1.0, 2.0)))]
        [0.00025, 0.0005, 0.001]
    """
    field_name = lr_field(method, cfg)
    if not cfg.lr_grid or field_name is None:
        return [cfg]
    base = getattr(cfg, field_name)
    if base is None:
        if train is None:  # rewind without its training settings: it will say so itself
            return [cfg]
        base = train.lr
    return [_with(cfg, **{field_name: base * f}) for f in cfg.lr_grid]


def prune_snapshot(
    snapshot: Snapshot,
    method: str,
    sparsity: float,
    data: Any,
    config: PruneConfig | None = None,
    *,
    early_state: Mapping[str, Tensor] | None = None,
    dense: Mapping[str, Any] | None = None,
) -> tuple[PruneResult, dict[str, Any]]:
    """Prune a snapshot with one method and report it like every other method.

    Args:
        snapshot: a loaded snapshot (:func:`leanbits.snapshot.load`); not modified.
        method: ``none``, ``refit``, ``finetune``, ``iterative`` or ``rewind``.
        sparsity: fraction in [0, 1) of prunable weights removed.
        data: splits with ``train``, ``val`` and ``test`` parts.
        config: all other settings (default :class:`PruneConfig`).
        early_state: early weights for ``rewind`` (default: read from the snapshot dir).
        dense: a precomputed :func:`dense_report` (saves time in profiles).

    With ``config.lr_grid`` the method runs once per learning rate of the grid and the run
    with the best validation accuracy is kept (the first on a tie); ``backprop_epochs``
    and ``wall_time_s`` are then the kept run's, ``grid_backprop_epochs`` and
    ``grid_wall_time_s`` the whole selection's, and ``lr_grid`` lists every
    ``{"lr", "val_acc"}`` tried. The result's config holds the chosen rate.

    Returns:
        ``(result, report)``: ``result`` is a :class:`PruneResult` (masked model, masks,
        the snapshot's plan and head, ``compact_model`` / ``compact_plan``) and ``report``
        a JSON-able dict (see :func:`measure`) with ``method``, ``sparsity_requested``,
        ``backprop_epochs``, ``lr``, ``wall_time_s`` (the method alone: no data loading,
        no evaluation), ``dense`` and ``compact`` added.

    Example:
        >>> result, report = prune_snapshot(snap, "refit", 0.95, splits)  # doctest: +SKIP
        >>> report["test_acc"], report["effective_connections"]  # doctest: +SKIP
        (0.9791, 12894)
    """
    sparsity = check_amount(sparsity)
    cfg = _with(config or PruneConfig(), method=method, sparsity=sparsity)
    if early_state is None and method == "rewind":
        early_state = load_early_state(snapshot)
    x, y = _train_part(data, cfg)
    train_cfg = train_config_of(snapshot) if method == "rewind" else None
    candidates = lr_candidates(method, cfg, train_cfg)
    res, grid = None, []
    best = -math.inf
    for cand in candidates:
        run = run_method(snapshot.model, method, sparsity, (x, y), snapshot.head.loss, cand,
                         early_state, snapshot.masks, train_config=train_cfg)
        if len(candidates) == 1:
            res = run
            break
        # choose on validation only; test is measured once, for the kept run
        val = evaluate(run.model, snapshot.head, data.val.x, data.val.y)["acc"]
        grid.append({"lr": run.record.get("lr"), "val_acc": val,
                     "backprop_epochs": run.record["backprop_epochs"],
                     "wall_time_s": run.record["wall_time_s"]})
        if res is None or val > best:
            res, best, cfg = run, val, cand
    assert res is not None
    x_dead = x[: cfg.compensation_examples] if cfg.dead_on_data else None
    report: dict[str, Any] = {
        "method": method,
        # a method in OWN_SPARSITY finds its sparsity; none was requested
        "sparsity_requested": None if method in OWN_SPARSITY else sparsity,
        "scope": cfg.scope,
        "criterion": cfg.criterion,
        "granularity": cfg.granularity,
    }
    report.update(measure(res.model, snapshot.plan.in_shape, snapshot.head, data, res.masks,
                          x_dead))
    report.update({k: v for k, v in res.record.items() if k != "method"})
    if grid:
        report["lr_grid"] = [{"lr": g["lr"], "val_acc": g["val_acc"]} for g in grid]
        report["grid_backprop_epochs"] = sum(g["backprop_epochs"] for g in grid)
        report["grid_wall_time_s"] = sum(g["wall_time_s"] for g in grid)
    small, small_plan = compact(res.model, snapshot.plan, res.masks, x_dead)
    report["compact"] = {
        "conv": list(small_plan.conv),
        "fc": list(small_plan.fc),
        "params": sum(p.numel() for p in small.parameters()),
        "nonzero_weights": sum(int((m.weight != 0).sum()) for _, m in weight_layers(small)),
        **{k: v for k, v in _accuracy(small, snapshot.head, data).items() if k.endswith("acc")},
    }
    d = dense if dense is not None else dense_report(snapshot, data)
    report["dense"] = {k: d[k] for k in ("val_acc", "test_acc", "nonzero_weights", "macs_dense")}
    config = dict(snapshot.config)
    config["prune"] = to_dict(cfg)
    result = PruneResult(
        model=res.model, plan=snapshot.plan, head=snapshot.head, config=config,
        metrics=report, masks=res.masks, path=None, compact_model=small,
        compact_plan=small_plan,
    )
    return result, report


def _layer_sparsity(connections: Mapping[str, int], sizes: Mapping[str, int]) -> dict[str, float]:
    """Per layer: the fraction of its weights that are not effective connections."""
    return {k: 1.0 - c / sizes[k] for k, c in connections.items() if sizes.get(k)}


def profile(
    snapshot: Snapshot,
    methods: Iterable[str],
    sparsities: Iterable[float],
    data: Any,
    config: PruneConfig | None = None,
    on_row: Callable[[Row], None] | None = None,
) -> list[Row]:
    """Prune one snapshot with every method at every level; one result row per run.

    The first row (axes ``method = "dense"``, sparsity 0) is the snapshot itself. A method
    that finds its own sparsity (:data:`~leanbits.prune.baselines.OWN_SPARSITY`) runs once,
    not per level, and its row's ``sparsity`` axis is the sparsity it reached.

    Returns:
        :class:`leanbits.results.Row` objects: ``axes`` ``{"method", "sparsity"}`` (the
        requested level), ``settings`` (the snapshot's data and train settings, plus the
        run's prune settings), accuracy, sizes, ``sparsity``, ``effective_connections``,
        ``layer_sparsity``, ``params`` of the compact rebuild, and the full report in
        ``metrics["prune"]`` (``metrics["train"]`` for the dense row). A level that would
        empty a layer gives a row with ``error`` and no measurements instead of stopping.

    Example:
        >>> rows = profile(snap, ["none", "refit"], [0.5, 0.9], splits)  # doctest: +SKIP
    """
    methods, levels = list(methods), [check_amount(s) for s in sparsities]
    if not methods or not levels:
        raise PruneError("profile needs at least one method and one sparsity")
    cfg = config or PruneConfig()
    early = load_early_state(snapshot) if "rewind" in methods else None
    sizes = {n: m.weight.numel() for n, m in weight_layers(snapshot.model)}
    base = {k: dict(snapshot.config[k]) for k in ("data", "train")
            if isinstance(snapshot.config.get(k), Mapping)}
    d = dense_report(snapshot, data)

    def emit(row: Row) -> None:
        rows.append(row)
        if on_row is not None:
            on_row(row)

    rows: list[Row] = []
    emit(_profile_row(0, "dense", 0.0, base, {"train": d}, d,
                      sum(p.numel() for p in snapshot.model.parameters()), sizes))
    for method in methods:
        for level in levels[:1] if method in OWN_SPARSITY else levels:
            settings = {**base, "prune": to_dict(_with(cfg, method=method, sparsity=level))}
            try:
                _, rep = prune_snapshot(snapshot, method, level, data, cfg,
                                        early_state=early, dense=d)
            except LayerEmptiedError as exc:  # too sparse for this net: say so, go on
                emit(Row(point=len(rows), axes={"method": method, "sparsity": level},
                         settings=settings, error=str(exc)))
                continue
            rep = {k: v for k, v in rep.items() if k != "dense"}
            axis = rep["sparsity"] if method in OWN_SPARSITY else level
            emit(_profile_row(len(rows), method, axis, settings, {"prune": rep}, rep,
                              rep["compact"]["params"], sizes))
    return rows


def _profile_row(point: int, method: str, level: float, settings: dict[str, Any],
                 metrics: dict[str, Any], rep: Mapping[str, Any], params: int,
                 sizes: Mapping[str, int]) -> Row:
    return Row(
        point=point, axes={"method": method, "sparsity": level}, settings=settings,
        val_acc=rep["val_acc"], test_acc=rep["test_acc"], val_loss=rep["val_loss"],
        test_loss=rep["test_loss"], params=params, weights=rep["weights"],
        nonzero_weights=rep["nonzero_weights"], sparsity=rep["sparsity"],
        effective_connections=rep["effective_connections"],
        layer_sparsity=_layer_sparsity(rep["connections"], sizes),
        method_seconds=rep.get("wall_time_s"), metrics=metrics,
    )


@dataclass
class SearchResult:
    """Outcome of :func:`search_sparsity`.

    Attributes:
        sparsity: the sparsest level found that meets the requirement.
        accuracy: its validation accuracy.
        required: the accuracy it had to reach.
        evaluations: every ``(sparsity, accuracy)`` tried, in order.
    """

    sparsity: float
    accuracy: float
    required: float
    evaluations: list[tuple[float, float]] = field(default_factory=list)


def search_sparsity(
    evaluate_fn: Callable[[float], float],
    target: float | None = None,
    lo: float = 0.0,
    hi: float = 0.999,
    tol: float = 0.005,
    *,
    max_drop: float | None = None,
    dense_acc: float | None = None,
) -> SearchResult:
    """Bisection for the sparsest level whose validation accuracy meets a requirement.

    Assumes accuracy does not increase with sparsity. The requirement is either an absolute
    ``target`` accuracy or at most ``max_drop`` below ``dense_acc`` (evaluated at sparsity
    0 if not given). The returned level always met the requirement when evaluated.

    Args:
        evaluate_fn: sparsity -> validation accuracy (called at most once per level).
        target: required accuracy.
        lo, hi: bracket, ``0 <= lo <= hi < 1``.
        tol: stop when ``hi - lo <= tol``.
        max_drop: allowed loss of accuracy relative to dense.
        dense_acc: dense accuracy for ``max_drop``.

    Returns:
        A :class:`SearchResult`.

    Raises:
        PruneError: neither or both requirements given, a bad bracket, or even ``lo``
            misses the requirement.

    Example:
        >>> r = search_sparsity(lambda s: 1.0 - s, target=0.25, tol=1e-3)
        >>> 0.749 <= r.sparsity <= 0.75
        True
    """
    if (target is None) == (max_drop is None):
        raise PruneError("give exactly one of target accuracy or max_drop")
    lo, hi = check_amount(lo, "search lo"), check_amount(hi, "search hi")
    if lo > hi:
        raise PruneError(f"search bracket is empty: lo={lo} > hi={hi}")
    if not tol > 0:
        raise PruneError(f"search tolerance must be > 0, got {tol}")
    seen: dict[float, float] = {}
    evaluations: list[tuple[float, float]] = []

    def f(s: float) -> float:
        if s not in seen:
            seen[s] = float(evaluate_fn(s))
            evaluations.append((s, seen[s]))
        return seen[s]

    if target is None:
        base = f(0.0) if dense_acc is None else float(dense_acc)
        required = base - float(max_drop)
    else:
        required = float(target)
    if f(lo) < required:
        raise PruneError(
            f"even sparsity {lo} reaches only {seen[lo]:.4f} validation accuracy; "
            f"{required:.4f} is required"
        )
    if f(hi) >= required:
        return SearchResult(hi, seen[hi], required, evaluations)
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if f(mid) >= required:
            lo = mid
        else:
            hi = mid
    return SearchResult(lo, seen[lo], required, evaluations)


def prune_to_target(
    snapshot: Snapshot, data: Any, config: PruneConfig
) -> tuple[PruneResult, dict[str, Any], SearchResult | None]:
    """:func:`prune_snapshot` at ``config.sparsity``, or at the searched level when
    ``config.target_accuracy`` / ``config.max_drop`` is set (validation accuracy only).

    Returns:
        ``(result, report, search)``; ``search`` is None without a requirement.
    """
    if config.target_accuracy is None and config.max_drop is None:
        res, rep = prune_snapshot(snapshot, config.method, config.sparsity, data, config)
        return res, rep, None
    if config.method in OWN_SPARSITY:
        raise PruneError(
            f"method {config.method} finds its own sparsity, so there is none to search; "
            "drop --target-accuracy / --max-drop, or choose another method"
        )
    early = load_early_state(snapshot) if config.method == "rewind" else None
    dense = dense_report(snapshot, data)
    runs: dict[float, tuple[PruneResult, dict[str, Any]]] = {}

    def val_acc(s: float) -> float:
        if s == 0.0 and not snapshot.masks:
            return float(dense["val_acc"])
        try:
            runs[s] = prune_snapshot(snapshot, config.method, s, data, config,
                                     early_state=early, dense=dense)
        except LayerEmptiedError:
            return -math.inf  # too sparse to keep every layer: fails any requirement
        return float(runs[s][1]["val_acc"])

    search = search_sparsity(
        val_acc, config.target_accuracy, max_drop=config.max_drop,
        dense_acc=dense["val_acc"], lo=config.search_lo, hi=config.search_hi,
        tol=config.search_tol,
    )
    if search.sparsity not in runs:
        runs[search.sparsity] = prune_snapshot(snapshot, config.method, search.sparsity, data,
                                               config, early_state=early, dense=dense)
    res, rep = runs[search.sparsity]
    rep["search"] = {
        "required_val_acc": search.required,
        # JSON has no infinity: an infeasible level is reported with accuracy null
        "evaluations": [[s, a if math.isfinite(a) else None] for s, a in search.evaluations],
    }
    return res, rep, search

