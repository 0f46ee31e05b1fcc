"""Every command under careless or hostile input: one line on stderr, exit 2, no traceback.

The table runs each case through ``leanbits.cli.main`` in-process (a subprocess would spend
seconds importing torch per case): missing files, directories where files belong and
files where directories belong, empty files, devices, FIFOs, scalars where a config table
belongs, NaN weights, read-only and full file systems (real tmpfs mounts where this system
allows them, else skipped; monkeypatched errors otherwise). Then the boundary itself: an
interrupt exits 130 in one line, a genuine bug keeps its traceback and asks for a report,
and ``leanbits --version`` / ``--help``, every command's ``--help``, a mistyped command, a
bad flag value and an experiment file that ``leanbits run`` refuses never import torch.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomli_w
import torch
from safetensors.torch import load_file, save_file

from leanbits import cli, snapshot
from leanbits.bits import pack
from leanbits.data import datasets
from leanbits.heads import Head
from leanbits.models import Plan, build

PLAN = Plan("mlp", (1, 28, 28), (), (8,), 10)
CONFIG = {"data": {"dataset": "mnist", "val_size": 64, "split_seed": 0}}
EXPERIMENT = {
    "name": "hostile-cli",
    "data": {"dataset": "synthetic", "limit_train": 64, "val_size": 32},
    "train": {"fc": [4], "epochs": 1, "batch_size": 32},
    "bits": {"bits": 3},
}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """The files every case refers to by name (``{snap}``, ``{fifo}``, ...)."""
    d = tmp_path_factory.mktemp("hostile-cli")
    torch.manual_seed(0)
    model = build(PLAN)
    w: dict[str, Path] = {"d": d}
    w["snap"] = snapshot.save(d / "snap", model, PLAN, Head("softmax", 10), CONFIG,
                              {"val_acc": 0.5})
    w["nan"] = snapshot.save(d / "nan", model, PLAN, Head("softmax", 10), CONFIG)
    weights = load_file(d / "nan" / "weights.safetensors")
    weights["fc1.weight"][0, 0] = float("nan")
    save_file(weights, d / "nan" / "weights.safetensors")
    w["lbits"] = d / "good.lbits"
    pack(model, w["lbits"], bits=4, plan=PLAN, head=Head("softmax", 10))
    w["file"] = d / "afile"
    w["file"].write_text("not a directory\n")
    w["dir"] = d / "adir"
    w["dir"].mkdir()
    (w["dir"] / "something").write_text("")
    w["emptydir"] = d / "emptydir"
    w["emptydir"].mkdir()
    w["empty"] = d / "empty"
    w["empty"].write_bytes(b"")
    w["binary"] = d / "binary.toml"
    w["binary"].write_bytes(b"\xff\xfe\x00")
    w["fifo"] = d / "fifo"
    os.mkfifo(w["fifo"])
    w["device"] = d / "full"
    try:
        os.mknod(w["device"], 0o666 | stat.S_IFCHR, os.makedev(1, 7))  # /dev/full's numbers
    except PermissionError:
        w["device"] = Path("/dev/full")  # only an unprivileged user gets here: can't harm it
    for name, text in {"train5": "train = 5\n", "bits7": "bits = 7\n", "prune3": "prune = 3\n",
                       "data1": "data = 1\n", "profile2": "profile = 2\n",
                       "trainsec": "[train]\nepochs = 1\n", "bitssec": "[bits]\nbits = 3\n",
                       "prunekey": "[prune]\nbogus = 1\n", "bitskey": "[bits]\nbogsu = 1\n",
                       "toplevel": "epochs = 1\n", "comments": "# nothing yet\n\n"}.items():
        w[name] = d / f"{name}.toml"
        w[name].write_text(text)
    w["exp"] = d / "exp.toml"
    w["exp"].write_text(tomli_w.dumps(EXPERIMENT))
    w["missing"] = d / "missing"
    return w


@pytest.fixture(autouse=True)
def no_mnist(monkeypatch, tiny_splits):
    """No case reads MNIST: a command that asks for data gets tiny MNIST-shaped splits."""
    monkeypatch.setattr(datasets, "load_splits", lambda *a, **k: tiny_splits)


#: case id -> (arguments, with {name} for a path of ``world``; a word the error must hold)
CASES: dict[str, tuple[str, str]] = {
    # --- defect 4: writers never replace what is not a regular file
    "pack -o device": ("pack {snap} -o {device}", "character device"),
    "pack -o FIFO": ("pack {snap} -o {fifo}", "FIFO"),
    "pack -o DIR": ("pack {snap} -o {dir}", "is a directory"),
    "pack -o FILE/x": ("pack {snap} -o {file}/x.lbits", "not a directory"),
    "export --onnx device": ("export {snap} --onnx {device} --no-real-data", "character device"),
    "export --onnx DIR": ("export {snap} --onnx {dir} --no-real-data", "is a directory"),
    "export --safetensors FIFO": ("export {snap} --safetensors {fifo}", "FIFO"),
    "export --safetensors FILE/x": ("export {snap} --safetensors {file}/x", "not a directory"),
    # --- defect 7 (and 5): NaN weights
    "export NaN weights": ("export {nan} --onnx {d}/x.onnx --no-real-data", "NaN"),
    "bits NaN weights": ("bits {nan}", "NaN"),
    "pack NaN weights": ("pack {nan} -o {d}/x.lbits", "NaN"),
    # --- --config holding a scalar where a table belongs
    "train --config train = 5": ("train --config {train5}", "[train] table"),
    "train --config data = 1": ("train --config {data1}", "[data] table"),
    "bits --config bits = 7": ("bits {snap} --config {bits7}", "[bits] table"),
    "pack --config bits = 7": ("pack {snap} --config {bits7} -o {d}/x.lbits", "[bits] table"),
    "prune --config prune = 3": ("prune {snap} --config {prune3}", "[prune] table"),
    # --- --config holding another command's table, or a key no table has: one check
    # (config.check_keys) names it, as it does for experiment files
    "bits --config [train]": ("bits {snap} --config {trainsec}", "unknown key(s) train"),
    "pack --config [train]": ("pack {snap} --config {trainsec} -o {d}/x.lbits", "train"),
    "prune --config [bits]": ("prune {snap} --config {bitssec}", "unknown key(s) bits"),
    "profile --config [bits]": ("profile {snap} --config {bitssec}", "unknown key(s) bits"),
    "compress --config [bits]": ("compress {snap} -o {d}/x.lbits --max-drop 0.01 "
                                 "--config {bitssec}", "unknown key(s) bits"),
    "compress --config [train]": ("compress {snap} -o {d}/x.lbits --max-drop 0.01 "
                                  "--config {trainsec}", "unknown key(s) train"),
    "train --config [bits]": ("train --config {bitssec}", "unknown key(s) bits"),
    "train --config top-level key": ("train --config {toplevel}", "unknown key(s) epochs"),
    "bits --config top-level key": ("bits {snap} --config {toplevel}", "epochs"),
    "prune --config [prune] bogus": ("prune {snap} --config {prunekey}", "bogus"),
    "bits --config [bits] bogsu": ("bits {snap} --config {bitskey}", "bogsu"),
    "train --config DIR": ("train --config {dir}", "not a regular file"),
    "train --config missing": ("train --config {missing}", "does not exist"),
    "train --config binary": ("train --config {binary}", "not valid TOML"),
    "bits --config binary": ("bits {snap} --config {binary}", "not valid TOML"),
    # --- --out an existing FILE (or under one) for every command writing a directory
    "train --out FILE": ("train --out {file} --epochs 1", "not a directory"),
    "train --runs FILE": ("train --runs {file} --epochs 1", "not a directory"),
    "unpack -o FILE": ("unpack {lbits} -o {file}", "not a directory"),
    "prune --out FILE": ("prune {snap} --out {file}", "not a directory"),
    "profile --out FILE": ("profile {snap} --out {file}", "not a directory"),
    "report --out FILE": ("report {snap} --out {file}", "not a directory"),
    "run --out FILE": ("run {exp} --out {file}", "not a directory"),
    "unpack -o FILE/x": ("unpack {lbits} -o {file}/x", "not a directory"),
    # --- a missing path, a directory where a file belongs, a file where a directory
    # belongs, an empty file / directory: for each command that reads one
    "eval missing": ("eval {missing}", "missing"),
    "eval FILE": ("eval {file}", "not a .lbits file"),
    "eval empty file": ("eval {empty}", "too short"),
    "eval empty dir": ("eval {emptydir}", "not a leanbits snapshot"),
    "eval non-snapshot dir": ("eval {dir}", "not a leanbits snapshot"),
    "prune missing": ("prune {missing}", "not a leanbits snapshot"),
    "prune FILE": ("prune {file}", "not a leanbits snapshot"),
    "profile missing": ("profile {missing}", "not a leanbits snapshot"),
    "profile FILE": ("profile {file}", "not a leanbits snapshot"),
    "bits missing": ("bits {missing}", "not a leanbits snapshot"),
    "bits FILE": ("bits {file}", "not a leanbits snapshot"),
    "bits empty dir": ("bits {emptydir}", "not a leanbits snapshot"),
    "pack missing": ("pack {missing} -o {d}/x.lbits", "not a leanbits snapshot"),
    "pack FILE": ("pack {file} -o {d}/x.lbits", "not a leanbits snapshot"),
    "unpack missing": ("unpack {missing} -o {d}/u", "missing"),
    "unpack DIR": ("unpack {dir} -o {d}/u", "adir"),
    "unpack snapshot dir": ("unpack {snap} -o {d}/u", "snap"),
    "unpack empty file": ("unpack {empty} -o {d}/u", "too short"),
    "run missing": ("run {missing}", "does not exist"),
    "run DIR": ("run {dir}", "not a regular file"),
    "run binary": ("run {binary}", "not valid TOML"),
    "run train = 5": ("run {train5}", "[train] must be a table"),
    "run empty file": ("run {empty}", "has no settings"),
    "run comments only": ("run {comments}", "has no settings"),
    "run top-level key": ("run {toplevel}", "unknown key(s) epochs"),
    "report missing": ("report {missing}", "not a directory"),
    "report FILE": ("report {file}", "not a directory"),
    "report empty dir": ("report {emptydir}", "nothing to report"),
    "export missing": ("export {missing} --onnx {d}/x.onnx", "not a leanbits snapshot"),
    "export FILE": ("export {file} --onnx {d}/x.onnx", "not a leanbits snapshot"),
    "bench missing": ("bench {missing}", "not a leanbits snapshot"),
    "bench FILE": ("bench {file}", "not a leanbits snapshot"),
    "bench --batch-sizes x": ("bench {snap} --batch-sizes x --no-onnx", "batch"),
    "bench --batch-sizes -1": ("bench {snap} --batch-sizes -1 --no-onnx", "batch"),
    "bench --batch-sizes 0": ("bench {snap} --batch-sizes 0 --no-onnx", "batch"),
    "bench --repeats 0": ("bench {snap} --repeats 0 --no-onnx", "repeats"),
}


def _argv(template: str, w: dict[str, Path]) -> list[str]:
    return [part.format(**{k: str(v) for k, v in w.items()}) for part in template.split()]


def one_line(capsys, needle: str, notes: int = 0) -> str:
    """stderr holds exactly one line, the error, naming ``needle``; no traceback. A failure
    found only once work has begun may follow at most ``notes`` progress lines."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert 1 <= len(lines) <= 1 + notes, lines
    assert lines[-1].startswith("leanbits: error: ") and needle in lines[-1], lines[-1]
    return lines[-1]


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_is_one_line_and_exit_2(case, world, capsys, monkeypatch):
    template, needle = CASES[case]
    monkeypatch.chdir(world["d"])
    before = {p: os.lstat(p) for p in (world["device"], world["fifo"], world["file"])}
    assert cli.main(_argv(template, world)) == 2
    one_line(capsys, needle)
    for p, st in before.items():  # nothing in the way was replaced
        assert (os.lstat(p).st_ino, os.lstat(p).st_mode) == (st.st_ino, st.st_mode), p
    assert world["file"].read_text() == "not a directory\n"
    assert not (world["d"] / "x.lbits").exists() and not (world["d"] / "x.onnx").exists()
    assert not (world["d"] / "u").exists()


# ----------------------------------------------------------------------- file systems


def test_pack_onto_a_real_read_only_file_system(world, small_mount, capsys):
    ro = small_mount("ro")
    assert cli.main(["pack", str(world["snap"]), "-o", str(ro / "m.lbits")]) == 2
    line = one_line(capsys, "read-only")
    assert str(ro / "m.lbits") in line


def test_train_into_a_real_read_only_file_system(small_mount, capsys):
    ro = small_mount("ro")
    assert cli.main(["train", "--epochs", "1", "--fc", "4", "--out", str(ro / "s")]) == 2
    one_line(capsys, "read-only")  # before the data is loaded: no "training ..." line


def test_pack_onto_a_real_full_file_system(world, small_mount, capsys):
    full = small_mount("full")
    fd = os.open(full / "filler", os.O_WRONLY | os.O_CREAT)
    try:  # fill it to the last byte
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    assert cli.main(["pack", str(world["snap"]), "-o", str(full / "m.lbits")]) == 2
    one_line(capsys, "no space left")
    assert sorted(p.name for p in full.iterdir()) == ["filler"]


def test_train_onto_a_real_full_file_system(small_mount, capsys):
    full = small_mount("full")
    assert cli.main(["train", "--epochs", "1", "--fc", "64", "--out", str(full / "s")]) == 2
    one_line(capsys, "no space left", notes=1)  # after "training ... -> OUT"
    assert list(full.iterdir()) == []  # no s.partial left behind


@pytest.mark.parametrize(("code", "words"), [
    (errno.EROFS, "read-only"), (errno.ENOSPC, "no space left"),
    (errno.EACCES, "permission denied"), (errno.EISDIR, "is a directory"),
    (errno.ENOTDIR, "not a directory"), (errno.EIO, "Input/output error"),
])
def test_any_os_error_is_one_line_naming_the_path(code, words, world, capsys, monkeypatch):
    def fail(*_a, **_k):
        raise OSError(code, os.strerror(code), "/some/where")

    monkeypatch.setattr(snapshot, "load", fail)
    assert cli.main(["bits", str(world["snap"])]) == 2
    line = one_line(capsys, words)
    assert "/some/where" in line


def test_os_errors_while_writing_name_the_output(world, tmp_path, capsys, monkeypatch):
    target = tmp_path / "m.lbits"

    def fail(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_bytes", fail)
    assert cli.main(["pack", str(world["snap"]), "-o", str(target)]) == 2
    line = one_line(capsys, "no space left")
    assert f"cannot write {target}" in line and ".tmp" not in line
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------- the boundary


def test_interrupt_is_exit_130_in_one_line(world, capsys, monkeypatch):
    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(snapshot, "load", interrupted)
    assert cli.main(["bits", str(world["snap"])]) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["leanbits: interrupted"]


def test_a_genuine_bug_keeps_its_traceback_and_asks_for_a_report(world, capsys, monkeypatch):
    def bug(*_a, **_k):
        return 1 / 0

    monkeypatch.setattr(snapshot, "load", bug)
    assert cli.main(["bits", str(world["snap"])]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "Traceback (most recent call last):"
    assert "ZeroDivisionError" in err[-2]
    assert "this is a bug in leanbits; please report it with the command you ran" in err[-1]


def _leanbits(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "leanbits", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_ctrl_c_of_a_real_command_is_exit_130_in_one_line(tmp_path):
    # Interrupt `leanbits run` while it trains (synthetic data, an endless number of epochs).
    exp = tmp_path / "exp.toml"
    exp.write_text(tomli_w.dumps({**EXPERIMENT, "train": {**EXPERIMENT["train"],
                                                           "epochs": 1_000_000}}))
    # A background job (a shell, CI) inherits SIGINT ignored: give the child the default,
    # so that Python turns Ctrl-C into KeyboardInterrupt as it does at a terminal.
    proc = _leanbits("run", str(exp), "--out", str(tmp_path / "run"),
                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "run" / "stages").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    lines = [line for line in err.strip().splitlines() if line.startswith("leanbits")]
    assert "Traceback" not in err and lines[-1] == "leanbits: interrupted", err


#: what the quick answers must not import (torch alone takes seconds to load)
HEAVY = ("torch", "matplotlib", "numpy", "safetensors", "onnxruntime", "constriction")
QUICK = {
    "--version": (["--version"], 0),
    "--help": (["--help"], 0),
    "no command": ([], 2),
    "unknown command": (["trian"], 2),
    # every command's parser is built from torch-free config modules (leanbits.settings),
    # and its flags are checked before the library is imported
    **{f"{name} --help": ([name, "--help"], 0) for name in cli.COMMANDS},
    "train --fc abc": (["train", "--fc", "abc"], 2),
    "train --fc ''": (["train", "--fc", ""], 2),
    "train --seed huge": (["train", "--seed", "99999999999999999999999"], 2),
    "bits --bits 99": (["bits", "snap", "--bits", "99"], 2),
    "pack --quant x": (["pack", "snap", "-o", "x.lbits", "--quant", "x"], 2),
    "prune --sparsity 2": (["prune", "snap", "--sparsity", "2"], 2),
    "profile --refit-epochs -1": (["profile", "snap", "--refit-epochs", "-1"], 2),
    "compress --bits 0": (["compress", "snap", "-o", "x.lbits", "--bits", "0"], 2),
}


#: experiment files that `leanbits run` refuses while reading them, before it builds a
#: stage (which is when torch loads): (file text, extra flags, what the error says)
BAD_EXPERIMENTS = {
    "a grid over the limit": (
        f"[train.vary]\nseed = {list(range(1000))}\nepochs = {list(range(1, 1001))}\n",
        ["--dry-run"], "1,000,000 points"),
    "an unknown key": ("[train]\nbogus = 1\n", [], "bogus"),
    "a bad value": ('[train]\nhead = "sigmoid"\n', [], "sigmoid"),
    "an empty file": ("", [], "no settings"),
}


def _probe(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``leanbits ARGV`` in a fresh interpreter that reports, on its last stderr line,
    which of :data:`HEAVY` it imported."""
    probe = ("import sys\nfrom leanbits.cli import main\n"
             "try:\n    rc = main(sys.argv[1:])\nexcept SystemExit as e:\n    rc = e.code\n"
             f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
             "print('HEAVY', heavy, file=sys.stderr)\nsys.exit(rc)\n")
    return subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


@pytest.mark.parametrize("case", QUICK, ids=list(QUICK))
def test_quick_answers_do_not_import_torch(case):
    argv, code = QUICK[case]
    r = _probe(argv)
    assert r.returncode == code, r.stderr
    assert "HEAVY []" in r.stderr, r.stderr


@pytest.mark.parametrize("case", BAD_EXPERIMENTS, ids=list(BAD_EXPERIMENTS))
def test_a_bad_experiment_is_refused_without_importing_torch(case, tmp_path):
    text, flags, says = BAD_EXPERIMENTS[case]
    (tmp_path / "exp.toml").write_text(text)
    r = _probe(["run", "exp.toml", *flags], cwd=tmp_path)
    *err, heavy = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr
    assert len(err) == 1 and err[0].startswith("leanbits: error: exp.toml") and says in err[0]
    assert heavy == "HEAVY []", r.stderr
    assert not (tmp_path / "runs").exists()


def test_the_quick_command_list_matches_the_command_modules():
    # `leanbits --help` lists cli.COMMANDS without importing the modules: same names, same
    # order, same help as the modules register.
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    registered = {a.dest: a.help for a in sub._choices_actions}
    assert list(registered) == list(cli.COMMANDS)
    assert registered == {name: help_text for name, (_, help_text) in cli.COMMANDS.items()}
    for name, (module, _) in cli.COMMANDS.items():
        # building the parser for one command registers that command for real
        only = cli.build_parser(name, every=False)
        only_sub = next(a for a in only._actions if isinstance(a, argparse._SubParsersAction))
        assert only_sub.choices[name].format_help() == sub.choices[name].format_help(), \
            f"{name} is not registered by leanbits.cli.{module}"


def test_argument_errors_are_one_line(capsys):
    for argv in (["trian"], [], ["bits"], ["pack", "x"], ["train", "--bogus"]):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "error:" in err[0] and "--help" in err[0], err


def test_import_leanbits_is_lazy_but_complete():
    probe = ("import sys, leanbits\nassert 'torch' not in sys.modules\n"
             "import torch\nm = torch.nn.Linear(4, 3)\n"
             "masks = leanbits.prune(m, sparsity=0.5)\n"
             "assert int(masks['weight'].sum()) == 6\n"
             "assert leanbits.count_bits(m, bits=4).total_bits > 0\n"
             "assert set(leanbits.__all__) == {'__version__', *leanbits._LAZY}\n")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
