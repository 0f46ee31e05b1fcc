"""Compression to a required accuracy: the search behind ``leanbits compress`` and
:func:`leanbits.compress`.

A *recipe* is the pruning methods to try (any ``leanbits prune --method``, with their
:class:`~leanbits.prune.PruneConfig` settings) and a grid of quantizer settings (bits,
quantizer, non-weight storage, epochs of codebook fine-tuning). For each method the
sparsity is bisected by the validation accuracy of the model as it would be decoded from
a file with the gentlest quantizer setting of the grid; then, for the sparsest levels that
met the requirement, every quantizer setting of the grid is encoded and scored on
validation. The smallest file whose validation accuracy meets the requirement wins. The
test split is read once, after the choice, to report the decoded file's test accuracy:
nothing in the search can see it.

Every method run and every scored candidate is stored in a work directory (by default
``OUTPUT.partial/``) under a hash of everything that determines it, so an interrupted search
resumes where it stopped and a finished one is not repeated. ``budget`` caps the backprop
epochs of all method runs and codebook fine-tuning together (cached ones count too, so a
resumed search makes the same choices as an uninterrupted one).

The recipe and its checks are in :mod:`.recipe`, the work directory in :mod:`.cache`, the
search in :mod:`.search`, and :func:`compress` / :func:`compress_snapshot` in :mod:`.run`.
"""

from leanbits.compression.recipe import CompressConfig, check_recipe, check_target, quantizer_grid
from leanbits.compression.run import CompressResult, compress, compress_snapshot
from leanbits.compression.search import Candidate, accuracy

__all__ = ["Candidate", "CompressConfig", "CompressResult", "accuracy", "check_recipe",
           "check_target", "compress", "compress_snapshot", "quantizer_grid"]
