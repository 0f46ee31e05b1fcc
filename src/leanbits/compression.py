"""Compression to a required accuracy: the search behind ``leanbits compress`` and
:func:`leanbits.compress`.

A *recipe* is the pruning methods to try (any ``leanbits prune --method``, with their
:class:`~leanbits.prune.PruneConfig` settings) and a grid of quantizer settings (bits,
quantizer, non-weight storage, epochs of codebook fine-tuning). For each method the
sparsity is bisected by the validation accuracy of the model as it would be decoded from
a file with the gentlest quantizer setting of the grid; then, for the sparsest levels that
met the requirement, every quantizer setting of the grid is encoded and scored on
validation. The smallest file
whose validation accuracy meets the requirement wins. The test split is read once, after
the choice, to report the decoded file's test accuracy: nothing in the search can see it.

Every method run and every scored candidate is stored in a work directory (by default
``OUTPUT.partial/``) under a hash of everything that determines it, so an interrupted search
resumes where it stopped and a finished one is not repeated. ``budget`` caps the backprop
epochs of all method runs and codebook fine-tuning together (cached ones count too, so a
resumed search makes the same choices as an uninterrupted one).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import math
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm import tqdm

from leanbits import paths, snapshot
from leanbits.bits.account import Account
from leanbits.bits.container import INDEX_CHOICES, encode, unpack
from leanbits.bits.finetune import codebooks_of, finetune_codebook
from leanbits.bits.records import DTYPES, QUANT_CODES
from leanbits.config import make, option, to_dict
from leanbits.data import snapshot_data
from leanbits.errors import ConfigError, PruneError
from leanbits.fileio import (
    atomic_path,
    check_output_file,
    exclusive_lock,
    write_bytes_atomic,
    write_text_atomic,
)
from leanbits.heads import Head
from leanbits.models import Plan
from leanbits.models.layers import weight_layers
from leanbits.prune import REGISTRY, PruneConfig, run_method
from leanbits.prune.baselines import OWN_SPARSITY
from leanbits.prune.magnitude import LayerEmptiedError
from leanbits.prune.search import search_sparsity

Loss = Callable[[Tensor, Tensor], Tensor]

#: suffix of the default work directory next to the output file
WORK_SUFFIX = ".partial"


@dataclass(frozen=True)
class CompressConfig(PruneConfig):
    """A compression recipe: pruning methods (with every :class:`~leanbits.prune.PruneConfig`
    setting they use: epochs, learning rates, seed, ...), the quantizer grid, the sparsity
    bracket, the requirement and the epoch budget. ``method`` and ``sparsity`` are chosen
    by the search, so they must stay at their defaults."""

    methods: tuple[str, ...] = option(("finetune",), "pruning methods searched, each a "
                                      "`leanbits prune --method` name")
    bits: tuple[int, ...] = option((2, 3, 4, 5), "bit widths tried for the weights",
                                   minimum=1, maximum=16)
    quants: tuple[str, ...] = option(("kmeans", "ecsq"), "weight quantizers tried",
                                     choices=QUANT_CODES)
    rate_lambdas: tuple[float, ...] = option(
        (0.02,), "quantizer ecsq: rate weights tried (relative squared error per coded bit)",
        minimum=0.0)
    nonweight_dtypes: tuple[str, ...] = option(("float16", "int8"), "storage precisions "
                                               "tried for biases and other non-weights",
                                               choices=DTYPES)
    index: str = option("auto", "position index of the file", choices=INDEX_CHOICES)
    codebook_epochs: tuple[int, ...] = option(
        (0, 1), "epochs of codebook fine-tuning tried for each quantizer setting (codes and "
        "masks fixed, codebook entries and non-weights trained; 0 = off)", minimum=0)
    codebook_lr: float = option(1e-4, "Adam learning rate of codebook fine-tuning",
                                minimum=0.0)
    search_lo: float = option(0.5, "lowest sparsity tried", minimum=0.0, maximum=0.999999)
    search_hi: float = option(0.995, "highest sparsity tried", minimum=0.0, maximum=0.999999)
    search_tol: float = option(0.005, "stop bisecting when the bracket is this narrow",
                               minimum=1e-6)
    levels: int = option(2, "sparsity levels (the sparsest that met the requirement) whose "
                         "whole quantizer grid is scored", minimum=1)
    budget: int = option(100, "backprop epochs at most for all method runs and codebook "
                         "fine-tuning together", minimum=0)

    def prune_config(self) -> PruneConfig:
        """The methods' shared settings as a :class:`~leanbits.prune.PruneConfig`.

        Raises:
            ConfigError: ``method`` or ``sparsity`` is set (the search chooses them).
        """
        values = to_dict(self)
        default = to_dict(CompressConfig())
        fixed = [k for k in ("method", "sparsity") if values[k] != default[k]]
        if fixed:
            raise ConfigError(f"compress chooses {' and '.join(fixed)} itself; give methods "
                              "(and search_lo / search_hi) instead")
        names = {f.name for f in dataclasses.fields(PruneConfig)}
        return make(PruneConfig, {k: v for k, v in values.items() if k in names})


@dataclass
class Candidate:
    """One scored setting: a pruned level encoded with one quantizer setting.

    ``sparsity`` is the level asked of the method (0 for a method that finds its own,
    such as ``sparse-vd``); ``nonzero`` is what the file stores.
    """

    method: str
    sparsity: float
    settings: dict[str, Any]
    total_bits: int
    val_acc: float
    nonzero: int

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "sparsity": self.sparsity, "settings": self.settings,
                "total_bits": self.total_bits, "val_acc": self.val_acc,
                "nonzero": self.nonzero}


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


# ------------------------------------------------------------------------- checks


def check_target(max_drop: Any = None, target_accuracy: Any = None) -> tuple[str, float]:
    """Validate the requirement: exactly one of ``max_drop`` and ``target_accuracy``.

    Returns:
        ``("max_drop", value)`` or ``("target_accuracy", value)``.

    Raises:
        ConfigError: both or neither given, not a number, a drop outside [0, 1] or an
            accuracy outside [0, 1].

    Example:
        >>> check_target(max_drop=0.002)
        ('max_drop', 0.002)
    """
    if (max_drop is None) == (target_accuracy is None):
        raise ConfigError("give exactly one of --max-drop (allowed loss of validation "
                          "accuracy) or --target-accuracy (required validation accuracy)")
    name, value = (("max_drop", max_drop) if max_drop is not None
                   else ("target_accuracy", target_accuracy))
    flag = "--" + name.replace("_", "-")
    try:
        if isinstance(value, bool):
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{flag} must be a number, got {value!r}") from None
    if not (math.isfinite(number) and 0.0 <= number <= 1.0):
        what = "an accuracy drop" if name == "max_drop" else "an accuracy"
        raise ConfigError(f"{flag} is {what} from 0 to 1 (a fraction, not a percentage), "
                          f"got {value}")
    return name, number


def check_recipe(cfg: CompressConfig, require_target: bool = False) -> None:
    """Checks of a recipe beyond one field's value (done up front, e.g. when an experiment
    file is loaded).

    Args:
        cfg: the recipe.
        require_target: the recipe itself must hold the requirement (``max_drop`` or
            ``target_accuracy``), as in an experiment file's ``[compress]`` table.

    Raises:
        ConfigError: an empty grid, an unknown method, a bad bracket, method / sparsity
            set, or (with ``require_target``) not exactly one requirement.
    """
    cfg.prune_config()
    if require_target:
        check_target(cfg.max_drop, cfg.target_accuracy)
    if cfg.search_lo > cfg.search_hi:
        raise ConfigError(f"search_lo {cfg.search_lo} is above search_hi {cfg.search_hi}")
    for what, values in (("methods", cfg.methods), ("bits", cfg.bits), ("quants", cfg.quants),
                         ("nonweight_dtypes", cfg.nonweight_dtypes),
                         ("codebook_epochs", cfg.codebook_epochs),
                         ("rate_lambdas", cfg.rate_lambdas if "ecsq" in cfg.quants else (1,))):
        if not values:
            raise ConfigError(f"compress {what} is empty; give at least one")
    unknown = [m for m in cfg.methods if m not in REGISTRY]
    if unknown:
        raise ConfigError(f"unknown pruning method(s) {', '.join(unknown)}; valid: "
                          + ", ".join(REGISTRY))


# ------------------------------------------------------------------------- helpers


def _part(data: Any, name: str) -> Any:
    return data.get(name) if isinstance(data, Mapping) else getattr(data, name, None)


def _xy(data: Any, name: str, required: bool = True) -> tuple[Tensor, Tensor] | None:
    part = _part(data, name)
    if part is None:
        if required:
            raise ConfigError(f"data has no {name} split; compress needs train and val splits")
        return None
    if isinstance(part, tuple | list):
        return part[0], part[1]
    return part.x, part.y


@torch.inference_mode()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, head: Head | None = None,
             batch_size: int = 1000) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y`` (the head's prediction, or the
    arg-max output without a head)."""
    was = model.training
    model.eval()
    correct = 0
    try:
        for s in range(0, len(y), batch_size):
            out = model(x[s : s + batch_size])
            pred = head.predict(out) if head is not None else out.argmax(dim=1)
            correct += int((pred == y[s : s + batch_size]).sum())
    finally:
        model.train(was)
    return correct / len(y) if len(y) else math.nan


def _digest(tensors: Iterable[tuple[str, Tensor]]) -> str:
    h = hashlib.sha256()
    for name, t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else
                 t.view(torch.int16).numpy().tobytes())
    return h.hexdigest()


def _key(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


#: keys of a quantizer setting that :func:`leanbits.bits.pack` takes (and ``rate_lambda``
#: for ``ecsq``)
ENCODE_KEYS = ("bits", "quant", "nonweight_dtype", "index")


def quantizer_grid(cfg: CompressConfig) -> list[dict[str, Any]]:
    """Every quantizer setting of the recipe, gentlest first (most bits, first quantizer,
    first non-weight precision, first codebook fine-tuning): the keyword arguments of
    :func:`leanbits.bits.pack` plus ``codebook_epochs`` (``ecsq`` once per rate weight)."""
    quants: list[tuple[str, float | None]] = []
    for q in dict.fromkeys(cfg.quants):
        lams = list(dict.fromkeys(cfg.rate_lambdas)) if q == "ecsq" else [None]
        quants += [(q, lam) for lam in lams]
    grid = []
    for b, (q, lam), d, e in itertools.product(sorted(set(cfg.bits), reverse=True), quants,
                                               dict.fromkeys(cfg.nonweight_dtypes),
                                               dict.fromkeys(cfg.codebook_epochs)):
        setting = {"bits": b, "quant": q, "nonweight_dtype": d, "index": cfg.index,
                   "codebook_epochs": e}
        if lam is not None:
            setting["rate_lambda"] = lam
        grid.append(setting)
    return grid


class _WorkDir:
    """Cached method runs and candidates of one search (None: nothing is stored)."""

    def __init__(self, path: Path | None, key: str) -> None:
        self.path = path
        if path is None:
            return
        marker = paths.compress(path)
        if path.exists() and not path.is_dir():
            raise ConfigError(f"work directory {path} exists and is not a directory; "
                              "remove it or choose another output")
        if path.is_dir() and any(path.iterdir()) and not marker.is_file():
            raise ConfigError(f"{path} is not a compress work directory; remove it or "
                              "choose another output")
        if marker.is_file():
            try:
                old = json.loads(marker.read_text(encoding="utf-8")).get("key")
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                old = None
            if old != key:  # another search's cache: its entries can never match
                for f in path.iterdir():
                    if f.is_file() and f.name != paths.lock(path).name:
                        f.unlink()
        path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(marker, json.dumps({"key": key}))

    def read(self, kind: str, key: str) -> dict[str, Any] | None:
        if self.path is None:
            return None
        f = paths.compress_run(self.path, kind, key)
        if not f.is_file():
            return None
        try:
            return json.loads(f.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None  # damaged: computed again

    def write(self, kind: str, key: str, record: dict[str, Any]) -> None:
        if self.path is not None:
            write_text_atomic(paths.compress_run(self.path, kind, key), json.dumps(record))

    def tensors(self, key: str) -> Path | None:
        return None if self.path is None else paths.compress_tensors(self.path, key)


# ------------------------------------------------------------------------- search


class _Search:
    """The state of one search: caches, budget, counters, progress bar."""

    def __init__(self, model: nn.Module, data: Any, loss: Loss, cfg: CompressConfig,
                 prune_cfg: PruneConfig, plan: Plan | None, head: Head | None,
                 masks: Mapping[str, Tensor] | None, work: _WorkDir, run_key: str,
                 bar: tqdm) -> None:
        self.model, self.loss, self.cfg, self.prune_cfg = model, loss, cfg, prune_cfg
        self.plan, self.head, self.masks = plan, head, dict(masks) if masks else None
        self.train = _xy(data, "train")
        if prune_cfg.limit_train is not None:
            self.train = (self.train[0][: prune_cfg.limit_train],
                          self.train[1][: prune_cfg.limit_train])
        self.val = _xy(data, "val")
        self.work, self.run_key, self.bar = work, run_key, bar
        self.pruned: dict[tuple[str, float], tuple[nn.Module, dict[str, Tensor]] | None] = {}
        self.epochs = 0.0
        self.cost: dict[str, float] = {}
        self.budget_exhausted = False
        self.evaluated = self.reused = 0
        self.candidates: list[Candidate] = []

    def _tick(self, cached: bool) -> None:
        if cached:
            self.reused += 1
        else:
            self.evaluated += 1
        self.bar.update(1)
        self.bar.set_postfix(epochs=f"{self.epochs:g}/{self.cfg.budget}")

    def prune(self, method: str, sparsity: float) -> tuple[nn.Module, dict[str, Tensor]] | None:
        """The model pruned by ``method`` at ``sparsity`` (None: the budget is spent or a
        layer would be emptied)."""
        if (method, sparsity) in self.pruned:
            return self.pruned[(method, sparsity)]
        key = _key(self.run_key, "prune", method, sparsity)
        record = self.work.read("prune", key)
        tensors = self.work.tensors(key)
        result: tuple[nn.Module, dict[str, Tensor]] | None = None
        if record is not None and (record.get("emptied") or (tensors and tensors.is_file())):
            self.epochs += float(record.get("epochs", 0.0))
            self.cost.setdefault(method, float(record.get("epochs", 0.0)))
            if not record.get("emptied"):
                stored = load_file(str(tensors))  # a damaged file fails loudly here
                model = copy.deepcopy(self.model)
                model.load_state_dict({k[6:]: v for k, v in stored.items()
                                       if k.startswith("state/")})
                masks = {k[5:]: v for k, v in stored.items() if k.startswith("mask/")}
                result = (model, masks)
            self._tick(cached=True)
        else:
            expected = self.cost.get(method, 0.0)
            if self.epochs + expected > self.cfg.budget:
                self.budget_exhausted = True
                self.pruned[(method, sparsity)] = None
                return None
            try:
                run = run_method(self.model, method, sparsity, self.train, self.loss,
                                 self.prune_cfg, masks=self.masks)
            except LayerEmptiedError:
                self.write_prune(key, None, {"emptied": True, "epochs": 0.0})
                self._tick(cached=False)
                self.pruned[(method, sparsity)] = None
                return None
            spent = float(run.record.get("backprop_epochs", 0.0))
            self.epochs += spent
            self.cost[method] = max(self.cost.get(method, 0.0), spent)
            masks = {k: v.to(torch.bool) for k, v in run.masks.items()}
            result = (run.model, masks)
            self.write_prune(key, result, {"emptied": False, "epochs": spent})
            self._tick(cached=False)
        self.pruned[(method, sparsity)] = result
        return result

    def write_prune(self, key: str, result: tuple[nn.Module, dict[str, Tensor]] | None,
                    record: dict[str, Any]) -> None:
        path = self.work.tensors(key)
        if path is not None and result is not None:
            model, masks = result
            tensors = {f"state/{k}": v.detach().cpu().contiguous()
                       for k, v in model.state_dict().items()}
            tensors.update({f"mask/{k}": v.cpu().contiguous() for k, v in masks.items()})
            with atomic_path(path) as tmp:
                save_file(tensors, str(tmp))
        self.work.write("prune", key, record)  # written last: it marks the run complete

    def encode(self, pruned: tuple[nn.Module, dict[str, Tensor]], settings: dict[str, Any]):
        """The file of a pruned level with one quantizer setting (codebook fine-tuning,
        when the setting asks for it, runs on the quantized model before it is stored)."""
        model, masks = pruned
        kwargs = {k: settings[k] for k in ENCODE_KEYS}
        if settings.get("rate_lambda") is not None:
            kwargs["rate_lambda"] = settings["rate_lambda"]
        encoded = encode(model, self.plan, self.head, masks=masks, **kwargs)
        epochs = int(settings.get("codebook_epochs", 0))
        if epochs <= 0:
            return encoded
        tuned = copy.deepcopy(model)
        tuned.load_state_dict(encoded.state)
        names = [f"{n}.weight" for n, layer in weight_layers(tuned)
                 if bool((layer.weight != 0).any())]
        quantized = codebooks_of(tuned, names, bits=int(settings["bits"]))
        p = self.prune_cfg
        finetune_codebook(tuned, quantized, self.train, self.loss, epochs=epochs,
                          lr=self.cfg.codebook_lr, batch_size=p.batch_size, seed=p.seed)
        retuned = encode(tuned, self.plan, self.head, masks=masks, **kwargs)
        for name in names:  # the fine-tuned codebook is what the file stores, exactly
            if not torch.equal(retuned.state[name], tuned.state_dict()[name]):
                raise RuntimeError(f"storing the fine-tuned codebook of {name} changed it")
        return retuned

    def score(self, method: str, sparsity: float, settings: dict[str, Any]) -> Candidate | None:
        """Encode the pruned level with ``settings`` and measure the decoded model on
        validation (None when the level could not be pruned or the budget is spent)."""
        pruned = self.prune(method, sparsity)
        if pruned is None:
            return None
        key = _key(self.run_key, "candidate", method, sparsity, settings)
        record = self.work.read("candidate", key)
        epochs = float(settings.get("codebook_epochs", 0))
        if record is not None:
            cand = Candidate(method, sparsity, settings, int(record["total_bits"]),
                             float(record["val_acc"]), int(record["nonzero"]))
            self.epochs += epochs
            self._tick(cached=True)
        else:
            if epochs and self.epochs + epochs > self.cfg.budget:
                self.budget_exhausted = True
                return None
            encoded = self.encode(pruned, settings)
            self.epochs += epochs
            decoded = copy.deepcopy(pruned[0])
            decoded.load_state_dict(encoded.state)
            val = accuracy(decoded, *self.val, head=self.head)
            nonzero = sum(int((layer.weight != 0).sum()) for _, layer in weight_layers(decoded))
            cand = Candidate(method, sparsity, settings, encoded.account.total_bits, val,
                             nonzero)
            self.work.write("candidate", key, {"total_bits": cand.total_bits,
                                               "val_acc": val, "nonzero": nonzero})
            self._tick(cached=False)
        self.candidates.append(cand)
        return cand


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
                 Path(str(output) + WORK_SUFFIX) if output is not None else None)
    val = _xy(data, "val")
    train = _xy(data, "train")
    dense_val = accuracy(model, *val, head=head)
    required = dense_val - value if kind == "max_drop" else value

    # Everything that decides the search, and nothing else (never the test split).
    run_key = _key(
        _digest(model.state_dict().items()), _digest(sorted((masks or {}).items())),
        _digest([("tx", train[0]), ("ty", train[1]), ("vx", val[0]), ("vy", val[1])]),
        to_dict(cfg), repr(plan), repr(head), kind, value,
    )
    show = sys.stderr.isatty() if progress is None else progress
    lock = (exclusive_lock(work_path.parent / f".{work_path.name}.lock")
            if work_path is not None else _nolock())
    with lock, tqdm(desc="compress", unit="run", disable=not show, leave=False) as bar:
        search = _Search(model, data, loss, cfg, prune_cfg, plan, head, masks,
                         _WorkDir(work_path, run_key), run_key, bar)
        grid = quantizer_grid(cfg)
        best = _run_search(search, grid, required)
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
    test = _xy(data, "test", required=False)
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


class _nolock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _run_search(search: _Search, grid: list[dict[str, Any]], required: float) -> Candidate:
    """Bisect each method's sparsity with the gentlest setting, then score the whole grid
    at the sparsest levels that passed; the smallest passing candidate wins."""
    cfg = search.cfg
    gentle = grid[0]
    for method in cfg.methods:
        if method in OWN_SPARSITY:  # it finds its own sparsity: one run, the whole grid
            for settings in grid:
                search.score(method, 0.0, settings)
            continue

        def val_acc(s: float, method: str = method) -> float:
            cand = search.score(method, s, gentle)
            return -math.inf if cand is None else cand.val_acc

        try:
            result = search_sparsity(val_acc, required, lo=cfg.search_lo, hi=cfg.search_hi,
                                     tol=cfg.search_tol)
        except PruneError:
            continue  # even the lowest level misses: this method offers nothing
        passed = sorted({s for s, a in result.evaluations if a >= required}, reverse=True)
        for level in passed[: cfg.levels]:
            for settings in grid[1:]:
                search.score(method, level, settings)
    passing = [c for c in search.candidates if c.val_acc >= required]
    if not passing:
        why = (" (the epoch budget was spent; raise --budget)" if search.budget_exhausted
               else "")
        raise PruneError(
            f"no setting of the recipe reaches validation accuracy {required:.4f}{why}; "
            f"lower --search-lo, add bits, or relax the requirement")
    return min(passing, key=lambda c: (c.total_bits, -c.val_acc))





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


__all__ = ["Candidate", "CompressConfig", "CompressResult", "accuracy", "check_recipe",
           "check_target",
           "compress", "compress_snapshot", "quantizer_grid"]
