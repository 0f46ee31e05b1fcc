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

from leanbits import heads, prune, regularize  # noqa: E402
from leanbits.bits import count_bits, load, pack, unpack  # noqa: E402
from leanbits.compression import compress  # noqa: E402
from leanbits.prune import (  # noqa: E402
    apply_masks,
    compact,
    compact_sequential,
    effective_connections,
    refit_nonweights,
)

# ``leanbits.prune`` is the pruning package and, called, the function
# :func:`leanbits.prune.prune` (see ``leanbits/prune/__init__.py``).

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
