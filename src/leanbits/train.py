"""Training loop, evaluation and the per-epoch diagnostics the paper's claims need.

Per epoch, :func:`train` appends one JSON object to ``metrics.jsonl``: train loss and
accuracy (running over the epoch, and in eval mode on a fixed training subset), validation
loss and accuracy, and per-layer diagnostics - weight L2 norm, max |w|, fraction of weights
that are exactly zero, units that never fire on the validation set - plus the mean |output|
(logit or LLR magnitude), which claim 1 of the paper is about.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from leanbits import paths
from leanbits.config import MAX_SEED, option, stage_hash, to_dict
from leanbits.errors import ConfigError, TrainingError
from leanbits.heads import HEADS, Head
from leanbits.models import MAX_WIDTH, PRESETS, Plan, build, preset
from leanbits.regularize import Regularizer, prunable_layers


@dataclass(frozen=True)
class DataConfig:
    """Which data, and how the validation set is carved from the training set."""

    dataset: str = option("mnist", "data set", choices=("mnist", "fashion-mnist"))
    val_size: int = option(5000, "validation examples carved from the training set", minimum=1)
    split_seed: int = option(0, "seed of the train/validation split", minimum=0,
                             maximum=MAX_SEED)
    limit_train: int | None = option(None, "use only this many training examples", minimum=1)


@dataclass(frozen=True)
class TrainConfig:
    """Model, output head, regularizers and optimizer for ``leanbits train``."""

    model: str = option("lenet-300-100", "architecture preset", choices=PRESETS)
    fc: tuple[int, ...] | None = option(None, "override hidden FC widths, e.g. 300,100",
                                        minimum=1, maximum=MAX_WIDTH)
    conv: tuple[int, ...] | None = option(None, "override conv channels, e.g. 20,50",
                                          minimum=1, maximum=MAX_WIDTH)
    head: str = option("llr", "output head", choices=HEADS)
    llr_target: float | None = option(
        None, "bound A on LLR targets (+-A instead of +-inf); LLR heads only", minimum=1e-6
    )
    code: str | None = option(
        None, "llr-code: JSON file with a K x M 0/1 code matrix (default: binary code)"
    )
    optimizer: str = option("sgd", "optimizer", choices=("sgd", "adam"))
    lr: float = option(0.05, "learning rate", minimum=0.0)
    momentum: float = option(0.9, "SGD momentum", minimum=0.0, maximum=1.0)
    schedule: str = option("cosine", "learning-rate schedule", choices=("none", "step", "cosine"))
    step_size: int = option(10, "step schedule: epochs between decays", minimum=1)
    gamma: float = option(0.1, "step schedule: decay factor", minimum=0.0, maximum=1.0)
    batch_size: int = option(128, "minibatch size", minimum=1)
    epochs: int = option(5, "passes over the training set", minimum=0)
    seed: int = option(1, "seed of initialisation and shuffling", minimum=0, maximum=MAX_SEED)
    l2: float = option(0.0, "L2 weight decay coefficient", minimum=0.0)
    l1: float = option(0.0, "L1 coefficient (proximal: gives exact zeros)", minimum=0.0)
    group: float = option(0.0, "group-lasso coefficient (proximal, whole units)", minimum=0.0)
    group_kind: str = option("neurons", "groups for group lasso", choices=("neurons", "out"))
    per_layer: str | None = option(
        None, "per-layer overrides, e.g. 'fc1.l1=1e-4,out.l2=0'"
    )
    rewind_epoch: int = option(1, "save weights after this epoch for rewinding (0 = init)",
                               minimum=0)
    train_eval_size: int = option(
        5000, "training examples evaluated in eval mode each epoch (overfitting gap)", minimum=0
    )


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
    return Head(cfg.head, num_classes, cfg.llr_target, code)


def run_name(data: DataConfig, cfg: TrainConfig) -> str:
    """Directory name derived from the config: model, head and a hash of the settings."""
    return f"{cfg.model}-{cfg.head}-{stage_hash(data, cfg)}"


def iterate_batches(
    x: Tensor, y: Tensor, batch_size: int, generator: torch.Generator | None = None
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(xb, yb)`` minibatches; shuffled when a generator is given."""
    n = x.shape[0]
    order = torch.randperm(n, generator=generator) if generator is not None else None
    for start in range(0, n, batch_size):
        if order is not None:
            idx = order[start : start + batch_size]
            yield x[idx], y[idx]
        else:
            yield x[start : start + batch_size], y[start : start + batch_size]


@torch.inference_mode()
def evaluate(
    model: nn.Module, head: Head, x: Tensor, y: Tensor, batch_size: int = 1000,
    track_dead: bool = False,
) -> dict[str, Any]:
    """Loss (the head's), accuracy and mean |output| of ``model`` on ``(x, y)``.

    Args:
        track_dead: also count, per ReLU module, the units (conv channels) that never fire
            on ``x`` (key ``dead_units``), in the same pass.

    Returns:
        ``{"loss": float, "acc": float, "mean_abs_output": float, "n": int}``.

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
    try:
        for xb, yb in iterate_batches(x, y, batch_size):
            out = model(xb)
            total_loss += float(head.loss(out, yb)) * len(yb)
            correct += int((head.predict(out) == yb).sum())
            abs_out += float(out.abs().mean(dim=1).sum())
            n += len(yb)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    if n == 0:
        return {"loss": math.nan, "acc": math.nan, "mean_abs_output": math.nan, "n": 0}
    result: dict[str, Any] = {"loss": total_loss / n, "acc": correct / n,
                              "mean_abs_output": abs_out / n, "n": n}
    if track_dead:
        result["dead_units"] = {k: int((~v).sum()) for k, v in fired.items()}
    return result


def evaluate_splits(
    model: nn.Module, head: Head, splits: Any, names: tuple[str, ...] = ("val", "test")
) -> dict[str, float]:
    """``{"<split>_acc", "<split>_loss"}`` for each named split that ``splits`` has.

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
        out[f"{name}_acc"], out[f"{name}_loss"] = r["acc"], r["loss"]
    return out


@torch.no_grad()
def weight_diagnostics(model: nn.Module) -> dict[str, dict[str, float]]:
    """Per Linear/Conv layer: weight L2 norm, max |w|, fraction of exact zeros, count."""
    out = {}
    for name, m in prunable_layers(model):
        w = m.weight
        out[name] = {
            "l2_norm": float(w.norm()),
            "max_abs": float(w.abs().max()),
            "zero_frac": float((w == 0).float().mean()),
            "numel": int(w.numel()),
        }
    return out


def _lr_lambda(cfg: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "cosine":
        return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    if cfg.schedule == "step":
        return lambda step: cfg.gamma ** ((step // steps_per_epoch) // cfg.step_size)
    return lambda step: 1.0


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)


@dataclass
class TrainResult:
    model: nn.Module
    plan: Plan
    head: Head
    history: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)
    out_dir: Path | None = None


def _progress(enabled: bool | None, total: int, desc: str):
    use_bar = sys.stderr.isatty() if enabled is None else enabled
    if not use_bar:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, unit="batch", file=sys.stderr)


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
    from leanbits import snapshot

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
    opt = make_optimizer(cfg, model.parameters())
    steps_per_epoch = math.ceil(x_train.shape[0] / cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg, steps_per_epoch))
    n_eval = min(cfg.train_eval_size, x_train.shape[0])
    config_record = {"data": to_dict(data_cfg), "train": to_dict(cfg)}

    writer = (snapshot.SnapshotWriter(out_dir, config=config_record, force=force)
              if out_dir is not None else None)
    out = writer.path if writer is not None else None  # OUT_DIR.partial until commit()
    if out is not None:
        snapshot.write_toml(paths.config(out), config_record)
    if log is None:
        def log(line: str) -> None:
            print(line, file=sys.stderr, flush=True)

    def save_early(tag_model: nn.Module) -> None:
        if out is not None:
            snapshot._save_tensors(paths.early_weights(out), tag_model.state_dict())

    if cfg.rewind_epoch == 0:
        save_early(model)

    history: list[dict[str, Any]] = []
    last_good = copy.deepcopy(model.state_dict())
    t_start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        run_loss, run_correct, seen = 0.0, 0, 0
        bar = _progress(progress, steps_per_epoch, f"epoch {epoch}/{cfg.epochs}")
        for xb, yb in iterate_batches(x_train, y_train, cfg.batch_size, gen):
            out_b = model(xb)
            loss = head.loss(out_b, yb)
            if reg.l2 or reg.per_layer:
                loss_total = loss + reg.penalty(model)
            else:
                loss_total = loss
            if not torch.isfinite(loss_total):
                if bar is not None:
                    bar.close()
                model.load_state_dict(last_good)
                if writer is not None:
                    snapshot.write(out, model, plan, head, config_record,
                                   {"status": f"stopped at epoch {epoch}: non-finite loss",
                                    "epochs_completed": epoch - 1}, None)
                    writer.commit()
                kept = (f"; the last good snapshot (epoch {epoch - 1}) is in {out_dir}"
                        if writer else "")
                raise TrainingError(
                    f"loss became {loss_total.item()} at epoch {epoch}{kept}. "
                    "Lower the learning rate (--lr) or the regularizer coefficients."
                )
            opt.zero_grad(set_to_none=True)
            loss_total.backward()
            opt.step()
            if reg.needs_prox:
                reg.prox_(model, lr=opt.param_groups[0]["lr"])
            sched.step()
            run_loss += loss.item() * len(yb)
            run_correct += int((head.predict(out_b.detach()) == yb).sum())
            seen += len(yb)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4f}")
        if bar is not None:
            bar.close()
        epoch_time = time.perf_counter() - t0
        val = evaluate(model, head, splits.val.x, splits.val.y, track_dead=True)
        tr_eval = evaluate(model, head, x_train[:n_eval], y_train[:n_eval]) if n_eval else {}
        record = {
            "epoch": epoch,
            "lr": opt.param_groups[0]["lr"],
            "train_loss": run_loss / seen,
            "train_acc": run_correct / seen,
            "train_eval_loss": tr_eval.get("loss"),
            "train_eval_acc": tr_eval.get("acc"),
            "val_loss": val["loss"],
            "val_acc": val["acc"],
            "gap_acc": (tr_eval["acc"] - val["acc"]) if tr_eval else None,
            "mean_abs_output": val["mean_abs_output"],
            "layers": weight_diagnostics(model),
            "dead_units": val["dead_units"],
            "epoch_time_s": epoch_time,
        }
        history.append(record)
        last_good = copy.deepcopy(model.state_dict())
        if out is not None:
            with open(paths.metrics_log(out), "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
        if epoch == cfg.rewind_epoch:
            save_early(model)
        if progress is not True:
            log(
                f"epoch {epoch}/{cfg.epochs}  train loss {record['train_loss']:.4f} "
                f"acc {record['train_acc']:.4f}  val loss {val['loss']:.4f} "
                f"acc {val['acc']:.4f}  |out| {val['mean_abs_output']:.2f}  "
                f"({epoch_time:.1f}s)"
            )

    test = evaluate(model, head, splits.test.x, splits.test.y)
    # The last epoch already evaluated this very model on validation: reuse it.
    val = evaluate(model, head, splits.val.x, splits.val.y) if not history else {
        "acc": history[-1]["val_acc"], "loss": history[-1]["val_loss"],
        "mean_abs_output": history[-1]["mean_abs_output"]}
    final = {
        "status": "complete",
        "epochs_completed": cfg.epochs,
        "val_acc": val["acc"],
        "val_loss": val["loss"],
        "test_acc": test["acc"],
        "test_loss": test["loss"],
        "mean_abs_output": val["mean_abs_output"],
        "params": sum(p.numel() for p in model.parameters()),
        "weights": sum(m.weight.numel() for _, m in prunable_layers(model)),
        "nonzero_weights": sum(int((m.weight != 0).sum()) for _, m in prunable_layers(model)),
        "train_time_s": time.perf_counter() - t_start,
    }
    if writer is not None:
        snapshot.write(out, model, plan, head, config_record, final, None)
        writer.commit()
    return TrainResult(model, plan, head, history, final,
                       Path(out_dir) if out_dir is not None else None)
