"""The report over seeds: the same section from a run directory and from its committed
results.csv, frontiers of test error on log axes with seed spread chosen on validation, and
paper_studies.py recomputing every verdict from CSVs alone."""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from test_claims import (
    explosion_records,
    frontier_records,
    regularization_records,
    snapshot_records,
)

from leanbits.report import build, claims, overseeds, plots
from leanbits.report.document import Table, Text
from leanbits.report.seeds import SeedRecord, read_csv, records_of_run, write_csv
from leanbits.report.tables import markdown_blocks, markdown_table
from leanbits.results import Row, compression
from leanbits.stats import INCONCLUSIVE, SUPPORTED, estimate
from leanbits.sweep.experiment import load_experiment, parse_experiment, study_path

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (1, 2, 3)


def _bench_md():
    """benchmarks/_bench_md.py (a script directory, not a package)."""
    spec = importlib.util.spec_from_file_location("_bench_md",
                                                  ROOT / "benchmarks" / "_bench_md.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sections = _bench_md().sections


def _paper_studies_module():
    """benchmarks/paper_studies.py as a module (its functions, not its command line)."""
    spec = importlib.util.spec_from_file_location(
        "paper_studies", ROOT / "benchmarks" / "paper_studies.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NETS = (("lenet-300-100", 266610), ("lenet5", 431080))


def frontier_run(root: Path, nets=NETS, seeds=SEEDS) -> Path:
    """A finished sweep of 2 models x 2 levels x 2 bit widths x 3 seeds (results.json)."""
    rng = random.Random(0)
    rows = []
    for seed in seeds:
        for model, size in nets:
            for level in (0.9, 0.98):
                for qbits in (2, 4):
                    acc = 0.99 - level / 20 - (0.01 if qbits == 2 else 0) + rng.uniform(
                        -0.002, 0.002)
                    total = round(size * (1 - level) * (qbits + 4)) + rng.randint(0, 99)
                    rows.append(Row(
                        point=len(rows), axes={"model": model, "head": "llr",
                                               "method": "refit", "level": level,
                                               "bits": qbits, "seed": seed},
                        stages={"train": f"train/{model}-{seed}"},
                        settings={"train": {"seed": seed, "head": "llr"}},
                        val_acc=acc + rng.uniform(-0.001, 0.001), test_acc=acc,
                        nonzero_weights=round(size * (1 - level)), total_bits=total,
                        dense_bits=32 * size, compression=compression(size, total),
                        metrics={"train": {"val_acc": 0.99, "test_acc": 0.99}},
                    ).to_dict())
    root.mkdir(parents=True)
    (root / "results.json").write_text(json.dumps({"rows": rows}))
    for seed in seeds:  # the train stages' records: what each took
        for model, _size in nets:
            stage = root / "stages" / "train" / f"{model}-{seed}"
            stage.mkdir(parents=True)
            (stage / "stage.json").write_text(json.dumps({"kind": "train", "seconds": 36.0}))
    return root


def section(md: str) -> list[str]:
    """The results-over-seeds section's lines without its first (source) line."""
    body = md.split(f"## {overseeds.HEADING}\n")[1].split("\n## ")[0]
    lines = body.strip("\n").splitlines()
    return lines[1:]


def test_run_directory_and_its_csv_give_the_same_section_and_figures(tmp_path):
    run = frontier_run(tmp_path / "runs" / "frontier-mnist")
    from_run = build.build_report(run, tmp_path / "out-run")
    csv_dir = tmp_path / "docs" / "frontier-mnist"
    write_csv(csv_dir / "results.csv", records_of_run(run))
    from_csv = build.build_report(csv_dir, tmp_path / "out-csv")
    a, b = from_run.markdown.read_text(), from_csv.markdown.read_text()
    assert section(a) == section(b)
    assert "Claim 5" in section(a)[1]  # the study's verdict, from the directory's name
    assert "records from frontier-mnist/results.csv" in b
    for name in ("frontier", "error_weights"):  # same numbers, byte-identical figures
        assert ((tmp_path / "out-run" / "figures" / f"{name}.png").read_bytes()
                == (tmp_path / "out-csv" / "figures" / f"{name}.png").read_bytes())
    # the HTML shows the verdict's tables as tables
    assert b.count("| line | point | seeds |") == 1
    assert "<strong>Claim 5" in from_csv.html.read_text()


def test_a_csv_directory_without_a_known_study_and_an_unknown_study(tmp_path):
    write_csv(tmp_path / "mine" / "results.csv", snapshot_records(random.Random(1)))
    files = build.build_report(tmp_path / "mine")
    md = files.markdown.read_text()
    assert files.sections == (overseeds.HEADING,) and files.notes == ()
    assert "Claim 4" not in md and "error_weights" not in md  # no weights, no bits: table
    files = build.build_report(tmp_path / "mine", study="snapshot")
    assert "Claim 4" in files.markdown.read_text()
    with pytest.raises(build.LeanbitsError, match="--study nope: unknown; valid: explosion"):
        build.build_report(tmp_path / "mine", study="nope")


def test_frontier_points_are_seed_means_and_the_line_is_chosen_on_validation():
    rs = frontier_records(random.Random(3))
    samples = overseeds.samples_of(rs, "total_bits")
    points = overseeds.aggregate(samples)
    assert {p.line for p in points} == {"lenet-300-100", "lenet5"}  # llr / refit constant
    p = next(p for p in points if p.line == "lenet5" and p.point == "bits=4, level=0.9")
    tests = [100 * (1 - r.values["test_acc"]) for r in rs
             if r.axes["model"] == "lenet5" and r.axes["level"] == 0.9 and r.axes["bits"] == 4]
    assert p.test_error.n == len(tests) == 5
    assert p.test_error.mean == pytest.approx(sum(tests) / 5)
    # shuffle test accuracies: the joined points (Pareto on validation) do not move
    shuffled = [SeedRecord(r.seed, r.axes, {**r.values, "test_acc": 1 - r.values["test_acc"]})
                for r in rs]
    again = overseeds.aggregate(overseeds.samples_of(shuffled, "total_bits"))
    assert [q.on_front for q in again] == [q.on_front for q in points]
    assert any(q.on_front for q in points) and not all(q.on_front for q in points)


def test_error_figure_is_log_log_with_seed_spread(monkeypatch):
    rs = frontier_records(random.Random(4))
    drawn = []
    monkeypatch.setattr(plots, "_render", lambda fig: drawn.append(fig) or b"png")
    fig = overseeds.frontier_figure(overseeds.samples_of(rs, "total_bits"), "frontier",
                                    "total bits (log scale)", "t")
    ax = drawn[0].axes[0]
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert ax.get_ylabel() == "test error (%)" and "bits" in ax.get_xlabel()
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == [
        "lenet-300-100", "lenet5"]
    # every configuration carries an error bar (5 seeds): 2 lines x 6 configurations
    bars = [c for c in ax.containers if c.has_yerr]
    assert sum(len(c.lines[0].get_xdata()) for c in bars) == 12
    assert "5 seeds with ± 1 std error bars" in fig.caption
    assert "claim" not in fig.caption.lower() and "Pareto-optimal on mean validation" in (
        fig.caption)


def test_claims_markdown_reads_back_as_blocks():
    table = markdown_table(["a", "b | c"], [["x", "1.5 ± 0.2"], ["y|z", "-"]])
    (t,) = markdown_blocks(table)
    assert isinstance(t, Table) and t.headers == ["a", "b | c"]
    assert t.rows == [["x", "1.5 ± 0.2"], ["y|z", "-"]]
    result = claims.snapshot(snapshot_records(random.Random(2)))
    blocks = markdown_blocks(result.verdict + "\n\n" + result.text)
    assert isinstance(blocks[0], Text) and blocks[0].text.startswith("**Claim 4")
    tables = [b for b in blocks if isinstance(b, Table)]
    assert len(tables) == result.text.count("\n|---") and tables[0].headers[0] == "method"


def _explosion_records() -> list[SeedRecord]:
    """The explosion study's records: heads x regimes x seeds at one bit width."""
    return explosion_records(SUPPORTED, INCONCLUSIVE)


def test_paper_studies_recomputes_every_verdict_from_csvs_alone(tmp_path):
    makers = {"explosion": lambda: _explosion_records(),
              "regularization": lambda: regularization_records(random.Random(6)),
              "snapshot": lambda: snapshot_records(random.Random(7)),
              "frontier-mnist": lambda: frontier_records(random.Random(8)),
              "frontier-fashion": lambda: frontier_records(random.Random(9))}
    assert set(makers) == set(claims.STUDIES)
    for name, make in makers.items():
        write_csv(tmp_path / name / "results.csv", make())
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "paper_studies.py"),
                          "--from-csv", "--results", str(tmp_path), "--write"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    readme = (tmp_path / "README.md").read_text()
    for name, (title, fn) in claims.STUDIES.items():
        result = fn(read_csv(tmp_path / name / "results.csv"))
        assert f"## {title}" in out.stdout and result.verdict in readme
        assert f"leanbits study {name.split('-')[0]} --out runs/studies/{name}" in readme
    assert "supported" in readme
    # the claim-4 section states the budgets, read from the shipped snapshot preset
    snapshot_title = claims.STUDIES["snapshot"][0]
    section = readme.split(f"## {snapshot_title}\n", 1)[1].split("\n## ", 1)[0]
    assert _preset_budgets() in section
    # the overview: every claim part of every study, the sections' verdict words
    rows = _glance_rows(readme)
    for name, (_title, fn) in claims.STUDIES.items():
        result = fn(read_csv(tmp_path / name / "results.csv"))
        _assert_listed(result, rows[name])
    assert rows["frontier-mnist"][0][2].startswith(">= 0.97: ")  # the headline measure
    assert "measured, not a yes/no claim" in rows["frontier-mnist"][0][1]


def _glance_rows(readme: str) -> dict[str, list[list[str]]]:
    """The verdicts-at-a-glance table: {study: its rows' cells}, read by the section link
    of each row."""
    (table,) = [b for b in markdown_blocks(sections(readme)["Verdicts at a glance"])
                if isinstance(b, Table)]
    assert table.headers == ["claim", "part", "verdict", "paired difference [95 % CI]",
                             "seeds", "section"]
    rows: dict[str, list[list[str]]] = {}
    for row in table.rows:
        rows.setdefault(row[-1].split("]")[0].lstrip("["), []).append(row)
    return rows


def _assert_listed(result: claims.StudyResult, rows: list[list[str]]) -> None:
    """The rows show each finding of ``result`` in order with its verdict, and the
    findings (with the parts they combine) name every verdict of the result by the word
    the result gives it."""
    assert len(rows) == len(result.findings) > 0
    named = {}
    for row, f in zip(rows, result.findings, strict=True):
        assert row[1] == f.part and row[2].startswith(f.verdict)
        assert row[3] == (f.diff or "-")
        for g in (f, *f.by):
            if g.key:
                named[g.key] = g.verdict
        if len({g.verdict for g in f.by}) > 1:  # which part gave which verdict
            assert all(g.part in row[2] for g in f.by)
    assert named == result.verdicts
    assert all(f.verdict in result.verdict for f in result.findings if f.key)


def _preset_budgets() -> str:
    return claims.baseline_budgets(load_experiment(study_path("snapshot")),
                                   "`leanbits/sweep/studies/snapshot.toml`")


def _paper_studies(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "paper_studies.py"),
                           *args], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_paper_studies_only_replaces_its_section_and_keeps_the_others(tmp_path):
    """--only snapshot --write rewrites the claim-4 section (budgets included) and keeps
    every other study's section as the README had it, in the studies' order."""
    titles = [title for title, _fn in claims.STUDIES.values()]
    old = {title: f"Kept as written: {i}.\n\n| a |\n|---|\n| {i} |"
           for i, title in enumerate(titles)}
    (tmp_path / "README.md").write_text(
        "# An older summary\n\nIntro.\n\n" + "".join(
            f"## {t}\n\n{old[t]}\n\n" for t in reversed(titles)), encoding="utf-8")
    records = snapshot_records(random.Random(7))
    write_csv(tmp_path / "snapshot" / "results.csv", records)
    write_csv(tmp_path / "regularization" / "results.csv",
              regularization_records(random.Random(6)))  # present, but not --only
    out = _paper_studies("--from-csv", "--results", str(tmp_path), "--only", "snapshot",
                         "--write")
    assert out.returncode == 0, out.stderr
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    got = sections(readme)
    assert [t for t in got if t in old] == titles
    snapshot_title = claims.STUDIES["snapshot"][0]
    for title in titles:
        if title != snapshot_title:
            assert got[title] == old[title]
    assert claims.snapshot(records).verdict in got[snapshot_title]
    assert _preset_budgets() in got[snapshot_title]
    assert "--only snapshot --write" in got[snapshot_title]
    assert "## Verdict criteria" in readme
    # the overview stays complete: regularization (not named) from its CSV, the studies
    # without one as not measured, each row linking to its study's section
    rows = _glance_rows(readme)
    assert list(rows) == list(claims.STUDIES)
    _assert_listed(claims.snapshot(records), rows["snapshot"])
    _assert_listed(claims.regularization(regularization_records(random.Random(6))),
                   rows["regularization"])
    for name in ("explosion", "frontier-mnist", "frontier-fashion"):
        (row,) = rows[name]
        assert row[2] == "not measured under the current protocol"
    for name, (title, _fn) in claims.STUDIES.items():
        slug = title.lower().replace(":", "").replace(",", "").replace(";", "")
        assert rows[name][0][-1] == f"[{name}](#{slug.replace(' ', '-')})"


def _frontier_experiment(run: Path, models: str | None) -> Path:
    """The run's effective experiment.toml: the frontier preset, for ``models`` if given."""
    from leanbits.sweep.run import write_experiment
    write_experiment(load_experiment(study_path("frontier"), overrides=[
        f"train.vary.model={models}"] if models else []), run / "experiment.toml")
    return run / "experiment.toml"


def test_paper_studies_commits_the_runs_experiment_and_reruns_exactly_it(tmp_path):
    """Written from a run, a study's experiment.toml is committed beside its CSV, byte for
    byte the run's; its section's regenerate line reruns that file (a command `leanbits
    run` accepts) and names what differs from the preset command, or says it is the same;
    --from-csv reads the committed file back."""
    run = frontier_run(tmp_path / "runs" / "frontier-mnist")
    docs = tmp_path / "docs"
    title = claims.STUDIES["frontier-mnist"][0]
    _frontier_experiment(run, '["lenet-300-100"]')
    out = _paper_studies(str(tmp_path / "runs"), "--only", "frontier-mnist", "--results",
                         str(docs), "--write")
    assert out.returncode == 0, out.stderr
    committed = docs / "frontier-mnist" / "experiment.toml"
    assert committed.read_bytes() == (run / "experiment.toml").read_bytes()
    line = sections((docs / "README.md").read_text())[title].splitlines()[-1]
    rerun = f"leanbits run {committed} --out runs/studies/frontier-mnist --jobs 2"
    assert line.startswith(f"Regenerate: `{rerun}` (the run's own experiment; ")
    assert ("leanbits study frontier --out runs/studies/frontier-mnist --jobs 2` differs: "
            "train.vary.model = lenet-300-100 (that command: lenet-300-100, lenet5))") in line
    # what the run cost: its stages' recorded seconds, committed and shown
    cost = json.loads((docs / "frontier-mnist" / "cost.json").read_text())
    assert cost == {"stages": {"train": 6, "prune": 0, "bits": 0},
                    "seconds": {"train": 216.0, "prune": 0.0, "bits": 0.0}}
    assert "| frontier-mnist | 6 / 0.06 | 0 / 0.00 | 0 / 0.00 | 0.06 | 0.0 |" in (
        docs / "README.md").read_text()
    dry = subprocess.run([sys.executable, "-m", "leanbits", *rerun.split()[1:], "--dry-run"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert not (tmp_path / "runs" / "studies").exists()  # a dry run writes nothing
    # the same experiment as the preset command: that command is the second pointer
    _frontier_experiment(run, None)
    out = _paper_studies(str(tmp_path / "runs"), "--only", "frontier-mnist", "--results",
                         str(docs), "--write")
    assert out.returncode == 0, out.stderr
    assert committed.read_bytes() == (run / "experiment.toml").read_bytes()
    again = sections((docs / "README.md").read_text())[title].splitlines()[-1]
    assert "(the run's own experiment; the same as `leanbits study frontier --out " in again
    # from the committed CSV: the same line, read from the committed experiment.toml
    out = _paper_studies("--from-csv", "--only", "frontier-mnist", "--results", str(docs),
                         "--write")
    assert out.returncode == 0, out.stderr
    assert sections((docs / "README.md").read_text())[title].splitlines()[-1] == again
    assert "| frontier-mnist | 6 / 0.06 |" in (docs / "README.md").read_text()
    # a stage without its record: the cost is not counted (and not kept from before)
    (run / "stages" / "train" / "lenet5-1" / "stage.json").unlink()
    out = _paper_studies(str(tmp_path / "runs"), "--only", "frontier-mnist", "--results",
                         str(docs), "--write")
    assert out.returncode == 0 and "compute not counted" in out.stderr
    assert not (docs / "frontier-mnist" / "cost.json").exists()
    assert "## Compute" not in (docs / "README.md").read_text()


def test_report_of_several_directories_reads_them_as_one(tmp_path):
    """`leanbits report A B --out R`: one report over both sweeps (e.g. one per network):
    the records of both, each one's experiment named by its directory, the title naming
    both."""
    a = frontier_run(tmp_path / "a" / "frontier-lenet300", nets=NETS[:1])
    b = frontier_run(tmp_path / "b" / "frontier-lenet5", nets=NETS[1:], seeds=SEEDS[:2])
    (a / "experiment.toml").write_text('name = "a"\n[train]\nepochs = 1\n')
    (b / "experiment.toml").write_text('name = "b"\n[train]\nepochs = 2\n')
    out = subprocess.run([sys.executable, "-m", "leanbits", "report", str(a), str(b),
                          "--out", str(tmp_path / "r"), "--study", "frontier-mnist"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    md = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    assert "leanbits report: frontier-lenet300 + frontier-lenet5" in md
    assert "frontier-lenet300/experiment.toml" in md and "frontier-lenet5/experiment.toml" in md
    assert "| model | head | seeds | dense val acc (%) |" in md  # the claim-5 table
    assert "| lenet-300-100 | llr | 3 |" in md and "| lenet5 | llr | 2 |" in md
    both = build.collect_all([a, b])
    assert both.records == records_of_run(a) + records_of_run(b)
    assert both.roots == (a, b)


def test_report_of_several_directories_needs_out_and_distinct_names(tmp_path):
    a = frontier_run(tmp_path / "a" / "frontier-mnist", nets=NETS[:1])
    b = frontier_run(tmp_path / "b" / "frontier-mnist", nets=NETS[1:])
    cli = [sys.executable, "-m", "leanbits", "report", str(a), str(b)]
    out = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "--out" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run([*cli, "--out", str(tmp_path / "r")], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0 and "distinct names" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "r").exists()


def test_paper_studies_refuses_an_unknown_study():
    out = _paper_studies("--from-csv", "--only", "snapshots")
    assert out.returncode == 2 and "unknown study" in out.stderr
    assert "Traceback" not in out.stderr


def test_baseline_budgets_are_read_from_the_experiment():
    """Every number of the budgets paragraph follows the experiment's settings."""
    raw = {"name": "b", "data": {"dataset": "synthetic"},
           "train": {"epochs": 7, "rewind_epoch": 2, "l2": 1e-3},
           "prune": {"refit_epochs": 3, "finetune_epochs": 2, "rounds": 4, "round_epochs": 2,
                     "lr_grid": [0.5, 2.0],
                     "vary": {"method": ["refit", "finetune", "iterative", "rewind"]}}}
    text = claims.baseline_budgets(parse_experiment(raw), "here")
    assert text.startswith("**Budgets of the baselines (here).**")
    assert "re-fit 3; fine-tune 2 (not equal" in text
    assert "iterative 4 rounds x 2 epochs = 8" in text and "Han et al. 2015" in text
    assert "rewind 5: back to the weights after epoch 2" in text and "7-epoch run" in text
    assert "L2 0.001" in text and "Frankle et al. 2020" in text
    assert "times 0.5 / 2" in text and "none 0" not in text
    raw["prune"] |= {"refit_epochs": 2, "lr_grid": []}
    text = claims.baseline_budgets(parse_experiment(raw), "here")
    assert "fine-tune 2 (equal, as they are compared head to head)" in text
    assert "no grid" in text
    del raw["prune"]
    assert claims.baseline_budgets(parse_experiment(raw), "here") == ""


def test_committed_results_readme_states_the_budgets_it_is_generated_with():
    """docs/results/README.md carries the claim-4 budgets as the generator writes them:
    from the committed snapshot experiment.toml when there is one, else from the snapshot
    preset (so the next --write keeps them, and a changed preset shows)."""
    readme = (ROOT / "docs" / "results" / "README.md").read_text(encoding="utf-8")
    committed = ROOT / "docs" / "results" / "snapshot" / "experiment.toml"
    expected = (_paper_studies_module().budgets("snapshot", committed)
                if committed.is_file() else _preset_budgets())
    assert expected in sections(readme)[claims.STUDIES["snapshot"][0]]


def test_lines_named_group_and_arm_get_a_colour_per_arm_and_a_marker_per_group():
    def point(line: str, x: float) -> overseeds.ConfigPoint:
        return overseeds.ConfigPoint(line, f"{x}", estimate([x]), estimate([2.0, 3.0]),
                                     estimate([2.0, 3.0]), True)

    names = [f"{g} / {a}" for g in ("full", "1k", "5k", "noise20")
             for a in ("none", "l2", "group")]
    lines = overseeds.error_lines([point(n, x) for n in names for x in (1e4, 1e5)])
    style = {line.label: (line.color, line.marker) for line in lines}
    assert len(set(style.values())) == len(names)  # 12 lines, none drawn alike
    for a in ("none", "l2", "group"):
        assert len({style[f"{g} / {a}"][0] for g in ("full", "1k", "5k", "noise20")}) == 1
    for g in ("full", "1k", "5k", "noise20"):
        assert len({style[f"{g} / {a}"][1] for a in ("none", "l2", "group")}) == 1


def test_frontier_lines_of_several_networks_get_a_colour_per_network():
    """A head's fixed colour is kept while one network has that head; when two networks
    share a head (llr / lenet5 and llr / lenet-300-100), each head / network gets its own
    colour and each method its marker, so no two lines are drawn alike."""
    def point(line: str, x: float) -> overseeds.ConfigPoint:
        return overseeds.ConfigPoint(line, f"{x}", estimate([x]), estimate([2.0, 3.0]),
                                     estimate([2.0, 3.0]), True)

    def styles(names):
        lines = overseeds.error_lines([point(n, x) for n in names for x in (1e4, 1e5)])
        return {line.label: (line.color, line.marker) for line in lines}

    one = styles(["llr / lenet5", "llr / lenet5 / refit", "softmax / lenet5 / refit"])
    assert one["llr / lenet5 / refit"][0] == plots.HEAD_COLORS["llr"]
    assert one["softmax / lenet5 / refit"][0] == plots.HEAD_COLORS["softmax"]
    names = [f"{h} / {n}{m}" for h, n in (("softmax", "lenet-300-100"),
                                         ("llr", "lenet-300-100"), ("llr", "lenet5"))
             for m in ("", " / refit", " / finetune")]
    got = styles(names)
    assert len(set(got.values())) == len(names)
    assert got["llr / lenet5 / refit"][0] != got["llr / lenet-300-100 / refit"][0]
    assert got["llr / lenet5 / refit"][0] == got["llr / lenet5 / finetune"][0]
    assert got["llr / lenet5 / refit"][1] == got["softmax / lenet-300-100 / refit"][1]
