"""Every file and directory name leanbits writes, one function each: a snapshot's files, a
pruning output's, a bits stage's, a sweep run's, a profile's and a report's. Code outside
this module asks it for a path (``paths.metrics(d)``) and never spells a file name itself,
so a name changes in one place.
"""

from __future__ import annotations

from pathlib import Path

# ----------------------------------------------------------------------------- snapshots


def weights(d: Path) -> Path:
    return Path(d) / "weights.safetensors"


def masks(d: Path) -> Path:
    return Path(d) / "masks.safetensors"


def model_json(d: Path) -> Path:
    """Plan + head: everything needed to rebuild the network, no pickles."""
    return Path(d) / "model.json"


def config(d: Path) -> Path:
    return Path(d) / "config.toml"


def metrics(d: Path) -> Path:
    """Final metrics of the stage (JSON object)."""
    return Path(d) / "metrics.json"


def metrics_log(d: Path) -> Path:
    """One JSON object per epoch."""
    return Path(d) / "metrics.jsonl"


def early_weights(d: Path) -> Path:
    """Weights saved early in training, for lottery-ticket rewinding."""
    return Path(d) / "weights_early.safetensors"


def lock(d: Path) -> Path:
    """The lock a writer holds in the directory it writes (a sweep run, a snapshot)."""
    return Path(d) / ".lock"


# ----------------------------------------------------------------------------- built aside


def partial(p: Path) -> Path:
    """``P.partial``: where a snapshot directory ``P`` is built before one rename makes it
    ``P``, and the default work directory of a compress search that writes ``P``."""
    return Path(str(p) + ".partial")


def _hidden_sibling(p: Path, suffix: str) -> Path:
    p = Path(p)
    return p.parent / f".{p.name}.{suffix}"


def temp_prefix(p: Path, what: str = "") -> str:
    """Name prefix of a temporary hidden sibling of ``p`` (``.P.`` or ``.P.WHAT.``), for
    ``tempfile.mkdtemp(prefix=..., dir=p.parent)``: a directory being claimed or thrown away."""
    name = Path(p).name
    return f".{name}.{what}." if what else f".{name}."


def building(p: Path) -> Path:
    """``.P.partial``: the hidden sibling a sweep stage ``P`` is built in."""
    return _hidden_sibling(p, "partial")


def replaced(p: Path) -> Path:
    """``.P.old``: where an old ``P`` is moved while a new one takes its place."""
    return _hidden_sibling(p, "old")


def sibling_work(p: Path) -> Path:
    """``.P.work``: the cache of a compress search kept beside the stage ``P`` that runs it,
    so an interrupted stage resumes its search."""
    return _hidden_sibling(p, "work")


def sibling_lock(p: Path) -> Path:
    """``.P.lock``: the lock held beside ``P`` while ``P`` is built (a sweep stage, a
    compress work directory)."""
    return _hidden_sibling(p, "lock")


# ----------------------------------------------------------------------------- pruning


def beside(snap: Path, kind: str, key: str) -> Path:
    """``SNAP-KIND-KEY``: the default output directory of a command run on the snapshot
    ``SNAP`` (``leanbits prune``: kind ``prune``, ``leanbits profile``: ``profile``), beside
    it; ``key`` is the hash of the command's settings."""
    p = Path(snap)
    return p.parent / f"{p.name}-{kind}-{key}"


def report(d: Path) -> Path:
    """The pruning report of ``leanbits prune`` (written last: its presence marks the end)."""
    return Path(d) / "report.json"


def compact(d: Path) -> Path:
    """The compact rebuild (dead units removed) of a pruned snapshot: a snapshot itself."""
    return Path(d) / "compact"


def profile(d: Path) -> Path:
    """A pruning profile: ``{"source", "config", "rows"}`` (see :mod:`leanbits.results`)."""
    return Path(d) / "profile.json"


def profile_plot(d: Path) -> Path:
    return Path(d) / "profile.png"


# ----------------------------------------------------------------------------- bits


def lbits(d: Path) -> Path:
    """A packed model (a bits stage's output, or the model a run keeps)."""
    return Path(d) / "model.lbits"


def account(d: Path) -> Path:
    """The bit account of a bits stage's ``model.lbits`` (JSON)."""
    return Path(d) / "account.json"


def compress(d: Path) -> Path:
    """A compress search's record: in its work directory, the key of the search (which
    marks the directory as one); in a compress stage, what the search chose (JSON)."""
    return Path(d) / "compress.json"


def compress_run(d: Path, kind: str, key: str) -> Path:
    """One cached result of a compress search (a method run or a candidate) in its work
    directory."""
    return Path(d) / f"{kind}-{key}.json"


def compress_tensors(d: Path, key: str) -> Path:
    """The pruned weights of one cached method run in a compress work directory."""
    return Path(d) / f"pruned-{key}.safetensors"


# ----------------------------------------------------------------------------- sweeps


def run_lock(d: Path) -> Path:
    """The lock a sweep run holds on its run directory while it runs."""
    return Path(d) / ".lock"


def stages(d: Path) -> Path:
    """Default directory of a sweep run's stage outputs."""
    return Path(d) / "stages"


def stage_marker(d: Path) -> Path:
    """``stage.json`` of a stage directory: written last; its presence marks completion."""
    return Path(d) / "stage.json"


def results(d: Path) -> Path:
    """One document with every result row of a run, its axes and frontiers."""
    return Path(d) / "results.json"


def results_log(d: Path) -> Path:
    """The same result rows, one JSON object per line."""
    return Path(d) / "results.jsonl"


def seed_records(d: Path) -> Path:
    """Compact per-seed results of a study, one row per seed and grid point (CSV)."""
    return Path(d) / "results.csv"


def experiment(d: Path) -> Path:
    """The experiment a sweep run expanded, as run (overrides applied)."""
    return Path(d) / "experiment.toml"


# ----------------------------------------------------------------------------- reports


def report_markdown(d: Path) -> Path:
    return Path(d) / "report.md"


def report_html(d: Path) -> Path:
    return Path(d) / "report.html"


def figures(d: Path) -> Path:
    """PNG figures linked from ``report.md``."""
    return Path(d) / "figures"


def figure(d: Path, name: str) -> Path:
    """One PNG figure of the report in ``d``."""
    return figures(d) / f"{name}.png"


# ----------------------------------------------------------------------------- export


def onnx(d: Path, name: str) -> Path:
    """An ONNX export of the model called ``name`` (benchmarked beside the others)."""
    return Path(d) / f"{name}.onnx"
