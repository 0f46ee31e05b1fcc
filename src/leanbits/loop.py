"""The one training loop: :func:`fit` with hooks, its batcher and its optimizer builder.

Every place that trains by backpropagation - :func:`leanbits.train.train`, the non-weight
re-fit, masked fine-tuning, iterative pruning, rewinding and the compression methods built
on them - runs :func:`fit`. The loop owns what they all share: seeding (in a forked RNG
when asked, so the caller's random state is untouched), freezing everything but the
parameters being trained, the step sequence (forward, loss, extra losses, non-finite
check, backward, optimizer step, scheduler step) and the per-epoch record. What differs
between methods is a :class:`Hook`: penalties add to the loss, masks zero gradients and
re-apply themselves after a step, proximal steps shrink weights, evaluation and logging
run after each epoch.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from leanbits.errors import ConfigError, TrainingError
from leanbits.fileio import atomic_path
from leanbits.settings.train import OPTIMIZERS, SGD_MOMENTUM

Batches = Callable[[int], Iterable[tuple[Tensor, Tensor]]]
DataLike = tuple[Tensor, Tensor] | Iterable[tuple[Tensor, Tensor]]


@dataclass
class FitState:
    """What hooks see; :func:`fit` updates it in place as training goes.

    Attributes:
        model: the model being trained.
        optimizer: its optimizer (``param_groups[0]["lr"]`` is the current step size).
        epochs: the number of epochs asked for.
        epoch: the current epoch, 1-based (0 before the first).
        step: optimizer steps done so far, over all epochs.
        output: the last batch's model output (with its graph until ``backward``).
        target: the last batch's targets.
        loss: the last batch's *data* loss (without :meth:`Hook.extra_loss` terms).
        record: the current epoch's record while :meth:`Hook.after_epoch` hooks run: fit's
            own fields (``epoch``, ``lr``, ``train_loss``, ``epoch_time_s``) and
            the dicts of the hooks that ran before.
        stop: set by a hook to end training after the current epoch.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    epochs: int
    epoch: int = 0
    step: int = 0
    output: Tensor | None = None
    target: Tensor | None = None
    loss: Tensor | None = None
    record: dict[str, Any] = field(default_factory=dict)
    stop: bool = False


class Hook:
    """Base class of training hooks: every method is a no-op; override what you need.

    Hooks run in the order they are given to :func:`fit`. Only overridden methods are
    called, so a hook costs nothing at the steps it does not care about.
    """

    def on_start(self, state: FitState) -> None:
        """Before the first epoch (parameters are already frozen / unfrozen)."""

    def extra_loss(self, state: FitState) -> Tensor | None:
        """A term added to the data loss before ``backward`` (L2, KL, rate penalties)."""
        return None

    def after_backward(self, state: FitState) -> None:
        """After ``backward``, before the optimizer step (e.g. zero pruned gradients)."""

    def after_step(self, state: FitState) -> None:
        """After the optimizer step, before the scheduler's (re-mask, proximal steps)."""

    def after_epoch(self, state: FitState) -> dict[str, Any] | None:
        """After each epoch (evaluation, diagnostics); a dict is merged into its record."""
        return None


@dataclass
class FitResult:
    """What :func:`fit` did: one record per epoch, optimizer steps, wall time."""

    history: list[dict[str, Any]]
    steps: int
    wall_time_s: float


class NonFiniteLoss(TrainingError):
    """The loss became NaN or infinite; ``epoch``, ``step`` and ``value`` say where."""

    def __init__(self, value: float, epoch: int, step: int) -> None:
        super().__init__(f"loss became {value} at epoch {epoch}, step {step}")
        self.value, self.epoch, self.step = value, epoch, step


#: what a damaged or forged checkpoint can raise while it is read or applied
_UNUSABLE = (OSError, SafetensorError, ValueError, KeyError, TypeError, RuntimeError,
             AttributeError, IndexError)


class EpochCheckpoint:
    """Where :func:`fit` keeps its state after every ``every``-th epoch, so that a long
    training killed part-way resumes from its last saved epoch and ends bit-exactly as an
    uninterrupted one would (on the same machine and thread count).

    The file (safetensors, written atomically) holds the model's state dict, the
    optimizer's and scheduler's states, the global torch RNG state, the epoch, the step
    count, the history so far and ``key``. A file whose ``key`` differs, that cannot be
    read, or that does not fit the model is ignored and training starts from epoch 1.
    Batch orders of the skipped epochs are drawn again (and thrown away), so a seeded
    :func:`epoch_batches` continues its order. State that a hook keeps by itself across
    epochs (rather than reading it from the model, ``step`` or ``epoch``) is not saved:
    use it with hooks that keep none, such as masks, penalties and the KL warm-up.

    Args:
        path: the checkpoint file.
        key: what the training is (settings, data, start): a file made for another
            training is not resumed.
        every: save after every ``every``-th epoch and after the last.
    """

    def __init__(self, path: str | os.PathLike[str], key: str = "", every: int = 1) -> None:
        if every < 1:
            raise ConfigError(f"checkpoint interval must be >= 1 epoch, got {every}")
        self.path, self.key, self.every = Path(path), str(key), int(every)

    def save(self, state: FitState, scheduler: Any, history: list[dict[str, Any]]) -> None:
        tensors = {f"model/{k}": v.detach().cpu().contiguous()
                   for k, v in state.model.state_dict().items()}
        opt = state.optimizer.state_dict()
        meta_state: dict[str, dict[str, Any]] = {}
        for idx, entry in opt["state"].items():
            for name, value in entry.items():
                if isinstance(value, Tensor):
                    tensors[f"optim/{idx}/{name}"] = value.detach().cpu().contiguous()
                else:
                    meta_state.setdefault(str(idx), {})[name] = value
        tensors["rng/torch"] = torch.get_rng_state()
        meta = {
            "key": self.key, "epoch": state.epoch, "step": state.step, "stop": state.stop,
            "history": history, "param_groups": opt["param_groups"],
            "optim_scalars": meta_state,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
        }
        try:
            text = json.dumps(meta)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"this training's state cannot be checkpointed: {exc}") from None
        with atomic_path(self.path) as tmp:
            save_file(tensors, str(tmp), metadata={"leanbits_fit": text})

    def load(self, state: FitState, scheduler: Any) -> tuple[int, int, list[dict[str, Any]],
                                                             Tensor, bool] | None:
        """Restore model, optimizer and scheduler from the file; ``(epoch, step, history,
        rng state, stopped by a hook)``, or None (nothing restored) when there is no usable
        checkpoint."""
        if not self.path.is_file():
            return None
        try:
            with safe_open(str(self.path), framework="pt") as f:
                meta = json.loads((f.metadata() or {}).get("leanbits_fit", "null"))
            if not isinstance(meta, dict) or meta.get("key") != self.key:
                return None
            tensors = load_file(str(self.path))
            model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model/")}
            own = state.model.state_dict()
            if set(model_state) != set(own) or any(
                    model_state[k].shape != own[k].shape for k in own):
                return None
            opt_state: dict[int, dict[str, Any]] = {}
            for name, value in tensors.items():
                if name.startswith("optim/"):
                    _, idx, field_name = name.split("/", 2)
                    opt_state.setdefault(int(idx), {})[field_name] = value
            for idx, scalars in meta["optim_scalars"].items():
                opt_state.setdefault(int(idx), {}).update(scalars)
            epoch, step = int(meta["epoch"]), int(meta["step"])
            history = list(meta["history"])
            rng = tensors["rng/torch"]
            if not 0 < epoch <= state.epochs or step < 0 or len(history) != epoch:
                return None
            stopped = bool(meta.get("stop", False))
            param_groups, sched_state = meta["param_groups"], meta["scheduler"]
        except _UNUSABLE:
            return None  # damaged or foreign: train from the start
        # applied as a whole or not at all: a state that fails half-way is rolled back
        before = ({k: v.clone() for k, v in own.items()},
                  copy.deepcopy(state.optimizer.state_dict()),
                  scheduler.state_dict() if scheduler is not None else None)
        try:
            with torch.no_grad():
                state.model.load_state_dict(model_state)
            state.optimizer.load_state_dict({"state": opt_state,
                                             "param_groups": param_groups})
            if scheduler is not None and sched_state is not None:
                scheduler.load_state_dict(sched_state)
        except _UNUSABLE:
            with torch.no_grad():
                state.model.load_state_dict(before[0])
            state.optimizer.load_state_dict(before[1])
            if scheduler is not None:
                scheduler.load_state_dict(before[2])
            return None
        return epoch, step, history, rng, stopped


def _overrides(hooks: Sequence[Hook], name: str) -> list[Callable[..., Any]]:
    """Bound ``name`` methods of the hooks that override :class:`Hook`'s no-op."""
    base = getattr(Hook, name)
    return [getattr(h, name) for h in hooks if getattr(type(h), name) is not base]


def fit(
    model: nn.Module,
    params: Iterable[nn.Parameter],
    batches: Batches,
    loss: Callable[[Tensor, Tensor], Tensor],
    optimizer: torch.optim.Optimizer,
    hooks: Sequence[Hook] = (),
    *,
    epochs: int,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    seed: int | None = None,
    checkpoint: EpochCheckpoint | None = None,
) -> FitResult:
    """Train ``params`` of ``model`` in place: the one training loop of leanbits.

    Each step: ``output = model(x)``; ``data = loss(output, y)``; ``total = data +`` every
    hook's :meth:`~Hook.extra_loss`; stop on a non-finite ``total``; ``zero_grad``;
    ``total.backward()``; :meth:`~Hook.after_backward` hooks; ``optimizer.step()``;
    :meth:`~Hook.after_step` hooks; ``scheduler.step()``. After each epoch its record
    ``{"epoch", "lr", "train_loss" (mean data loss over the epoch's examples),
    "epoch_time_s"}`` is extended by the :meth:`~Hook.after_epoch` hooks' dicts, in order.

    Every other parameter of ``model`` is frozen for the duration (``requires_grad``
    flags are restored afterwards, as is train/eval mode); the model is in train mode
    while it trains. The gradients of ``params`` are cleared at the end.

    Args:
        model: the module to train.
        params: the parameters that train (all of ``model``'s: ``model.parameters()``).
        batches: ``batches(epoch)`` gives that epoch's ``(x, y)`` minibatches (epoch is
            1-based), e.g. :func:`epoch_batches`.
        loss: ``loss(output, target) -> scalar`` data loss, e.g. ``head.loss``.
        optimizer: built over (a subset of) ``params``, e.g. by :func:`make_optimizer`.
        hooks: :class:`Hook` objects, called in this order.
        epochs: passes to run (fewer if a hook sets ``state.stop``).
        scheduler: a ``torch.optim.lr_scheduler`` object, stepped after every optimizer step.
        seed: when given, training runs in a forked global RNG seeded with it (the
            caller's random state is left as it was); when None the global RNG is used
            as it is.
        checkpoint: save the training's state after epochs, and resume from a saved one
            (:class:`EpochCheckpoint`): an interrupted fit given the same checkpoint
            continues where it stopped, and its history holds every epoch.

    Returns:
        A :class:`FitResult`.

    Raises:
        NonFiniteLoss: (a :class:`TrainingError`) the loss became NaN or infinite; the
            parameters are left as they were after the last good step - callers restore
            their last good state.
        ConfigError: negative ``epochs``, no parameters, or parameters not in ``model``.

    Example:
        >>> opt = make_optimizer("adam", model.parameters(), lr=1e-3)  # doctest: +SKIP
        >>> fit(model, model.parameters(), epoch_batches((x, y), 128, seed=0), head.loss,
        ...     opt, epochs=2).history[-1]["train_loss"]  # doctest: +SKIP
        0.21
    """
    params = list(params)
    _check_fit(model, params, epochs)
    state = FitState(model=model, optimizer=optimizer, epochs=epochs)
    extra = _overrides(hooks, "extra_loss")
    after_backward = _overrides(hooks, "after_backward")
    after_step = _overrides(hooks, "after_step")
    after_epoch = _overrides(hooks, "after_epoch")
    train_ids = {id(p) for p in params}
    flags = [(p, p.requires_grad) for p in model.parameters()]
    was_training = model.training
    history: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    fork = torch.random.fork_rng(devices=[]) if seed is not None else nullcontext()
    try:
        with fork:
            if seed is not None:
                torch.manual_seed(seed)
            for p, _ in flags:
                p.requires_grad_(id(p) in train_ids)
            start, last = 0, epochs
            saved = checkpoint.load(state, scheduler) if checkpoint is not None else None
            if saved is not None:
                start, state.step, history, rng, stopped = saved
                state.epoch = start
                if stopped:  # a hook had ended the training there
                    last = start
                for skipped in range(1, start + 1):  # draw the skipped epochs' orders
                    next(iter(batches(skipped)), None)
                torch.set_rng_state(rng)
            for h in _overrides(hooks, "on_start"):
                h(state)
            for epoch in range(start + 1, last + 1):
                state.epoch = epoch
                model.train()
                t0 = time.perf_counter()
                loss_sum, seen = 0.0, 0
                for xb, yb in batches(epoch):
                    output = model(xb)
                    data_loss = loss(output, yb)
                    state.output, state.target, state.loss = output, yb, data_loss
                    total = data_loss
                    for h in extra:
                        term = h(state)
                        if term is not None:
                            total = total + term
                    # One host read per step serves both the check and the epoch's mean
                    # loss: on CPU a Python float is cheaper than any tensor op (measured:
                    # accumulating on a tensor cost more per step than .item()).
                    value = total.item()
                    if not math.isfinite(value):
                        raise NonFiniteLoss(value, epoch, state.step + 1)
                    optimizer.zero_grad(set_to_none=True)
                    total.backward()
                    for h in after_backward:
                        h(state)
                    optimizer.step()
                    state.step += 1
                    for h in after_step:
                        h(state)
                    if scheduler is not None:
                        scheduler.step()
                    n = len(yb)
                    loss_sum += (value if total is data_loss else data_loss.item()) * n
                    seen += n
                state.record = {
                    "epoch": epoch,
                    "lr": optimizer.param_groups[0]["lr"],
                    "train_loss": loss_sum / seen if seen else math.nan,
                    "epoch_time_s": time.perf_counter() - t0,
                }
                for h in after_epoch:
                    more = h(state)
                    if more:
                        state.record.update(more)
                history.append(state.record)
                if checkpoint is not None and (epoch % checkpoint.every == 0
                                               or epoch == epochs or state.stop):
                    checkpoint.save(state, scheduler, history)
                if state.stop:
                    break
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for p in params:
            p.grad = None
        model.train(was_training)
        state.output = state.target = state.loss = None
    return FitResult(history, state.step, time.perf_counter() - t_start)


def _check_fit(model: nn.Module, params: list[nn.Parameter], epochs: int) -> None:
    if epochs < 0:
        raise ConfigError(f"epochs must be >= 0, got {epochs}")
    if not params:
        raise ConfigError("nothing to train: no parameters given")
    own = {id(p) for p in model.parameters()}
    if any(id(p) not in own for p in params):
        raise ConfigError("every parameter to train must belong to the model")


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


def epoch_batches(data: DataLike, batch_size: int, seed: int | None = None,
                  generator: torch.Generator | None = None) -> Batches:
    """The ``batches`` argument of :func:`fit` for tensors or for a ready-made loader.

    Args:
        data: ``(x, y)`` tensors, or an iterable of ``(x, y)`` batches (e.g. a DataLoader),
            which is then iterated once per epoch as it is.
        batch_size: minibatch size for tensor data.
        seed: shuffle tensor data with one generator seeded with this, drawn from epoch
            after epoch (so epoch 2's order follows epoch 1's); None with no ``generator``
            keeps the data's order.
        generator: shuffle with this generator instead of a fresh seeded one.

    Returns:
        ``batches(epoch) -> iterator of (x, y)``.
    """
    if isinstance(data, tuple | list) and len(data) == 2 and isinstance(data[0], Tensor):
        x, y = data
        gen = generator
        if gen is None and seed is not None:
            gen = torch.Generator().manual_seed(seed)
        return lambda _epoch: iterate_batches(x, y, batch_size, gen)
    return lambda _epoch: data


def make_optimizer(name: str, params: Iterable[nn.Parameter], lr: float,
                   momentum: float = SGD_MOMENTUM) -> torch.optim.Optimizer:
    """``"sgd"`` (with ``momentum``) or ``"adam"`` over ``params`` with step size ``lr``.

    Raises:
        ConfigError: an optimizer name not in :data:`OPTIMIZERS`.
    """
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum)
    raise ConfigError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")


__all__ = [
    "OPTIMIZERS",
    "SGD_MOMENTUM",
    "EpochCheckpoint",
    "FitResult",
    "FitState",
    "Hook",
    "NonFiniteLoss",
    "epoch_batches",
    "fit",
    "iterate_batches",
    "make_optimizer",
]
