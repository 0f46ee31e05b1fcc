"""Codebook fine-tuning (Deep Compression, stage 2): train the shared values, nothing else moves.

After a layer is quantized to a codebook (k-means or ECSQ), every weight is
``codebook[code]``. Fine-tuning keeps the codes - which weight shares which value, and
which weights are zero - and trains only the codebook entries (and, if asked, the
non-weight parameters) on the task loss. The gradient of an entry is the sum of the
gradients of the weights that use it: the model runs with ``weight = codebook[codes]``
(zero where the code is ``-1``) substituted by ``torch.func.functional_call``, so
autograd's gather backward adds them up exactly, and the model's own modules, parameter
names and order are never touched. The training itself is :func:`leanbits.loop.fit`, with
the codebooks (plus non-weights) as its parameter set.

The rate of the file does not change (same codes, same counts, same codebook size), so
fine-tuning buys accuracy at no bit cost; it is the natural last step after ECSQ.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from leanbits.bits.quantize import Quantized, dequantize, quantize_kmeans
from leanbits.errors import ConfigError
from leanbits.loop import DataLike, FitState, Hook, epoch_batches, fit, make_optimizer
from leanbits.prune.refit import nonweight_parameters


class _SharedWeights(nn.Module):
    """``model`` run with each quantized weight replaced by ``codebook[codes]``.

    Its parameters are the codebooks and the model's own (as a submodule), so
    :func:`leanbits.loop.fit` can train the codebooks and any of the model's non-weights.
    """

    def __init__(self, model: nn.Module, quantized: Mapping[str, Quantized],
                 weights: Mapping[str, Tensor]) -> None:
        super().__init__()
        self.model = model
        self.names = list(quantized)
        self.codebooks = nn.ParameterList(
            nn.Parameter(quantized[n].codebook.detach().to(weights[n].device, torch.float32,
                                                            copy=True))
            for n in self.names)
        # Only the nonzeros are gathered and scattered (3x faster per step than a masked
        # gather over every slot on a 90 %-sparse LeNet-300-100), and only they get
        # gradient terms.
        self.shapes = [tuple(quantized[n].codes.shape) for n in self.names]
        flat = [quantized[n].codes.reshape(-1).to(weights[n].device) for n in self.names]
        self.slots = [torch.nonzero(c >= 0).reshape(-1) for c in flat]
        self.codes = [c[i] for c, i in zip(flat, self.slots, strict=True)]

    def weights(self) -> dict[str, Tensor]:
        out = {}
        for n, shape, slots, codes, book in zip(self.names, self.shapes, self.slots, self.codes,
                                                self.codebooks, strict=True):
            flat = torch.zeros(math.prod(shape), dtype=torch.float32, device=book.device)
            out[n] = flat.index_put((slots,), book[codes]).view(shape)
        return out

    def forward(self, x: Tensor) -> Tensor:
        return functional_call(self.model, self.weights(), (x,))


class KeepNonzero(Hook):
    """After each step, put back any codebook entry the step moved onto exactly ``0.0``.

    In a ``.lbits`` file zero means "pruned"; an entry on zero would drop its weights from
    the mask when the model is packed, so such a step is undone for that entry.
    """

    def __init__(self, codebooks: list[nn.Parameter]) -> None:
        self.codebooks = codebooks
        self._last = [c.detach().clone() for c in codebooks]

    def after_step(self, state: FitState) -> None:
        with torch.no_grad():
            for book, last in zip(self.codebooks, self._last, strict=True):
                book.copy_(torch.where(book == 0, last, book))
                last.copy_(book)


def codebook_gradient(weight_grad: Tensor, codes: Tensor, num_levels: int) -> Tensor:
    """The gradient of each codebook entry: the sum of the gradients of its weights.

    This is what autograd computes through the shared weights; it is given on its own so
    the rule can be checked (and used by code that holds gradients, not graphs).

    Args:
        weight_grad: gradient of the loss w.r.t. the weight tensor.
        codes: int64 codes of the same shape, ``-1`` at zeros (those are ignored).
        num_levels: codebook size.

    Returns:
        float32 ``[num_levels]``.

    Example:
        >>> codebook_gradient(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([0, -1, 0]), 2)
        tensor([5., 0.])
    """
    if tuple(weight_grad.shape) != tuple(codes.shape):
        raise ValueError(f"gradient shape {tuple(weight_grad.shape)} != codes shape "
                         f"{tuple(codes.shape)}")
    used = codes >= 0
    out = torch.zeros(num_levels, dtype=torch.float32)
    return out.index_add_(0, codes[used].reshape(-1), weight_grad[used].to(torch.float32))


def _check_quantized(model: nn.Module, quantized: Mapping[str, Quantized]) -> dict[str, Tensor]:
    """Check every entry names a weight of ``model`` with a 1-D codebook; returns the weights."""
    if not quantized:
        raise ConfigError("nothing to fine-tune: no quantized weights given")
    params = dict(model.named_parameters())
    out = {}
    for name, q in quantized.items():
        if name not in params or not name.endswith("weight"):
            raise ConfigError(f"{name!r} is not a weight parameter of the model")
        if q.codebook.ndim != 1 or q.method == "uniform":
            raise ConfigError(
                f"{name}: codebook fine-tuning needs a free codebook (kmeans or ecsq), "
                f"got {q.method} with a {q.codebook.ndim}-D codebook"
            )
        if tuple(q.codes.shape) != tuple(params[name].shape):
            raise ConfigError(f"{name}: codes of shape {tuple(q.codes.shape)} for a weight of "
                              f"shape {tuple(params[name].shape)}")
        out[name] = params[name]
    return out


def _sorted(q: Quantized, codebook: Tensor) -> Quantized:
    """``q`` with a new codebook, sorted and duplicate-free (codes renumbered to match)."""
    book = codebook.detach().to(torch.float32).cpu().numpy()
    values, inverse = np.unique(book, return_inverse=True)
    codes = q.codes.clone()
    used = codes >= 0
    codes[used] = torch.from_numpy(inverse.astype(np.int64))[codes[used]]
    cb = torch.from_numpy(values.copy())
    return Quantized(q.method, q.bits, codes, cb, None, dequantize(codes, cb))


def finetune_codebook(
    model: nn.Module,
    quantized: Mapping[str, Quantized],
    data: DataLike,
    loss: Callable[[Tensor, Tensor], Tensor],
    *,
    epochs: int = 1,
    lr: float = 1e-4,
    batch_size: int = 128,
    seed: int = 0,
    nonweights: bool = True,
    optimizer: str = "adam",
) -> dict[str, Quantized]:
    """Train the codebook entries of quantized weights with their codes fixed (in place).

    Args:
        model: the model; the weights named in ``quantized`` are replaced by their
            quantized values, trained through their codebooks, and left quantized.
        quantized: ``{"fc1.weight": Quantized}`` with 1-D codebooks (``kmeans`` or ``ecsq``),
            e.g. from :func:`leanbits.bits.quantize.quantize` or :func:`codebooks_of`.
        data: ``(x, y)`` tensors (shuffled each epoch with ``seed``) or a loader.
        loss: ``loss(model(x), y) -> scalar``, e.g. ``head.loss``.
        epochs: passes over ``data``.
        lr: step size.
        batch_size: minibatch size for tensor data.
        seed: seed of shuffling and of any randomness in the model.
        nonweights: also train the non-weight parameters (biases, norm scales) jointly.
        optimizer: ``adam`` or ``sgd``.

    Returns:
        ``{name: Quantized}``: the same codes (renumbered only if two entries swapped
        order), the trained codebooks (same size unless two entries met exactly) and the
        dequantized weights, which are exactly the model's weights now.

    Raises:
        ConfigError: a name that is not a weight, a uniform / per-channel codebook, or
            shapes that do not match.
        TrainingError: the loss became NaN or infinite (the model is left as it was).

    Example:
        >>> q = {"fc1.weight": quantize_ecsq(model.fc1.weight, 4, 0.02)}  # doctest: +SKIP
        >>> q = finetune_codebook(model, q, (x, y), head.loss, epochs=1)  # doctest: +SKIP
    """
    if epochs < 0:
        raise ConfigError(f"epochs must be >= 0, got {epochs}")
    weights = _check_quantized(model, quantized)
    backup = {n: p.detach().clone() for n, p in model.named_parameters()}
    extra = [p for _, p in nonweight_parameters(model)] if nonweights else []
    shared = _SharedWeights(model, quantized, weights)
    books = list(shared.codebooks)
    params = books + extra
    try:
        fit(shared, params, epoch_batches(data, batch_size, seed=seed), loss,
            make_optimizer(optimizer, params, lr), [KeepNonzero(books)], epochs=epochs,
            seed=seed)
    except BaseException:
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(backup[n])
        raise
    with torch.no_grad():
        for name, value in shared.weights().items():
            weights[name].copy_(value)
    return {name: _sorted(quantized[name], book)
            for name, book in zip(shared.names, books, strict=True)}


def codebooks_of(model: nn.Module, names: list[str], bits: int = 16) -> dict[str, Quantized]:
    """Read already-quantized weights back as codebook + codes, losslessly.

    A weight that a codebook quantizer produced takes at most ``2**bits`` distinct nonzero
    values; k-means then returns exactly those values as its codebook (and the codes), so
    this is how a packed or decoded model is made ready for :func:`finetune_codebook`.

    Raises:
        ConfigError: a weight has more distinct nonzero values than ``2**bits`` (it is not
            quantized at that width).
    """
    out = {}
    params = dict(model.named_parameters())
    for name in names:
        w = params[name].detach().cpu()
        distinct = int(torch.unique(w[w != 0]).numel())
        if distinct > (1 << bits):
            raise ConfigError(f"{name} has {distinct} distinct values: not quantized to "
                              f"{bits} bits")
        out[name] = quantize_kmeans(w, bits)
        if not torch.equal(out[name].dequantized, w.to(torch.float32)):
            raise ConfigError(f"{name} does not read back exactly as a codebook")
    return out
