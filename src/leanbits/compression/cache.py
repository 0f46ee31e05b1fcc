"""The resume state of a compress search: the work directory (``OUTPUT.partial/`` by default)
that holds every finished method run and scored candidate under a hash of everything that
determines it (:class:`WorkDir`), and the hashing of models, data and settings into those
keys (:func:`digest`, :func:`key`). A directory left by another search is emptied, not
trusted; a damaged entry is computed again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from leanbits import paths
from leanbits.errors import ConfigError
from leanbits.fileio import write_text_atomic


def digest(tensors: Iterable[tuple[str, Tensor]]) -> str:
    h = hashlib.sha256()
    for name, t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else
                 t.view(torch.int16).numpy().tobytes())
    return h.hexdigest()


def cache_key(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class WorkDir:
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
