"""Atomic writes never replace what is not a regular file, and name the target when the
file system refuses them (full, read-only, permission denied)."""

import errno
import os
import socket
import stat

import pytest

from leanbits.errors import OutputError, os_error_message
from leanbits.fileio import (
    atomic_path,
    check_output_dir,
    check_output_file,
    write_bytes_atomic,
    write_text_atomic,
)


def _fifo(d):
    p = d / "fifo"
    os.mkfifo(p)
    return p


def _socket(d):
    p = d / "sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(p))
    s.close()
    return p


def _device(d):
    p = d / "full"
    try:
        os.mknod(p, 0o666 | stat.S_IFCHR, os.makedev(1, 7))  # like /dev/full
    except PermissionError:
        pytest.skip("making a device node needs root")
    return p


def _directory(d):
    p = d / "dir"
    p.mkdir()
    return p


NON_REGULAR = [(_fifo, "FIFO"), (_socket, "socket"), (_device, "character device"),
               (_directory, "directory")]


@pytest.mark.parametrize(("make", "kind"), NON_REGULAR, ids=[k for _, k in NON_REGULAR])
def test_non_regular_target_is_refused_and_left_alone(tmp_path, make, kind):
    target = make(tmp_path)
    before = os.lstat(target)
    with pytest.raises(OutputError, match=kind) as info:
        write_bytes_atomic(target, b"data")
    assert str(target) in str(info.value) and "\n" not in str(info.value)
    after = os.lstat(target)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no temp left


@pytest.mark.parametrize(("make", "kind"), NON_REGULAR, ids=[k for _, k in NON_REGULAR])
def test_symlink_to_non_regular_is_refused(tmp_path, make, kind):
    target = make(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(OutputError, match=kind):
        write_text_atomic(link, "x")
    assert link.is_symlink() and os.lstat(target).st_mode == os.lstat(target).st_mode


def test_symlink_to_regular_file_keeps_the_link(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    write_text_atomic(link, "new")
    assert link.is_symlink() and real.read_text() == "new"


def test_regular_file_is_replaced(tmp_path):
    p = tmp_path / "a.bin"
    p.write_bytes(b"old")
    write_bytes_atomic(p, b"new")
    assert p.read_bytes() == b"new"


def test_something_appearing_during_the_write_is_not_replaced(tmp_path):
    p = tmp_path / "out"
    with pytest.raises(OutputError, match="FIFO"):
        with atomic_path(p) as tmp:
            tmp.write_bytes(b"x")
            os.mkfifo(p)
    assert stat.S_ISFIFO(os.lstat(p).st_mode)
    assert sorted(q.name for q in tmp_path.iterdir()) == ["out"]


def test_parent_that_is_a_file_is_named(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(OutputError, match="not a directory"):
        write_bytes_atomic(tmp_path / "f" / "x.bin", b"")
    with pytest.raises(OutputError, match="not a directory"):
        write_bytes_atomic(tmp_path / "f" / "sub" / "x.bin", b"")


def test_check_output_dir(tmp_path):
    assert check_output_dir(tmp_path) == tmp_path
    assert check_output_dir(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "f").write_text("")
    with pytest.raises(OutputError, match="is a file, not a directory"):
        check_output_dir(tmp_path / "f")
    with pytest.raises(OutputError, match="FIFO"):
        check_output_dir(_fifo(tmp_path))
    assert check_output_file(tmp_path / "f") == tmp_path / "f"


@pytest.mark.parametrize(("code", "words"), [
    (errno.ENOSPC, "no space left"), (errno.EROFS, "the file system is read-only"),
    (errno.EACCES, "permission denied"), (errno.EDQUOT, "disk quota"),
])
def test_write_errors_name_the_target_not_the_temp_file(tmp_path, monkeypatch, code, words):
    target = tmp_path / "model.lbits"

    def fail(self, data):
        raise OSError(code, os.strerror(code), str(self))

    monkeypatch.setattr(type(target), "write_bytes", fail)
    with pytest.raises(OutputError) as info:
        write_bytes_atomic(target, b"x")
    msg = str(info.value)
    assert msg.startswith(f"cannot write {target}: {words}") and ".tmp" not in msg
    assert list(tmp_path.iterdir()) == []


def test_real_full_file_system(small_mount):
    d = small_mount("full")
    with pytest.raises(OutputError, match="no space left on the device"):
        write_bytes_atomic(d / "big.bin", b"\0" * (256 << 10))
    assert list(d.iterdir()) == []  # the temp file is gone: the space is free again
    write_bytes_atomic(d / "small.bin", b"fits")
    assert (d / "small.bin").read_bytes() == b"fits"


def test_real_read_only_file_system(small_mount):
    d = small_mount("ro")
    with pytest.raises(OutputError, match="read-only") as info:
        write_text_atomic(d / "report.md", "x")
    assert str(d / "report.md") in str(info.value)


def test_os_error_message_without_a_target():
    e = OSError(errno.EISDIR, "Is a directory", "/x/y")
    assert os_error_message(e) == "/x/y: it is a directory; give a file path"
    e2 = OSError(errno.ENOENT, "No such file or directory", "/a", None, "/b")
    assert os_error_message(e2).startswith("/a -> /b: no such file")
    odd = OSError(errno.EIO, "Input/output error")
    assert os_error_message(odd) == "system error: Input/output error; check the path and try again"
