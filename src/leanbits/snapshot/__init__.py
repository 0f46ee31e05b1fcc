"""Snapshots: a trained model saved so that it describes itself, written and read as a unit.

A snapshot directory holds

* ``weights.safetensors`` - the state dict (no pickles),
* ``masks.safetensors`` - optional 0/1 masks of pruned weights, same keys as the weights,
* ``model.json`` - the width plan and the output head, enough to rebuild the network,
* ``config.toml`` - the full configuration that produced it,
* ``metrics.json`` - final metrics (and ``metrics.jsonl``, per epoch, when trained here),
* ``weights_early.safetensors`` - weights early in training (for rewinding), when trained.

Writing: a :class:`SnapshotWriter` builds the snapshot in ``DIR.partial`` (locked, so two
processes never share it) and renames it to ``DIR`` only when it is complete, replacing an
old ``DIR`` whole; an interrupted write leaves ``DIR`` as it was. An existing snapshot made
from other settings is replaced only when asked (``force``, the CLI's ``--force``).

Reading: :func:`load` checks everything against a schema before it builds anything -
``model.json`` types and ranges (the plan's ceilings, :mod:`leanbits.models.plan`), the
tensor names, dtypes and shapes from the safetensors headers, finite values, 0/1 masks of
the right shapes, ``config.toml`` sections - so an edited or forged snapshot is refused with
one line (:class:`leanbits.errors.FormatError`), quickly and without allocating for it.

The files are written and read in :mod:`.files`, a snapshot is built and committed by
:mod:`.writer` and checked and loaded by :mod:`.reader`; their public names are importable
from here.
"""

from leanbits.snapshot.files import load_tensors, read_toml, save_tensors, write, write_toml
from leanbits.snapshot.reader import (
    CONFIG_SECTIONS,
    MASK_DTYPES,
    WEIGHT_DTYPES,
    Snapshot,
    check_fits_data,
    load,
)
from leanbits.snapshot.writer import SnapshotWriter, check_output, save

__all__ = ["CONFIG_SECTIONS", "MASK_DTYPES", "WEIGHT_DTYPES", "Snapshot", "SnapshotWriter",
           "check_fits_data", "check_output", "load", "load_tensors", "read_toml", "save",
           "save_tensors", "write", "write_toml"]
