"""leanbits: how many bits does this network really need?

The import surface for your own PyTorch code::

    import leanbits

    head = leanbits.heads.Head("llr", 10)           # LLR output head: loss / predict / probs
    reg = leanbits.regularize.Regularizer(l1=1e-4)  # proximal L1 / group lasso, L2
    masks = leanbits.prune(model, sparsity=0.95)    # magnitude masks (model untouched)
    leanbits.apply_masks(model, masks)
    leanbits.refit_nonweights(model, (x, y), head.loss, epochs=1)  # biases only
    small, plan = leanbits.compact(model, plan, masks)  # leanbits models (plans)
    account = leanbits.count_bits(model, bits=4)    # every bit, per layer
    leanbits.pack(model, "model.lbits", bits=4)     # file size == account total
    model = leanbits.load("model.lbits", model=template)
    result = leanbits.compress(model, splits, head.loss, max_drop=0.002, head=head,
                               output="small.lbits")  # smallest file meeting validation

Unstructured pruning, re-fit and bit counting work on any ``nn.Module`` with Linear and
Conv2d layers; :func:`leanbits.compact_sequential` compacts plain ``nn.Sequential`` chains
of Linear / Conv2d / ReLU / MaxPool2d / Flatten / BatchNorm.
"""

__version__ = "0.1.0"

import importlib  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

# The names above are loaded on first use (PEP 562), not here: importing them pulls in
# torch, which takes seconds, and ``leanbits --version``, ``--help`` or a mistyped flag
# must not wait for it. ``leanbits.prune`` is the pruning package and, called, the function
# :func:`leanbits.prune.prune` (see ``leanbits/prune/__init__.py``).
_LAZY: dict[str, tuple[str, str | None]] = {  # name -> (module, attribute; None: the module)
    "heads": ("leanbits.heads", None),
    "prune": ("leanbits.prune", None),
    "regularize": ("leanbits.regularize", None),
    "compress": ("leanbits.compression", "compress"),
    "count_bits": ("leanbits.bits", "count_bits"),
    "load": ("leanbits.bits", "load"),
    "pack": ("leanbits.bits", "pack"),
    "unpack": ("leanbits.bits", "unpack"),
    "apply_masks": ("leanbits.prune", "apply_masks"),
    "compact": ("leanbits.prune", "compact"),
    "compact_sequential": ("leanbits.prune", "compact_sequential"),
    "effective_connections": ("leanbits.prune", "effective_connections"),
    "refit_nonweights": ("leanbits.prune", "refit_nonweights"),
}

if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, eagerly
    from leanbits import heads, prune, regularize
    from leanbits.bits import count_bits, load, pack, unpack
    from leanbits.compression import compress
    from leanbits.prune import (
        apply_masks,
        compact,
        compact_sequential,
        effective_connections,
        refit_nonweights,
    )


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'leanbits' has no attribute {name!r}") from None
    value = importlib.import_module(module)
    if attr is not None:
        value = getattr(value, attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "__version__",
    "apply_masks",
    "compact",
    "compact_sequential",
    "compress",
    "count_bits",
    "effective_connections",
    "heads",
    "load",
    "pack",
    "prune",
    "refit_nonweights",
    "regularize",
    "unpack",
]
