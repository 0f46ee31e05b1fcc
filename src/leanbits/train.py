"""Training loop, evaluation and the per-epoch diagnostics the paper's claims need.

Per epoch, :func:`train` appends one JSON object to ``metrics.jsonl``: train loss and
accuracy (running over the epoch, and in eval mode on a fixed training subset), validation
loss, accuracy, NLL and ECE (on the head's probabilities, :mod:`leanbits.calibration`), and
per-layer diagnostics - weight L2 norm, max |w|, fraction of weights that are exactly zero,
units that never fire on the validation set - plus the mean |output| (logit or LLR
magnitude), which claim 1 of the paper is about, on validation and on the training subset.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from leanbits import paths, snapshot
from leanbits.calibration import Calibration
from leanbits.config import stage_hash, to_dict
from leanbits.errors import ConfigError, TrainingError
from leanbits.heads import Head
from leanbits.loop import (
    FitState,
    Hook,
    NonFiniteLoss,
    epoch_batches,
    fit,
    iterate_batches,
    make_optimizer,
)
from leanbits.models import Plan, build, preset
from leanbits.models.layers import weight_layers
from leanbits.regularize import Regularizer, RegularizerHook
from leanbits.settings.data import DataConfig
from leanbits.settings.train import TrainConfig


def parse_per_layer(text: str | None) -> dict[str, dict[str, float]]:
    """``'fc1.l1=1e-4,out.l2=0'`` -> ``{"fc1": {"l1": 1e-4}, "out": {"l2": 0.0}}``."""
    out: dict[str, dict[str, float]] = {}
    if not text:
        return out
    for item in text.split(","):
        item = item.strip()
        try:
            key, value = item.split("=")
            layer, kind = key.rsplit(".", 1)
            out.setdefault(layer, {})[kind] = float(value)
        except ValueError:
            raise ConfigError(
                f"per_layer entry {item!r} is not LAYER.KIND=VALUE (e.g. fc1.l1=1e-4)"
            ) from None
    return out


def make_plan(cfg: TrainConfig, in_shape: tuple[int, int, int], out: int) -> Plan:
    plan = preset(cfg.model, in_shape, out)
    if cfg.fc is not None or cfg.conv is not None:
        conv = plan.conv if cfg.conv is None else cfg.conv
        if plan.family == "mlp" and conv:
            raise ConfigError(f"model {cfg.model} has no conv layers; drop --conv")
        plan = plan.with_widths(conv, plan.fc if cfg.fc is None else cfg.fc)
    return plan


def make_head(cfg: TrainConfig, num_classes: int) -> Head:
    code = None
    if cfg.code is not None:
        p = Path(cfg.code)
        try:
            code = torch.tensor(json.loads(p.read_text()), dtype=torch.float32)
        except FileNotFoundError:
            raise ConfigError(f"code matrix file {p} does not exist") from None
        except (json.JSONDecodeError, ValueError, TypeError) as exc:
            raise ConfigError(f"{p}: not a JSON K x M list of 0/1 rows ({exc})") from None
    if cfg.head != "llr-code" and code is not None:
        raise ConfigError("--code applies to the llr-code head only")
    return Head(cfg.head, num_classes, cfg.llr_target, code, cfg.label_smoothing)


def run_name(data: DataConfig, cfg: TrainConfig) -> str:
    """Directory name derived from the config: model, head and a hash of the settings."""
    return f"{cfg.model}-{cfg.head}-{stage_hash(data, cfg)}"


@torch.inference_mode()
def evaluate(
    model: nn.Module, head: Head, x: Tensor, y: Tensor, batch_size: int = 1000,
    track_dead: bool = False,
) -> dict[str, Any]:
    """Loss (the head's), accuracy, NLL, ECE and mean |output| of ``model`` on ``(x, y)``.

    Args:
        track_dead: also count, per ReLU module, the units (conv channels) that never fire
            on ``x`` (key ``dead_units``), in the same pass.

    Returns:
        ``{"loss", "acc", "nll", "ece", "mean_abs_output": float, "n": int}``: ``loss`` is
        the head's training loss (label smoothing and bounded targets included), ``nll``
        and ``ece`` are measured on the head's probabilities (:meth:`Head.log_probs`,
        :mod:`leanbits.calibration`), the same way for every head.

    Example:
        >>> evaluate(model, head, splits.val.x, splits.val.y)  # doctest: +SKIP
        {'loss': 0.08, 'acc': 0.976, 'mean_abs_output': 7.1, 'n': 5000}
    """
    was_training = model.training
    model.eval()
    fired: dict[str, Tensor] = {}
    hooks = []
    if track_dead:
        for name, m in model.named_modules():
            if isinstance(m, nn.ReLU):
                def hook(_m, _inp, out, name=name):
                    act = out > 0
                    if act.ndim == 4:
                        act = act.any(dim=(2, 3))
                    f = act.any(dim=0)
                    fired[name] = f if name not in fired else fired[name] | f
                hooks.append(m.register_forward_hook(hook))
    total_loss, correct, abs_out, n = 0.0, 0, 0.0, 0
    calib = Calibration()
    try:
        for xb, yb in iterate_batches(x, y, batch_size):
            out = model(xb)
            total_loss += float(head.loss(out, yb)) * len(yb)
            calib.update(head.log_probs(out), yb)
            correct += int((head.predict(out) == yb).sum())
            abs_out += float(out.abs().mean(dim=1).sum())
            n += len(yb)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    if n == 0:
        return {"loss": math.nan, "acc": math.nan, "nll": math.nan, "ece": math.nan,
                "mean_abs_output": math.nan, "n": 0}
    result: dict[str, Any] = {"loss": total_loss / n, "acc": correct / n, "nll": calib.nll(),
                              "ece": calib.ece(), "mean_abs_output": abs_out / n, "n": n}
    if track_dead:
        result["dead_units"] = {k: int((~v).sum()) for k, v in fired.items()}
    return result


def evaluate_splits(
    model: nn.Module, head: Head, splits: Any, names: tuple[str, ...] = ("val", "test")
) -> dict[str, float]:
    """``{"<split>_acc", "<split>_loss", "<split>_nll", "<split>_ece"}`` for each named
    split that ``splits`` has.

    Args:
        splits: an object with ``val`` / ``test`` attributes (each with ``x`` and ``y``) or a
            mapping of them; missing splits are skipped.
    """
    out: dict[str, float] = {}
    for name in names:
        part = splits.get(name) if isinstance(splits, Mapping) else getattr(splits, name, None)
        if part is None:
            continue
        r = evaluate(model, head, part.x, part.y)
        for k in ("acc", "loss", "nll", "ece"):
            out[f"{name}_{k}"] = r[k]
    return out


@torch.no_grad()
def weight_diagnostics(model: nn.Module) -> dict[str, dict[str, float]]:
    """Per Linear/Conv layer: weight L2 norm, max |w|, fraction of exact zeros, count."""
    out = {}
    for name, m in weight_layers(model):
        w = m.weight
        out[name] = {
            "l2_norm": float(w.norm()),
            "max_abs": float(w.abs().max()),
            "zero_frac": float((w == 0).float().mean()),
            "numel": int(w.numel()),
        }
    return out


def cosine_factor(step: int, total: int) -> float:
    """Cosine decay of the learning rate: 1 at step 0, 0 at ``total`` and after."""
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


def step_factor(step: int, steps_per_epoch: int, step_size: int, gamma: float) -> float:
    """Step decay: ``gamma ** k`` after ``k * step_size`` epochs."""
    return gamma ** ((step // steps_per_epoch) // step_size)


def make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int,
                   start_epoch: int = 0) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The per-step learning-rate schedule ``cfg.schedule`` names (None for ``"none"``).

    ``start_epoch``: resume the schedule after that many epochs of it (the first step gets
    the rate step ``start_epoch * steps_per_epoch`` of the full run had), as rewinding does
    to finish a run's schedule from an early epoch.

    ``LambdaLR`` with the closed forms above rather than ``CosineAnnealingLR`` / ``StepLR``:
    those two update the rate recursively (``lr_t`` from ``lr_{t-1}``), which drifts from
    the closed form in the last bits (cosine: most steps of a 12-epoch MNIST run; step:
    from the second decay by 0.1 on) and so would change every trained weight.
    """
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "cosine":
        factor = functools.partial(cosine_factor, total=total)
    elif cfg.schedule == "step":
        factor = functools.partial(step_factor, steps_per_epoch=steps_per_epoch,
                                   step_size=cfg.step_size, gamma=cfg.gamma)
    else:
        return None
    if start_epoch:
        offset = start_epoch * steps_per_epoch
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor(step + offset))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class TrainResult:
    model: nn.Module
    plan: Plan
    head: Head
    history: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)
    out_dir: Path | None = None


class _ProgressBar(Hook):
    """A tqdm bar per epoch, advanced per step with the batch loss."""

    def __init__(self, steps_per_epoch: int) -> None:
        self.steps_per_epoch = steps_per_epoch
        self.bar: Any = None

    def after_step(self, state: FitState) -> None:
        if self.bar is None:
            self.bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {state.epoch}/{state.epochs}",
                            leave=False, unit="batch", file=sys.stderr)
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{state.loss.item():.4f}")

    def after_epoch(self, state: FitState) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class _EpochReport(Hook):
    """What :func:`train` records per epoch (see the module docstring).

    Running training accuracy (predictions gathered per step, compared once per epoch),
    validation with dead units, the training-subset evaluation, weight diagnostics, the
    ``metrics.jsonl`` line, early weights for rewinding, the log line - and a copy of the
    last completed epoch's weights to fall back on after a non-finite loss.
    """

    def __init__(self, head: Head, splits: Any, n_eval: int, cfg: TrainConfig,
                 out: Path | None, log: Callable[[str], None] | None,
                 save_early: Callable[[nn.Module], None]) -> None:
        self.head, self.splits, self.n_eval, self.cfg = head, splits, n_eval, cfg
        self.out, self.log, self.save_early = out, log, save_early
        self.preds: list[Tensor] = []
        self.targets: list[Tensor] = []
        self.last_good: dict[str, Tensor] = {}

    def on_start(self, state: FitState) -> None:
        self.last_good = copy.deepcopy(state.model.state_dict())

    def after_step(self, state: FitState) -> None:
        self.preds.append(self.head.predict(state.output.detach()))
        self.targets.append(state.target)

    def after_epoch(self, state: FitState) -> dict[str, Any]:
        model, head, splits = state.model, self.head, self.splits
        seen = sum(len(t) for t in self.targets)
        correct = int((torch.cat(self.preds) == torch.cat(self.targets)).sum()) if seen else 0
        self.preds, self.targets = [], []
        val = evaluate(model, head, splits.val.x, splits.val.y, track_dead=True)
        x, y = splits.train.x[: self.n_eval], splits.train.y[: self.n_eval]
        tr_eval = evaluate(model, head, x, y) if self.n_eval else {}
        record = {
            "train_acc": correct / seen if seen else math.nan,
            "train_eval_loss": tr_eval.get("loss"),
            "train_eval_acc": tr_eval.get("acc"),
            "val_loss": val["loss"],
            "val_acc": val["acc"],
            "gap_acc": (tr_eval["acc"] - val["acc"]) if tr_eval else None,
            "val_nll": val["nll"],
            "val_ece": val["ece"],
            "mean_abs_output": val["mean_abs_output"],
            "train_eval_mean_abs_output": tr_eval.get("mean_abs_output"),
            "layers": weight_diagnostics(model),
            "dead_units": val["dead_units"],
        }
        full = {**state.record, **record}
        self.last_good = copy.deepcopy(model.state_dict())
        if self.out is not None:
            with open(paths.metrics_log(self.out), "a", encoding="utf-8") as fh:
                fh.write(json.dumps(full) + "\n")
        if state.epoch == self.cfg.rewind_epoch:
            self.save_early(model)
        if self.log is not None:
            self.log(
                f"epoch {state.epoch}/{state.epochs}  train loss {full['train_loss']:.4f} "
                f"acc {full['train_acc']:.4f}  val loss {val['loss']:.4f} "
                f"acc {val['acc']:.4f}  |out| {val['mean_abs_output']:.2f}  "
                f"({full['epoch_time_s']:.1f}s)"
            )
        return record


def train(
    data_cfg: DataConfig,
    cfg: TrainConfig,
    splits: Any,
    out_dir: str | Path | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
    force: bool = False,
) -> TrainResult:
    """Train a model from scratch and (if ``out_dir``) write a snapshot.

    The loop is :func:`leanbits.loop.fit` with the regularizer as a hook (L2 penalty,
    proximal L1 / group steps) and the per-epoch diagnostics as another.

    Args:
        data_cfg: data settings (stored in the snapshot's config).
        cfg: the training settings.
        splits: object with ``train``/``val``/``test`` each having ``x`` and ``y`` tensors.
        out_dir: snapshot directory, built in ``OUT_DIR.partial`` (metrics.jsonl is
            appended there per epoch) and renamed into place at the end.
        progress: show a tqdm bar (default: when stderr is a terminal).
        log: called with one plain line per epoch (default: print to stderr when no bar).
        force: replace an existing snapshot in ``out_dir`` made from other settings.

    Returns:
        A :class:`TrainResult` with the trained model and its per-epoch history.

    Raises:
        TrainingError: the loss became NaN or infinite; the last good epoch's snapshot
            is kept in ``out_dir``.
        ConfigError: ``out_dir`` holds another snapshot (and not ``force``), or is not a
            snapshot directory (see :func:`leanbits.snapshot.check_output`).
    """
    x_train, y_train = splits.train.x, splits.train.y
    num_classes = getattr(splits, "num_classes", None) or 1 + int(
        max(int(splits.train.y.max()), int(splits.val.y.max()), int(splits.test.y.max()))
    )
    head = make_head(cfg, num_classes)
    plan = make_plan(cfg, tuple(x_train.shape[1:]), head.out_features)
    reg = Regularizer(l2=cfg.l2, l1=cfg.l1, group=cfg.group, group_kind=cfg.group_kind,
                      per_layer=parse_per_layer(cfg.per_layer))

    torch.manual_seed(cfg.seed)
    model = build(plan)
    reg.check_layers(model)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.momentum)
    steps_per_epoch = math.ceil(x_train.shape[0] / cfg.batch_size)
    sched = make_scheduler(cfg, opt, steps_per_epoch)
    n_eval = min(cfg.train_eval_size, x_train.shape[0])
    config_record = {"data": to_dict(data_cfg), "train": to_dict(cfg)}

    writer = (snapshot.SnapshotWriter(out_dir, config=config_record, force=force)
              if out_dir is not None else None)
    try:
        out = writer.path if writer is not None else None  # OUT_DIR.partial until commit()
        if out is not None:
            snapshot.write_toml(paths.config(out), config_record)
        if log is None:
            def log(line: str) -> None:
                print(line, file=sys.stderr, flush=True)

        def save_early(tag_model: nn.Module) -> None:
            if out is not None:
                snapshot.save_tensors(paths.early_weights(out), tag_model.state_dict())

        if cfg.rewind_epoch == 0:
            save_early(model)

        use_bar = sys.stderr.isatty() if progress is None else progress
        bar = _ProgressBar(steps_per_epoch) if use_bar else None
        report = _EpochReport(head, splits, n_eval, cfg, out, None if progress is True else log,
                              save_early)
        hooks = ([RegularizerHook(reg)] if reg.active else []) + ([bar] if bar else []) + [report]
        t_start = time.perf_counter()
        try:
            history = fit(model, model.parameters(), epoch_batches((x_train, y_train),
                          cfg.batch_size, generator=gen), head.loss, opt, hooks,
                          epochs=cfg.epochs, scheduler=sched).history
        except NonFiniteLoss as exc:
            if bar is not None:
                bar.close()
            model.load_state_dict(report.last_good)
            if writer is not None:
                snapshot.write(out, model, plan, head, config_record,
                               {"status": f"stopped at epoch {exc.epoch}: non-finite loss",
                                "epochs_completed": exc.epoch - 1}, None)
                writer.commit()
            kept = (f"; the last good snapshot (epoch {exc.epoch - 1}) is in {out_dir}"
                    if writer else "")
            raise TrainingError(
                f"loss became {exc.value} at epoch {exc.epoch}{kept}. "
                "Lower the learning rate (--lr) or the regularizer coefficients."
            ) from None

        test = evaluate(model, head, splits.test.x, splits.test.y)
        # The last epoch already evaluated this very model on validation: reuse it.
        val = evaluate(model, head, splits.val.x, splits.val.y) if not history else {
            "acc": history[-1]["val_acc"], "loss": history[-1]["val_loss"],
            "nll": history[-1]["val_nll"], "ece": history[-1]["val_ece"],
            "mean_abs_output": history[-1]["mean_abs_output"]}
        final = {
            "status": "complete",
            "epochs_completed": cfg.epochs,
            "val_acc": val["acc"],
            "val_loss": val["loss"],
            "test_acc": test["acc"],
            "test_loss": test["loss"],
            "val_nll": val["nll"],
            "val_ece": val["ece"],
            "test_nll": test["nll"],
            "test_ece": test["ece"],
            "mean_abs_output": val["mean_abs_output"],
            "params": sum(p.numel() for p in model.parameters()),
            "weights": sum(m.weight.numel() for _, m in weight_layers(model)),
            "nonzero_weights": sum(int((m.weight != 0).sum()) for _, m in weight_layers(model)),
            "train_time_s": time.perf_counter() - t_start,
        }
        if writer is not None:
            snapshot.write(out, model, plan, head, config_record, final, None)
            writer.commit()
    except BaseException:
        # Interrupted, failed or out of disk: leave no OUT_DIR.partial behind (a no-op once
        # committed, as after a non-finite loss).
        if writer is not None:
            writer.abort()
        raise
    return TrainResult(model, plan, head, history, final,
                       Path(out_dir) if out_dir is not None else None)
