"""The search of one compression: the pruned levels each method yields (bisected by
validation accuracy with the gentlest quantizer setting), the candidates scored by encoding
them with every setting of the grid, the epoch budget they share, and the choice of the
smallest candidate that meets the requirement. Every method run and candidate goes through
the work directory of :mod:`.cache`, so a resumed search makes the same choices.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm import tqdm

from leanbits.bits.container import encode
from leanbits.bits.finetune import codebooks_of, finetune_codebook
from leanbits.compression.cache import WorkDir, cache_key
from leanbits.compression.recipe import ENCODE_KEYS, CompressConfig
from leanbits.errors import ConfigError, PruneError
from leanbits.fileio import atomic_path
from leanbits.heads import Head
from leanbits.loop import EpochCheckpoint
from leanbits.models import Plan
from leanbits.models.layers import weight_layers
from leanbits.prune import PruneConfig, run_method
from leanbits.prune.baselines import OWN_SPARSITY
from leanbits.prune.magnitude import LayerEmptiedError
from leanbits.prune.search import search_sparsity
from leanbits.prune.variational import (
    finish_variational,
    new_variational,
    rank_masks,
    threshold_sparsity,
    train_variational,
)

Loss = Callable[[Tensor, Tensor], Tensor]


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


def _part(data: Any, name: str) -> Any:
    return data.get(name) if isinstance(data, Mapping) else getattr(data, name, None)


def xy(data: Any, name: str, required: bool = True) -> tuple[Tensor, Tensor] | None:
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


class Search:
    """The state of one search: caches, budget, counters, progress bar."""

    def __init__(self, model: nn.Module, data: Any, loss: Loss, cfg: CompressConfig,
                 prune_cfg: PruneConfig, plan: Plan | None, head: Head | None,
                 masks: Mapping[str, Tensor] | None, work: WorkDir, run_key: str,
                 bar: tqdm) -> None:
        self.model, self.loss, self.cfg, self.prune_cfg = model, loss, cfg, prune_cfg
        self.plan, self.head, self.masks = plan, head, dict(masks) if masks else None
        self.train = xy(data, "train")
        if prune_cfg.limit_train is not None:
            self.train = (self.train[0][: prune_cfg.limit_train],
                          self.train[1][: prune_cfg.limit_train])
        self.val = xy(data, "val")
        self.work, self.run_key, self.bar = work, run_key, bar
        self.pruned: dict[tuple[str, float], tuple[nn.Module, dict[str, Tensor]] | None] = {}
        self.epochs = 0.0
        self.cost: dict[str, float] = {}
        self.budget_exhausted = False
        self.evaluated = self.reused = 0
        self.candidates: list[Candidate] = []
        self.vd: nn.Module | None = None  # the trained variational model (vd_search)
        self.vd_counted = False  # its training epochs are in self.epochs

    def ranked_vd(self, method: str) -> bool:
        """Whether ``method``'s levels are ranked from one shared variational training
        (``sparse-vd`` under ``vd_search``)."""
        return method == "sparse-vd" and self.cfg.vd_search

    def bisects(self, method: str) -> bool:
        """Whether ``method``'s sparsity is bisected (a method that finds its own runs once,
        but ``sparse-vd`` is bisected too under ``vd_search``)."""
        return method not in OWN_SPARSITY or self.ranked_vd(method)

    def variational(self) -> nn.Module:
        """The trained variational model of ``sparse-vd`` (ranked under ``vd_search`` or
        not): trained once per search, checkpointed after every epoch and kept in the work
        directory, so a resumed search does not train it again."""
        if self.vd is not None:
            return self.vd
        key = cache_key(self.run_key, "variational")
        record, tensors = self.work.read("variational", key), self.work.tensors(key)
        vd = new_variational(self.model, self.prune_cfg, self.masks)
        if record is not None and tensors is not None and tensors.is_file():
            vd.load_state_dict(load_file(str(tensors)))  # a damaged file fails loudly here
        else:
            # the training saves itself after every epoch: an interrupted search resumes it
            epochs_key = cache_key(self.run_key, "variational-epochs")
            partial = self.work.tensors(epochs_key)
            checkpoint = EpochCheckpoint(partial, epochs_key) if partial is not None else None

            def shown(epoch: int, epochs: int) -> None:  # hours on LeNet-5: show them
                self.bar.set_postfix(epochs=f"{self.epochs:g}/{self.cfg.budget}",
                                     variational=f"{epoch}/{epochs}")

            vd, _ = train_variational(self.model, self.train, self.loss, self.prune_cfg,
                                      self.masks, checkpoint=checkpoint, on_epoch=shown)
            if tensors is not None:
                with atomic_path(tensors) as tmp:
                    save_file({k: v.detach().cpu().contiguous()
                               for k, v in vd.state_dict().items()}, str(tmp))
            self.work.write("variational", key, {"epochs": self.prune_cfg.vd_epochs})
            if partial is not None:
                partial.unlink(missing_ok=True)  # the finished training replaces it
        self.vd = vd
        return vd

    def vd_floor(self) -> float | None:
        """The lowest level ``vd_search`` bisects from: the threshold's own sparsity on the
        ranked scale (below it, weights trained as noise would come back, and accuracy is
        not monotone there). Trains the variational model if it is not cached; None, and
        nothing run, when the budget cannot pay for the training and one level."""
        p = self.prune_cfg
        if self.epochs + p.vd_epochs + p.vd_finetune_epochs > self.cfg.budget:
            self.budget_exhausted = True
            return None
        return threshold_sparsity(self.variational())

    def _run(self, method: str, sparsity: float):
        """One method run at ``sparsity``, as :func:`run_method` returns it; under
        ``vd_search`` a ``sparse-vd`` level is the shared variational training ranked to
        ``sparsity`` and fine-tuned, its training's epochs counted with the first level."""
        if method != "sparse-vd":
            return run_method(self.model, method, sparsity, self.train, self.loss,
                              self.prune_cfg, masks=self.masks)
        # sparse VD's training is cached and checkpointed whether it is ranked or not
        vd = self.variational()
        keep = rank_masks(vd, sparsity) if self.ranked_vd(method) else None
        result = finish_variational(self.model, vd, self.train, self.loss, self.prune_cfg,
                                    self.masks, keep=keep)
        if not self.vd_counted:
            result.record["backprop_epochs"] += self.prune_cfg.vd_epochs
        return result

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
        key = cache_key(self.run_key, "prune", method, sparsity)
        record = self.work.read("prune", key)
        tensors = self.work.tensors(key)
        result: tuple[nn.Module, dict[str, Tensor]] | None = None
        vd_level = self.ranked_vd(method)
        if record is not None and (record.get("emptied") or (tensors and tensors.is_file())):
            self.epochs += float(record.get("epochs", 0.0))
            self.cost.setdefault(method, float(record.get("epochs", 0.0)))
            if vd_level and not record.get("emptied"):
                self.vd_counted = True
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
            if vd_level:  # a level costs its fine-tuning, the training once
                expected = (self.prune_cfg.vd_finetune_epochs
                            + (0 if self.vd_counted else self.prune_cfg.vd_epochs))
            if self.epochs + expected > self.cfg.budget:
                self.budget_exhausted = True
                self.pruned[(method, sparsity)] = None
                return None
            try:
                run = self._run(method, sparsity)
            except LayerEmptiedError:
                self.write_prune(key, None, {"emptied": True, "epochs": 0.0})
                self._tick(cached=False)
                self.pruned[(method, sparsity)] = None
                return None
            spent = float(run.record.get("backprop_epochs", 0.0))
            self.epochs += spent
            self.cost[method] = max(self.cost.get(method, 0.0), spent)
            self.vd_counted = self.vd_counted or vd_level
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
        key = cache_key(self.run_key, "candidate", method, sparsity, settings)
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


def run_search(search: Search, grid: list[dict[str, Any]], required: float) -> Candidate:
    """Bisect each method's sparsity with the gentlest setting, then score the whole grid
    at the sparsest levels that passed; the smallest passing candidate wins."""
    cfg = search.cfg
    gentle = grid[0]
    for method in cfg.methods:
        if not search.bisects(method):  # it finds its own sparsity: one run, the grid
            for settings in grid:
                search.score(method, 0.0, settings)
            continue

        def val_acc(s: float, method: str = method) -> float:
            cand = search.score(method, s, gentle)
            return -math.inf if cand is None else cand.val_acc

        lo, hi = cfg.search_lo, cfg.search_hi
        if search.ranked_vd(method):  # from the threshold's level up, never below it
            floor = search.vd_floor()
            if floor is None:
                continue
            lo = max(lo, floor)
            hi = max(hi, lo)
        try:
            result = search_sparsity(val_acc, required, lo=lo, hi=hi, tol=cfg.search_tol)
        except PruneError:
            if search.ranked_vd(method) and lo > cfg.search_lo:
                # the threshold's level missed with the gentlest setting: score it with
                # the whole grid, as plain sparse-vd does, so that the threshold's file is
                # still offered when another setting passes there
                for settings in grid[1:]:
                    search.score(method, lo, settings)
            continue  # even the lowest level misses: nothing sparser to search
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
