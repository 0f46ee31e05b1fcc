"""The local data cache and how it is filled: :func:`fetch` makes every file of a dataset
present and verified, :func:`info` describes the cache, :func:`cache_dir` says where it is.

The cache holds raw (decompressed) IDX files at ``<cache>/<dataset>/<file>``;
``<cache>`` is ``$LEANBITS_DATA`` or ``~/.cache/leanbits``. A file enters the
cache only after the SHA-256 of its decompressed content matches the table of
:mod:`.registry`: it is written to a temporary file beside its final name, checked, then
renamed, so the cache never holds a partial or wrong file.

Missing files are asked of an ordered list of :class:`Source` objects (:mod:`.providers`:
web mirrors, then offline package sources). Tests and users can pass their own
list, e.g. a :class:`DirSource` over a directory that already holds the files.
When the cache is complete no source is touched at all. The registry's and the
providers' public names are importable from here too.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import sys
import tempfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from leanbits.data.idx import CHUNK, GZIP_MAGIC
from leanbits.data.providers import (
    DebianSource,
    DirSource,
    MirrorSource,
    NpmSource,
    Source,
    SourceUnavailable,
    default_sources,
)
from leanbits.data.registry import (
    DATASETS,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    DatasetSpec,
    FileSpec,
    dataset_spec,
)
from leanbits.errors import DataError
from leanbits.fileio import atomic_path

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "DirSource",
    "DebianSource",
    "FileSpec",
    "MirrorSource",
    "NpmSource",
    "Source",
    "SourceUnavailable",
    "TEST_IMAGES",
    "TEST_LABELS",
    "TRAIN_IMAGES",
    "TRAIN_LABELS",
    "cache_dir",
    "dataset_spec",
    "default_sources",
    "fetch",
    "info",
]


def cache_dir() -> Path:
    """Return the data cache root: ``$LEANBITS_DATA`` if set, else ``~/.cache/leanbits``.

    Returns:
        The directory (not created here).
    """
    env = os.environ.get("LEANBITS_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "leanbits"


def _root(override: Path | str | None) -> Path:
    return Path(override).expanduser() if override is not None else cache_dir()


# --------------------------------------------------------------------------- cache


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _verified(path: Path, spec: FileSpec) -> bool:
    """True when ``path`` is a regular file with the expected size and SHA-256."""
    try:
        if not path.is_file() or path.stat().st_size != spec.size:
            return False
        return _sha256_file(path) == spec.sha256
    except OSError:
        return False


class _BadFile(Exception):
    """A source's file failed decompression or its checksum."""


def _write(out: BinaryIO, chunk: bytes, dest: Path) -> None:
    # A full disk is the cache's problem, not the source's: do not try the next source.
    try:
        out.write(chunk)
    except OSError as e:
        raise DataError(
            f"cannot write {dest} ({e}); free some space or set LEANBITS_DATA to another directory"
        ) from None


def _install(src: Path, spec: FileSpec, dest: Path) -> None:
    """Copy ``src`` (raw or gzip) to ``dest`` decompressed, if its size and SHA-256 are right.

    Raises _BadFile (with the reason) and leaves nothing behind otherwise.
    """
    h = hashlib.sha256()
    n = 0
    compressed = False
    # atomic_path: temp file beside dest, renamed only if the block succeeds,
    # removed on any exception, so a bad file never becomes visible.
    with atomic_path(dest) as tmp:
        try:
            with open(src, "rb") as probe:
                compressed = probe.read(2) == GZIP_MAGIC
            opener = gzip.open if compressed else open
            with opener(src, "rb") as f, open(tmp, "wb") as out:
                # Read at most size+1 bytes: enough to know the file is too long,
                # never enough to fill the disk from a decompression bomb.
                while n <= spec.size and (chunk := f.read(min(CHUNK, spec.size + 1 - n))):
                    n += len(chunk)
                    h.update(chunk)
                    _write(out, chunk, dest)
        except (OSError, EOFError, zlib.error) as e:
            raise _BadFile(f"unreadable {'gzip ' if compressed else ''}file ({e})") from None
        if n < spec.size:
            raise _BadFile(f"too short ({n} bytes, expected {spec.size})")
        if n > spec.size:
            raise _BadFile(f"too long (more than the expected {spec.size} bytes)")
        if h.hexdigest() != spec.sha256:
            raise _BadFile(
                f"SHA-256 mismatch (got {h.hexdigest()[:16]}..., expected {spec.sha256[:16]}...)"
            )
        # mkstemp creates 0600 files; cached data should be readable like any download.
        os.chmod(tmp, 0o644)


def _say(progress: bool, msg: str) -> None:
    if progress:
        tqdm.write(f"leanbits: {msg}", file=sys.stderr)


def fetch(
    name: str,
    cache_dir: Path | str | None = None,
    sources: Sequence[Source] | None = None,
    progress: bool = True,
) -> Path:
    """Make sure every file of dataset ``name`` is in the cache, verified; return its directory.

    Cached files are checked (size and SHA-256); missing or damaged ones are asked
    of ``sources`` in order. A source that fails once is not asked again during
    this call (so an offline machine does not wait for every mirror four times).
    A file whose checksum is wrong is refused and the next source is tried.
    Idempotent: with a complete cache no source is contacted.

    Args:
        name: dataset name (see :data:`DATASETS`).
        cache_dir: cache root; default :func:`cache_dir`.
        sources: ordered sources to try; default :func:`default_sources` ``(name)``.
        progress: show download progress and status lines on stderr.

    Returns:
        ``<cache_dir>/<name>``, holding the raw IDX files.

    Raises:
        ConfigError: unknown dataset name.
        DataError: some file could not be obtained from any source; the message
            lists what was tried and how to fix it.

    Example:
        >>> d = fetch("mnist")  # doctest: +SKIP
        >>> sorted(p.name for p in d.iterdir())[0]  # doctest: +SKIP
        't10k-images-idx3-ubyte'
    """
    spec = dataset_spec(name)
    ddir = _root(cache_dir) / name
    missing = []
    for f in spec.files:
        path = ddir / f.name
        if _verified(path, f):
            continue
        if path.exists():
            _say(True, f"{path} is damaged (size or SHA-256 wrong); fetching it again")
        missing.append(f)
    if not missing:
        return ddir

    try:
        ddir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"cannot create data cache {ddir} ({e}); set LEANBITS_DATA to a writable directory"
        ) from None
    srcs = list(default_sources(name) if sources is None else sources)
    failed: dict[int, str] = {}  # index of source -> why it is out for this call
    with tempfile.TemporaryDirectory(prefix="leanbits-fetch-") as work:
        workdir = Path(work)
        try:
            for f in missing:
                tried: list[str] = []
                for i, src in enumerate(srcs):
                    if i in failed:
                        tried.append(f"{src.label}: {failed[i]}")
                        continue
                    _say(progress, f"fetching {name}/{f.name} from {src.label}")
                    try:
                        local = src.get(name, f.name, workdir, progress)
                    except SourceUnavailable as e:
                        _say(progress, f"  unavailable: {e}")
                        failed[i] = str(e)
                        tried.append(f"{src.label}: {e}")
                        continue
                    try:
                        _install(local, f, ddir / f.name)
                    except _BadFile as e:
                        msg = f"{src.label} gave a bad {f.name}: {e}; file refused"
                        _say(True, msg)
                        tried.append(msg)
                        continue
                    finally:
                        # Downloads live in workdir; never delete a source's own files.
                        if workdir in local.parents:
                            local.unlink(missing_ok=True)
                    break
                else:
                    raise DataError(_all_failed(name, f.name, ddir, tried))
        finally:
            for src in srcs:
                with contextlib.suppress(Exception):
                    src.close()
    return ddir


def _all_failed(name: str, filename: str, ddir: Path, tried: list[str]) -> str:
    what = "; ".join(tried) if tried else "no sources were given"
    return (
        f"cannot get {name}/{filename}. Tried: {what}. Fix: connect to the internet "
        f"(and unset LEANBITS_OFFLINE), or install the offline source named above, or copy "
        f"the raw or .gz IDX files into {ddir} and run `leanbits data fetch {name}` again"
    )


def info(cache_dir: Path | str | None = None) -> list[dict]:
    """Describe the cache: per dataset, which files are present and verified.

    Args:
        cache_dir: cache root; default :func:`cache_dir`.

    Returns:
        One dict per known dataset: ``name``, ``dir`` (str), ``complete`` (bool),
        ``size`` (bytes present), and ``files``: a list of dicts with ``name``,
        ``present``, ``verified``, ``size`` (bytes on disk or None) and
        ``expected_size``. ``verified`` means size and SHA-256 match.
    """
    root = _root(cache_dir)
    out = []
    for spec in DATASETS.values():
        ddir = root / spec.name
        files = []
        for f in spec.files:
            path = ddir / f.name
            present = path.is_file()
            size = path.stat().st_size if present else None
            files.append(
                {
                    "name": f.name,
                    "present": present,
                    "verified": present and _verified(path, f),
                    "size": size,
                    "expected_size": f.size,
                }
            )
        out.append(
            {
                "name": spec.name,
                "dir": str(ddir),
                "complete": all(x["verified"] for x in files),
                "size": sum(x["size"] or 0 for x in files),
                "files": files,
            }
        )
    return out
