"""Sweeps under hostile use: concurrent runs, kills, damaged stages, huge grids, bad names.

Every subprocess here runs a two-point sweep on the synthetic data set, so each finishes in
seconds; the checks that need processes to die read /proc (Linux).
"""

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import tomli_w
from conftest import untimed_results

from leanbits import paths
from leanbits.cli import main
from leanbits.errors import BusyError, ConfigError
from leanbits.fileio import exclusive_lock
from leanbits.sweep import stages
from leanbits.sweep.experiment import MAX_POINTS, parse_experiment
from leanbits.sweep.run import run_experiment

TINY = {
    "name": "hostile",
    "data": {"dataset": "synthetic", "limit_train": 96, "val_size": 48},
    "train": {"fc": [8], "epochs": 1, "batch_size": 32, "lr": 0.1, "train_eval_size": 32,
              "vary": {"head": ["softmax", "llr"]}},
    "prune": {"refit_epochs": 1, "compensation_examples": 64, "sparsity": 0.5},
    "bits": {"bits": 3},
}
STAGE_COUNT = 6  # 2 train, 2 prune, 2 bits
LINUX_PROC = Path("/proc/self/stat").is_file()


def _exp(raw=None):
    return parse_experiment(copy.deepcopy(raw or TINY))


def _run(exp, out, **kw):
    return run_experiment(exp, out, "inline", log=lambda _line: None, progress=False, **kw)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of TINY (its results.json is what every other run must write)."""
    out = tmp_path_factory.mktemp("reference")
    _run(_exp(), out)
    return out


@pytest.fixture
def exp_file(tmp_path):
    p = tmp_path / "tiny.toml"
    p.write_text(tomli_w.dumps(TINY))
    return p


def _cli(*args, **popen):
    return subprocess.Popen([sys.executable, "-m", "leanbits", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _assert_intact(out: Path, reference: Path) -> None:
    """Every stage complete, nothing half-built left, the results those of the reference."""
    exp = _exp()
    root = out / "stages"
    for p in exp.points:
        for s in p.stages:
            assert stages.is_complete(root / s.relpath), s.relpath
    leftovers = [p for p in root.rglob(".*")]
    assert leftovers == []
    assert untimed_results(out / "results.json") == untimed_results(reference / "results.json")


# ----------------------------------------------------------------------------- proc helpers
def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # [state, ppid, ...] after "pid (comm)"


def _children(pid: int) -> list[int]:
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(int(d))
            if st is not None and int(st[1]) == pid:
                kids.append(int(d))
    return kids


def _descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        for kid in _children(todo.pop()):
            if kid not in found:
                found.add(kid)
                todo.append(kid)
    return found


def _alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")  # a zombie has exited


def _workers(pid: int) -> list[int]:
    out = []
    for kid in _children(pid):
        try:
            cmd = Path(f"/proc/{kid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmd:
            out.append(kid)
    return out


def _wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def _start_busy_run(exp_file: Path, out: Path) -> tuple[subprocess.Popen, set[int]]:
    """A --jobs 2 run whose two workers are both inside a stage; returns it and its tree."""
    proc = _cli("run", exp_file, "--out", out, "--jobs", 2)
    train = out / "stages" / "train"

    def busy() -> bool:
        partial = list(train.glob(".*.partial")) if train.is_dir() else []
        return len(_workers(proc.pid)) >= 2 and len(partial) >= 1

    try:
        _wait_for(busy, 180, "two workers and a stage being built")
    except AssertionError:
        proc.kill()
        proc.communicate()
        raise
    return proc, _descendants(proc.pid)


# ----------------------------------------------------------------------------- locking
def test_a_held_run_directory_is_refused_at_once_and_left_untouched(tmp_path):
    out = tmp_path / "run"
    with exclusive_lock(paths.lock(out)):
        with pytest.raises(BusyError, match=rf"in use by another leanbits run \(process "
                                            rf"{os.getpid()}\b"):
            _run(_exp(), out)
        assert sorted(p.name for p in out.iterdir()) == [".lock"]
    assert not paths.lock(out).exists()  # released and removed


def test_two_runs_started_together_one_runs_the_other_exits_2_naming_it(exp_file, tmp_path,
                                                                         reference):
    out = tmp_path / "run"
    a = _cli("run", exp_file, "--out", out)
    b = _cli("run", exp_file, "--out", out)
    results = {p.pid: (p.wait(300), *p.communicate()) for p in (a, b)}
    codes = sorted(rc for rc, _, _ in results.values())
    assert codes == [0, 2], results
    winner = next(pid for pid, (rc, _, _) in results.items() if rc == 0)
    err = next(e for rc, _, e in results.values() if rc == 2).strip().splitlines()
    assert len(err) == 1 and f"process {winner}" in err[0] and "--out" in err[0], err
    assert "Traceback" not in "".join(e for _, _, e in results.values())
    _assert_intact(out, reference)


def test_runs_sharing_a_stage_root_build_each_stage_once(exp_file, tmp_path, reference):
    shared = tmp_path / "stages"
    procs = [_cli("run", exp_file, "--out", tmp_path / n, "--stages", shared, "--json")
             for n in ("a", "b")]
    outs = [(p.wait(300), *p.communicate()) for p in procs]
    assert [rc for rc, _, _ in outs] == [0, 0], outs
    ran = [sum(json.loads(o)["ran"].values()) for _, o, _ in outs]
    assert sum(ran) == STAGE_COUNT  # the second waited on each stage and reused it
    for n in ("a", "b"):
        assert (untimed_results(tmp_path / n / "results.json")
                == untimed_results(reference / "results.json"))
    assert list(shared.rglob(".*")) == []


def test_a_stage_being_built_elsewhere_is_waited_for_not_trampled(tmp_path):
    exp = _exp()
    spec = exp.points[0].stages[0]
    out = tmp_path / spec.relpath
    task = stages.StageTask(spec.kind, spec.key, spec.config, spec.data, str(out))
    result = {}
    with exclusive_lock(paths.sibling_lock(out)):  # another run is building it
        worker = threading.Thread(target=lambda: result.update(stages.execute_stage(task)))
        worker.start()
        worker.join(1.0)
        assert worker.is_alive() and not paths.building(out).exists()
    worker.join(120)
    assert result["ran"] is True and stages.is_complete(out)
    assert stages.execute_stage(task)["ran"] is False


# ----------------------------------------------------------------------------- completeness
def _drop_all_but_marker(d: Path) -> None:
    for p in d.iterdir():
        if p.name != stages.MARKER:
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def _edit_record(change):
    def edit(d: Path) -> None:
        record = json.loads((d / stages.MARKER).read_text())
        (d / stages.MARKER).write_text(json.dumps(change(record)))
    return edit


def _truncate(name):
    def edit(d: Path) -> None:
        p = d / name
        p.write_bytes(p.read_bytes()[:-1])
    return edit


DAMAGE = {
    # kind of the damaged stage, what is done to it
    "prune stage holds only stage.json": ("prune", _drop_all_but_marker),
    "bits stage lost model.lbits": ("bits", lambda d: (d / "model.lbits").unlink()),
    "bits model.lbits one byte short": ("bits", _truncate("model.lbits")),
    "prune weights one byte short": ("prune", _truncate("weights.safetensors")),
    "record lists no files (older leanbits)": (
        "train", _edit_record(lambda r: {k: v for k, v in r.items() if k != "files"})),
    "record lists a file that is not there": (
        "train", _edit_record(lambda r: {**r, "files": {**r["files"], "extra.bin": 3}})),
    "record lists a path outside the stage": (
        "train", _edit_record(lambda r: {**r, "files": {"../../results.json": 1}})),
    "record is not JSON": ("prune", lambda d: (d / stages.MARKER).write_text("{not json")),
    "record is a list": ("bits", lambda d: (d / stages.MARKER).write_text("[1, 2]")),
    "record is a directory": ("bits", lambda d: ((d / stages.MARKER).unlink(),
                                                 (d / stages.MARKER).mkdir())),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_an_incomplete_stage_is_rebuilt_never_trusted(case, reference, tmp_path):
    kind, damage = DAMAGE[case]
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    exp = _exp()
    spec = next(s for s in exp.stages(kind))
    d = out / "stages" / spec.relpath
    assert stages.is_complete(d)
    damage(d)
    assert not stages.is_complete(d)
    summary = _run(exp, out)
    rebuilt = {"train": 3, "prune": 2, "bits": 1}[kind]  # the stage and what it feeds
    assert sum(summary.ran.values()) == rebuilt, summary.ran
    _assert_intact(out, reference)


# ----------------------------------------------------------------------------- kills
@pytest.mark.skipif(not LINUX_PROC, reason="reads /proc")
def test_kill_9_leaves_no_process_and_the_rerun_gives_identical_results(exp_file, tmp_path,
                                                                        reference):
    out = tmp_path / "run"
    proc, tree = _start_busy_run(exp_file, out)
    assert len(tree) >= 2
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    _wait_for(lambda: not any(_alive(p) for p in tree), 60,
              f"the killed run's processes {sorted(tree)} to end")
    assert not (out / "results.json").exists()
    _run(_exp(), out)
    _assert_intact(out, reference)


@pytest.mark.skipif(not LINUX_PROC, reason="reads /proc")
def test_sigterm_stops_the_workers_and_releases_the_directory(exp_file, tmp_path, reference):
    out = tmp_path / "run"
    proc, tree = _start_busy_run(exp_file, out)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(60)
    assert rc == 128 + signal.SIGTERM
    _wait_for(lambda: not any(_alive(p) for p in tree), 30,
              f"the workers {sorted(tree)} to end")
    assert not paths.lock(out).exists()
    _run(_exp(), out)
    _assert_intact(out, reference)


@pytest.mark.skipif(not LINUX_PROC, reason="reads /proc")
def test_an_interrupted_executor_terminates_running_tasks():
    from leanbits.sweep.executors import make_executor

    seen: list[int] = []

    def interrupt() -> None:  # Ctrl-C while both workers sleep inside their tasks
        seen.extend(_workers(os.getpid()))
        os.kill(os.getpid(), signal.SIGINT)

    # A shell that starts a job in the background makes it ignore SIGINT (so does CI, which
    # may run us that way): give this process Ctrl-C's default behaviour for the test.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Timer(8.0, interrupt).start()
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            with make_executor("local", jobs=2) as ex:
                list(ex.run(time.sleep, [100, 100]))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert len(seen) == 2
    _wait_for(lambda: not any(_alive(p) for p in seen), 10, "the workers to end")
    assert time.monotonic() - t0 < 60  # not the 100 s the tasks would take


# ----------------------------------------------------------------------------- grids
def _grid(n_seeds: int, n_sparsities: int) -> dict:
    raw = copy.deepcopy(TINY)
    raw["train"]["vary"] = {"seed": list(range(n_seeds))}
    raw["prune"]["vary"] = {"sparsity": [round(0.01 + i * 0.9 / n_sparsities, 6)
                                         for i in range(n_sparsities)]}
    del raw["prune"]["sparsity"]
    return raw


def test_a_grid_over_the_limit_is_refused_before_it_is_expanded(monkeypatch):
    from leanbits.sweep import grid

    expanded = []
    monkeypatch.setattr(grid, "_combos", lambda *a: expanded.append(a) or [])
    for seeds, sparsities in ((101, 100), (1000, 1000), (10**4, 10**4)):
        with pytest.raises(ConfigError, match=rf"{seeds * sparsities:,} points \(seed "
                                              rf"{seeds:,} x sparsity {sparsities:,}\).*"
                                              "--allow-large"):
            parse_experiment(_grid(seeds, sparsities))
    assert expanded == []


def test_allow_large_prints_the_size_first_then_runs_the_grid(tmp_path, capsys):
    raw = _grid(101, 100)
    p = tmp_path / "large.toml"
    p.write_text(tomli_w.dumps(raw))
    args = ["run", str(p), "--out", str(tmp_path / "run"), "--dry-run", "--json"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "10,100 points" in err[0] and "--allow-large" in err[0]
    assert main([*args, "--allow-large"]) == 0
    captured = capsys.readouterr()
    assert "grid: 10,100 points (seed 101 x sparsity 100)" in captured.err
    assert json.loads(captured.out)["points"] == 10_100 > MAX_POINTS
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- bad values
BAD = {
    # case: (change to TINY, what the one-line error must say)
    "skip as a string": ({"prune": {"vary": {"level": [{"name": "dense", "skip": "false"},
                                                        {"sparsity": 0.5}]}}},
                         r"level\[0\]\.skip: 'false' must be true or false"),
    "skip as a number": ({"prune": {"vary": {"level": [{"skip": 1}]}}},
                         r"skip: 1 must be true or false"),
    "axis label not a string": ({"train": {"vary": {"h": [{"name": 5, "head": "llr"}]}}},
                                r"h\[0\]\.name: 5 must be a non-empty string"),
    "name ..": ({"name": ".."}, r"name: '\.\.' cannot name a directory"),
    "name .": ({"name": "."}, r"name: '\.' cannot name a directory"),
    "name with /": ({"name": "a/b"}, r"name: 'a/b' cannot name a directory"),
    "name with \\": ({"name": "a\\b"}, r"cannot name a directory"),
    "name with NUL": ({"name": "a\u0000b"}, r"control character '\\x00'"),
    "name with newline": ({"name": "a\nb"}, r"control character '\\n'"),
    "name empty": ({"name": ""}, r"name: '' must be a non-empty string"),
    "name blank": ({"name": "   "}, r"must be a non-empty string"),
    "name a number": ({"name": 7}, r"name: 7 must be a non-empty string"),
    "name too long": ({"name": "x" * 300}, r"300 bytes long; at most 200"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_experiment_values_are_refused_with_one_line(case, tmp_path, monkeypatch, capsys):
    change, message = BAD[case]
    raw = copy.deepcopy(TINY)
    for k, v in change.items():
        raw[k] = {**raw[k], **v} if isinstance(v, dict) else v
    with pytest.raises(ConfigError, match=message):
        parse_experiment(raw)
    p = tmp_path / "bad.toml"
    p.write_text(tomli_w.dumps(raw))
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)  # nothing may land here (name = ".." used to write into it)
    assert main(["run", str(p)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("leanbits: error:"), err
    assert list(work.iterdir()) == []


def test_skip_false_keeps_the_stage():
    raw = copy.deepcopy(TINY)
    raw["prune"]["vary"] = {"level": [{"name": "kept", "skip": False}, {"sparsity": 0.9}]}
    exp = parse_experiment(raw)
    assert [len(p.stages) for p in exp.points] == [3, 3, 3, 3]


@pytest.mark.parametrize("argv", [
    ["run", "{exp}", "--out", "{file}"],
    ["run", "{exp}", "--out", "{file}", "--dry-run"],
    ["run", "{exp}", "--out", "{dir}", "--stages", "{file}"],
    ["report", "{ref}", "--out", "{file}"],
])
def test_an_existing_file_as_output_directory_is_one_line(argv, exp_file, reference, tmp_path,
                                                          capsys):
    file = tmp_path / "a-file"
    file.write_text("keep me")
    args = [a.format(exp=exp_file, file=file, dir=tmp_path / "run", ref=reference)
            for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is an existing file" in err[0] and str(file) in err[0], err
    assert file.read_text() == "keep me"
