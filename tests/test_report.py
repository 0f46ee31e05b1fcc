"""``leanbits report``: a fake sweep / snapshot / profile directory in, report.md + report.html
out - files present, images valid PNGs, tables holding the numbers, and (in headless
Chromium) every image loading with no console error."""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import re
import shutil
import signal
import statistics
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from leanbits.cli import report as cli
from leanbits.console import fmt
from leanbits.errors import LeanbitsError
from leanbits.report import (
    bits,
    build,
    configuration,
    document,
    frontier,
    grouping,
    html,
    markdown,
    profile,
    tables,
    training,
)
from leanbits.report.collect import TrainingRun, collect
from leanbits.results import Row, profile_document
from leanbits.sweep.frontier import pareto_front

HEADS = ("softmax", "llr", "llr-code")
LAYERS = {"fc1": 784 * 300, "fc2": 300 * 100, "out": 100 * 10}


# ----------------------------------------------------------------------------- fake data
def epochs_for(head: str, n: int = 8) -> list[dict]:
    """Per-epoch records shaped like leanbits.train's, with the trends the paper describes:
    softmax weights and logits keep growing and its validation loss turns up; the LLR heads
    saturate."""
    grow = {"softmax": 0.35, "llr": 0.08, "llr-code": 0.1}[head]
    out = []
    for e in range(1, n + 1):
        train_loss = 0.35 * math.exp(-0.45 * e) + 0.01
        val_loss = 0.12 + 0.3 * math.exp(-0.6 * e) + (0.012 * e if head == "softmax" else 0)
        train_acc = 1 - 0.08 * math.exp(-0.5 * e)
        val_acc = 0.978 - 0.06 * math.exp(-0.6 * e) + (0.004 if head != "softmax" else 0)
        layers = {}
        for i, (name, numel) in enumerate(LAYERS.items()):
            scale = 1.0 + grow * e * (3 if name == "out" else 1)
            layers[name] = {"l2_norm": (8.0 + 2 * i) * scale, "max_abs": 0.3 * scale + 0.05 * i,
                            "zero_frac": 0.0 if head != "llr-code" else 0.01 * e,
                            "numel": numel}
        out.append({
            "epoch": e, "lr": 0.05 * 0.5 * (1 + math.cos(math.pi * e / n)),
            "train_loss": train_loss, "train_acc": train_acc,
            "train_eval_loss": train_loss * 0.9, "train_eval_acc": train_acc * 0.999,
            "val_loss": val_loss, "val_acc": val_acc, "gap_acc": train_acc * 0.999 - val_acc,
            "mean_abs_output": 2.0 + grow * 6 * e, "layers": layers,
            "dead_units": {"relu1": e, "relu2": 2 * e}, "epoch_time_s": 1.5,
        })
    return out


def write_snapshot(d: Path, head: str, epochs: int = 8) -> list[dict]:
    d.mkdir(parents=True)
    recs = epochs_for(head, epochs)
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (d / "config.toml").write_text(
        f'[data]\ndataset = "mnist"\nval_size = 5000\n\n[train]\nmodel = "lenet-300-100"\n'
        f'head = "{head}"\nepochs = {epochs}\nlr = 0.05\n')
    (d / "metrics.json").write_text(json.dumps(
        {"status": "complete", "val_acc": recs[-1]["val_acc"], "test_acc": 0.9791,
         "params": 266610, "weights": 266200, "nonzero_weights": 266200}))
    (d / "model.json").write_text(json.dumps({"plan": {}, "head": {"kind": head}}))
    return recs


def account(sparsity: float, qbits: int) -> dict:
    """Per-layer and header bits of a packed LeNet-300-100 at a sparsity and bit width."""
    layers = {}
    for name, numel in LAYERS.items():
        nz = round(numel * (1 - sparsity * (1.03 if name == "fc1" else 0.85)))
        layers[name] = {"weights": numel, "nonzero": nz,
                        "bits": {"values": nz * qbits, "position": round(nz * 4.2),
                                 "codebook": 16 * 2 ** qbits + 32,
                                 "nonweight": 16 * (300 if name == "fc1" else 10)}}
    return {"layers": layers, "header": 412}


def sweep_row(point: int, head: str, sparsity: float | None, qbits: int) -> dict:
    """A row of results.json as leanbits.sweep.run writes it (sparsity None: kept dense)."""
    s = sparsity or 0.0
    acct = account(s, qbits)
    layers = acct["layers"]
    parts = {p: sum(la["bits"][p] for la in layers.values())
             for p in ("values", "position", "codebook", "nonweight")}
    total = acct["header"] + sum(parts.values())
    nonzero = sum(la["nonzero"] for la in layers.values())
    base = {"softmax": 0.979, "llr": 0.982, "llr-code": 0.981}[head]
    acc = base - 0.15 * s ** 8 - 0.02 * 2.0 ** -qbits
    level = "dense" if sparsity is None else sparsity
    stages = {"train": f"train/lenet-300-100-{head}-0a1b2c",
              "bits": f"bits/kmeans-{qbits}-auto-{head}-{level}"}
    if sparsity is not None:
        stages["prune"] = f"prune/refit-{sparsity}-{head}"
    return Row(
        point=point, axes={"head": head, "level": level, "bits": qbits}, stages=stages,
        settings={"data": {"dataset": "mnist"}, "train": {"head": head, "epochs": 8, "seed": 1},
                  **({"prune": {"method": "refit", "sparsity": sparsity}}
                     if sparsity is not None else {}),
                  "bits": {"bits": qbits, "quant": "kmeans", "index": "auto"}},
        val_acc=round(acc + 0.001, 4), test_acc=round(acc, 4), nonzero_weights=nonzero,
        weights=sum(LAYERS.values()), sparsity=sparsity,
        effective_connections=None if sparsity is None else nonzero - 97,
        layer_sparsity={k: 1 - la["nonzero"] / la["weights"] for k, la in layers.items()},
        total_bits=total,
        bits_breakdown={**parts, "header": acct["header"], "padding": 3},
        layer_bits={k: la["bits"] for k, la in layers.items()},
        file_bytes=(total + 7) // 8, dense_bits=32 * 266610, compression=32 * 266610 / total,
        metrics={  # each stage's own evaluation: the pruned model before quantization
            "train": {"val_acc": base + 0.001, "test_acc": base, "weights": 266200,
                      "nonzero_weights": 266200},
            **({"prune": {"val_acc": base - 0.15 * s ** 8 + 0.001,
                          "test_acc": base - 0.15 * s ** 8, "weights": 266200,
                          "nonzero_weights": nonzero, "sparsity": sparsity,
                          "effective_connections": nonzero - 97}}
               if sparsity is not None else {})},
    ).to_dict()


def profile_rows(method: str, head: str = "llr") -> list[dict]:
    """Rows of a profile.json as leanbits.prune.search.profile writes them."""
    rows = []
    for s in (0.5, 0.8, 0.9, 0.95, 0.98):
        nz = round(sum(LAYERS.values()) * (1 - s))
        conns = {"fc1": nz - 1000, "fc2": 900, "out": 100}
        rows.append(Row(
            point=len(rows), axes={"method": method, "sparsity": s},
            settings={"train": {"head": head}, "prune": {"method": method, "sparsity": s}},
            val_acc=0.98 - 0.2 * s ** 10, test_acc=0.979 - 0.2 * s ** 10,
            weights=sum(LAYERS.values()), nonzero_weights=nz, sparsity=s,
            effective_connections=nz - int(50 * s),
            layer_sparsity={k: 1 - c / LAYERS[k] for k, c in conns.items()},
            metrics={"prune": {"connections": conns,
                               "live_units": {"fc1": 290, "fc2": 97, "out": 10}}},
        ).to_dict())
    return rows


SWEEP_POINTS = [(h, s, q) for h in HEADS for s in (None, 0.9, 0.97) for q in (2, 4, 8)]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    """A sweep run directory laid out as leanbits.sweep.run writes one: experiment.toml,
    stages/train/* snapshots, results.json and results.jsonl."""
    root = tmp_path_factory.mktemp("sweep")
    (root / "experiment.toml").write_text(
        '# The experiment that made this run directory\nname = "frontier"\n\n'
        '[train.vary]\nhead = ["softmax", "llr", "llr-code"]\n\n[bits.vary]\n'
        'bits = [2, 4, 8]\n')
    rows = [sweep_row(i, *pt) for i, pt in enumerate(SWEEP_POINTS)]
    for h in HEADS:
        write_snapshot(root / "stages" / "train" / f"lenet-300-100-{h}-0a1b2c", h)
    (root / "results.json").write_text(json.dumps(
        {"schema": 1, "experiment": "frontier", "axes": ["head", "level", "bits"],
         "rows": rows, "frontier": {}}))
    (root / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture(scope="module")
def built(sweep_dir: Path) -> build.ReportFiles:
    return build.build_report(sweep_dir)


SEEDS = (1, 2, 3)
SEED_HEADS = ("softmax", "llr")


def seed_shift(seed: int) -> float:
    """A seed's offset of every accuracy: unequal steps, so the std is not a round number."""
    return {1: 0.0, 2: -0.004, 3: 0.0015}[seed]


def seeded_sweep_row(point: int, seed: int, head: str, sparsity: float | None,
                     qbits: int) -> dict:
    """:func:`sweep_row` of one seed: a seed axis, the seed in the train settings, the
    seed's own stages, and accuracies and bits that move with the seed."""
    row = sweep_row(point, head, sparsity, qbits)
    row["axes"]["seed"] = seed
    row["settings"]["train"]["seed"] = seed
    row["settings"]["data"]["split_seed"] = seed  # the split follows the seed
    row["stages"] = {k: f"{v}-s{seed}" for k, v in row["stages"].items()}
    for key in ("val_acc", "test_acc"):
        row[key] = round(row[key] + seed_shift(seed), 4)
    row["total_bits"] += 100 * seed * seed
    for stage in row["metrics"].values():
        for key in ("val_acc", "test_acc"):
            stage[key] += seed_shift(seed)
    return row


@pytest.fixture(scope="module")
def seeds_dir(tmp_path_factory) -> Path:
    """A sweep of 2 heads x 3 seeds laid out as leanbits.sweep.run writes it: per head and
    seed a snapshot (its losses and final accuracies moved by the seed) and its rows."""
    root = tmp_path_factory.mktemp("seeds")
    (root / "experiment.toml").write_text(
        'name = "seeds"\n\n[train.vary]\nhead = ["softmax", "llr"]\nseed = [1, 2, 3]\n')
    rows = []
    for seed in SEEDS:
        for h in SEED_HEADS:
            d = root / "stages" / "train" / f"lenet-300-100-{h}-0a1b2c-s{seed}"
            recs = write_snapshot(d, h)
            config = (d / "config.toml").read_text()  # as a sweep writes it: the seeds in
            (d / "config.toml").write_text(config.replace(  # it, the split following
                "[data]\n", f"[data]\nsplit_seed = {seed}\n") + f"seed = {seed}\n")
            for e in recs:
                e["val_loss"] += 0.01 * seed * seed
            (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
            final = json.loads((d / "metrics.json").read_text())
            final.update(val_acc=final["val_acc"] + seed_shift(seed),
                         test_acc=final["test_acc"] + seed_shift(seed),
                         train_time_s=10.0 + seed * seed)
            (d / "metrics.json").write_text(json.dumps(final))
            rows += [seeded_sweep_row(len(rows), seed, h, s, q) for _, s, q in
                     (pt for pt in SWEEP_POINTS if pt[0] == h)]
    (root / "results.json").write_text(json.dumps(
        {"schema": 1, "experiment": "seeds", "axes": ["head", "seed", "level", "bits"],
         "rows": rows, "frontier": {}}))
    return root


def md_table(md: str, title: str) -> tuple[list[str], list[list[str]], str]:
    """Headers, rows (cells as text) and the paragraph after the Markdown table titled
    ``title``."""
    after = md.split(f"**{title}**\n\n")[1].split("\n\n")
    lines = after[0].splitlines()
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
             for line in lines]
    return cells[0], cells[2:], after[1]


def test_multi_seed_report_tables_are_one_row_per_configuration(seeds_dir: Path,
                                                                  tmp_path: Path):
    """3 seeds of 2 heads: every table of the training, pruning-profile and frontier
    sections has one row per configuration whose cells are mean ± std over the seeds (as
    computed here from the files written), each followed by where the per-seed values are."""
    files = build.build_report(seeds_dir, tmp_path)
    md = files.markdown.read_text()
    assert files.sections == ("Results over seeds", "Training", "Pruning profile",
                              "Accuracy against total bits", "Configuration")
    snaps = {(h, seed): seeds_dir / "stages" / "train" / f"lenet-300-100-{h}-0a1b2c-s{seed}"
             for h in SEED_HEADS for seed in SEEDS}

    def per_seed(h: str, read) -> list[float]:
        return [read(snaps[h, seed]) for seed in SEEDS]

    def last_epoch(d: Path) -> dict:
        return json.loads((d / "metrics.jsonl").read_text().splitlines()[-1])

    headers, rows, after = md_table(md, "Final metrics: mean ± std over seeds")
    assert [r[:2] for r in rows] == [["softmax", "3"], ["llr", "3"]]
    assert after == "Per-seed values: stages/train/*/metrics.json."
    for h, row in zip(SEED_HEADS, rows, strict=True):
        cell = dict(zip(headers, row, strict=True))
        assert cell["test acc (%)"] == pm_text(per_seed(h, lambda d: 100 * json.loads(
            (d / "metrics.json").read_text())["test_acc"]), 2)
        assert cell["train time (s)"] == pm_text(per_seed(h, lambda d: json.loads(
            (d / "metrics.json").read_text())["train_time_s"]), 1)
    headers, rows, after = md_table(
        md, "After the last epoch: mean ± std over seeds (every epoch: the figures above)")
    assert [r[0] for r in rows] == ["softmax", "llr"]
    assert after == "Per-seed values: stages/train/*/metrics.jsonl (every epoch)."
    for h, row in zip(SEED_HEADS, rows, strict=True):
        assert dict(zip(headers, row, strict=True))["val loss"] == pm_text(
            per_seed(h, lambda d: last_epoch(d)["val_loss"]), 4)
    headers, rows, _ = md_table(md, "Per layer after the last epoch: mean ± std over seeds")
    assert [r[:3] for r in rows] == [[h, k, "3"] for h in SEED_HEADS for k in LAYERS]
    _, rows, _ = md_table(md, "Units that never fire on the validation set after the last "
                          "epoch: mean ± std over seeds")
    assert rows == [[h, "3", "8.0 ± 0.0", "16.0 ± 0.0"] for h in SEED_HEADS]
    assert "Per epoch:" not in md and "Per layer after the last epoch: softmax" not in md

    results = json.loads((seeds_dir / "results.json").read_text())["rows"]

    def over_seeds(rows_of_config: list[dict], read, digits: int) -> str:
        assert sorted(r["axes"]["seed"] for r in rows_of_config) == list(SEEDS)
        return pm_text([read(r) for r in rows_of_config], digits)

    # pruning profile: per head and level, the pruned model's accuracy over seeds
    headers, rows, after = md_table(md, "Pruning profile: mean ± std over seeds")
    assert len(rows) == len(SEED_HEADS) * 3 and after == "Per-seed values: results.json."
    for h in SEED_HEADS:
        for s in (0.9, 0.97):
            (row,) = [r for r in rows if r[0] == f"{h} / refit"
                      and r[2].startswith(f"{100 * s:.2f}")]
            want = over_seeds([r for r in results if r["axes"]["head"] == h
                               and r["axes"]["level"] == s and r["axes"]["bits"] == 2],
                              lambda r: 100 * r["metrics"]["prune"]["test_acc"], 2)
            assert dict(zip(headers, row, strict=True))["test acc (%)"] == want
    # every grid point but the seed: one row, total bits and test accuracy over seeds
    headers, rows, after = md_table(
        md, "All configurations, fewest bits first: mean ± std over seeds; frontier: "
        "Pareto-optimal in mean total bits and mean validation accuracy")
    assert len(rows) == len(results) // len(SEEDS) and after.startswith("Per-seed values")
    for row in rows:
        cell = dict(zip(headers, row, strict=True))
        axes = dict(kv.split("=") for kv in cell["point"].split(", "))
        members = [r for r in results if r["axes"]["head"] == axes["head"]
                   and str(r["axes"]["level"]) == axes["level"]
                   and str(r["axes"]["bits"]) == axes["bits"]]
        assert cell["seeds"] == "3"
        assert cell["total bits"] == over_seeds(members, lambda r: r["total_bits"], 0)
        assert cell["test acc (%)"] == over_seeds(members, lambda r: 100 * r["test_acc"], 2)
    # every other table of the section: seeds aggregated, followed by the per-seed line
    for title in re.findall(r"^\*\*((?:Fewest|Bit breakdown|Bits per layer|Per-layer "
                            r"sparsity).*)\*\*$", md, re.M):
        headers, rows, after = md_table(md, title)
        assert "mean ± std over seeds" in title and after.startswith("Per-seed values: ")
        assert rows and all(" ± " in c or c == "-" for r in rows for c in r[2:]), title
    assert not re.search(r"seed=\d", md.split("## Training")[1].split("## Configuration")[0])
    # configuration: the experiment file, then one config.toml per configuration (seed 1's),
    # titled with its seeds and the keys that differ between their files
    config = md.split("## Configuration\n\n")[1]
    assert config.count("```toml") == 1 + len(SEED_HEADS)
    assert config_titles(config) == ["experiment.toml"] + [
        f"{h} - seeds 1, 2, 3 (data.split_seed and train.seed follow the seed); shown: seed 1, "
        f"stages/train/lenet-300-100-{h}-0a1b2c-s1/config.toml" for h in SEED_HEADS]
    for h in SEED_HEADS:
        assert (snaps[h, 1] / "config.toml").read_text() in config
    assert config.rstrip().endswith("Per-seed values: stages/train/*/config.toml.")


def config_titles(section: str) -> list[str]:
    """The titles of the code blocks of a Markdown report's configuration section."""
    return re.findall(r"^\*\*(.+)\*\*\n\n```", section, re.M)


def test_config_of_seeds_that_differ_in_more_than_the_seed(seeds_dir: Path, tmp_path: Path):
    """What differs between the seeds' config.toml is read from the files: a split seed
    that stays put is not said to follow the seed, and runs of one configuration (by the
    results' settings) whose files differ in another key - not one configuration by
    without_seed's definition - are listed apart, each with its seeds and its value, and
    noted."""
    root = tmp_path / "seeds"
    shutil.copytree(seeds_dir, root)
    snap = root / "stages" / "train"
    for seed in SEEDS:  # softmax: one split for every seed
        p = snap / f"lenet-300-100-softmax-0a1b2c-s{seed}" / "config.toml"
        p.write_text(p.read_text().replace(f"split_seed = {seed}\n", "split_seed = 0\n"))
    p = snap / "lenet-300-100-llr-0a1b2c-s2" / "config.toml"  # llr seed 2: another lr
    p.write_text(p.read_text().replace("lr = 0.05\n", "lr = 0.1\n"))
    data = collect(root)
    training.name_runs(data.runs, data.results)
    notes: list[str] = []
    section = markdown.to_markdown(document.Report(
        "r", configuration.configuration_section(data.configs, data.runs, notes)))
    llr = "stages/train/lenet-300-100-llr-0a1b2c-s{}/config.toml"
    assert config_titles(section) == [
        "experiment.toml",
        "softmax - seeds 1, 2, 3 (train.seed follows the seed); shown: seed 1, "
        "stages/train/lenet-300-100-softmax-0a1b2c-s1/config.toml",
        "llr, train.lr = 0.05 - seeds 1, 3 (data.split_seed and train.seed follow the "
        "seed); shown: seed 1, " + llr.format(1),
        "llr, train.lr = 0.1 - seed 2; shown: " + llr.format(2)]
    assert (root / llr.format(2)).read_text() in section
    assert notes == ["Configuration: the runs of llr differ in more than the seed (train.lr), "
                     "so their config.toml are listed apart with their seeds; the tables "
                     "above still take them as one configuration."]


def test_single_seed_report_keeps_its_per_run_tables(built: build.ReportFiles):
    """A run of one seed per configuration: a table per run, every epoch, plain numbers."""
    md = built.markdown.read_text()
    body = md.split("## Training")[1].split("## Configuration")[0]
    assert "±" not in body and "Per-seed values" not in body and "seeds |" not in body
    for h in HEADS:
        headers, rows, _ = md_table(
            md, f"Per epoch: {h} (stages/train/lenet-300-100-{h}-0a1b2c)")
        assert len(rows) == 8 and headers[0] == "epoch"
    headers, rows, _ = md_table(md, "Final metrics")
    assert headers[:3] == ["run", "val_acc", "test_acc"] and len(rows) == len(HEADS)


# ----------------------------------------------------------------------------- PNG checks
def check_png(data: bytes) -> tuple[int, int]:
    """Walk a PNG's chunks (CRCs verified, image data inflated); return (width, height)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    pos, idat, size, seen_end = 8, b"", None, False
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            seen_end = True
        pos += 12 + length
    assert size and size[0] > 0 and size[1] > 0 and seen_end
    assert len(zlib.decompress(idat)) > 0
    return size


def html_images(page: str) -> list[str]:
    return re.findall(r'<img[^>]*\ssrc="([^"]*)"', page)


def decode_data_uri(uri: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix), uri[:60]
    return base64.b64decode(uri[len(prefix):], validate=True)


# ----------------------------------------------------------------------------- sweep report
def test_sweep_report_files_and_figures(built: build.ReportFiles, sweep_dir: Path):
    md = built.markdown.read_text()
    assert built.markdown == sweep_dir / "report.md" and built.html.is_file()
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert set(linked) == {f"figures/{n}.png" for n in build.FIGURE_NAMES}
    for rel in linked:
        check_png((sweep_dir / rel).read_bytes())
    page = built.html.read_text()
    imgs = html_images(page)
    assert len(imgs) == len(build.FIGURE_NAMES)
    for uri in imgs:
        check_png(decode_data_uri(uri))
    # self-contained: nothing that would make a browser fetch anything
    assert not re.search(r'(src|href)="(?!data:|#)', page)
    assert "<script" not in page and "<link" not in page


def test_sweep_report_sections_tables_and_config(built: build.ReportFiles, sweep_dir: Path):
    md, page = built.markdown.read_text(), built.html.read_text()
    assert built.sections == ("Results over seeds", "Training", "Pruning profile",
                              "Accuracy against total bits",
                              "Configuration")
    assert built.notes == ()
    rows = json.loads((sweep_dir / "results.json").read_text())["rows"]
    softmax = [json.loads(line) for line in (
        sweep_dir / "stages/train/lenet-300-100-softmax-0a1b2c/metrics.jsonl"
    ).read_text().splitlines()]
    numbers = [
        fmt(softmax[-1]["val_loss"]), fmt(softmax[3]["mean_abs_output"]),  # training table
        fmt(softmax[-1]["layers"]["out"]["l2_norm"]),                      # per-layer table
        fmt(rows[4]["nonzero_weights"]),                                   # pruning table
        fmt(rows[4]["metrics"]["prune"]["effective_connections"]),
        fmt(rows[5]["total_bits"]), fmt(rows[5]["test_acc"]),              # frontier table
        fmt(rows[5]["layer_bits"]["fc2"]["position"]),                     # bits per layer
    ]
    for text in numbers:
        assert text in md, text
        assert text in page, text
    # the "frontier" column marks exactly the Pareto set of the sweep's own pareto_front
    front = pareto_front([(r["total_bits"], r["test_acc"]) for r in rows])
    table = md.split("**All points, fewest bits first**")[1].split("\n\n")[1]
    assert sum(line.rstrip().endswith("| yes |") for line in table.splitlines()) == len(front)
    assert len(table.splitlines()) == 2 + len(rows)
    # groups are the trained networks, named by the axis telling them apart
    assert "| Fewest total bits" not in md and "Fewest total bits reaching" in md
    levels = md.split("Fewest total bits reaching")[1].split("\n\n")[1]
    assert [line.split(" | ")[0] for line in levels.splitlines()[2:]] == [
        "| softmax", "| llr", "| llr-code"]
    # config: experiment file and each snapshot's config.toml, verbatim
    assert 'head = ["softmax", "llr", "llr-code"]' in md
    assert 'head = [&quot;softmax&quot;, &quot;llr&quot;, &quot;llr-code&quot;]' in page
    assert "lenet-300-100-llr-code-0a1b2c/config.toml" in md
    # one seed per configuration: every file as it is, titled by its path, nothing else
    files = ["experiment.toml", *(f"stages/train/lenet-300-100-{h}-0a1b2c/config.toml"
                                  for h in sorted(HEADS))]  # in the order found
    assert md.split("## Configuration\n\n")[1].rstrip() == "\n\n".join(
        f"**{f}**\n\n```toml\n{(sweep_dir / f).read_text().rstrip()}\n```" for f in files)
    # the bit breakdown: every category, summing to the total (padding is not a bit of it)
    bits_table = md.split("**Bit breakdown (bits)**")[1].split("\n\n")[1]
    assert bits_table.splitlines()[0] == (
        "| point | values | positions | codebook | non-weight | header | total |")
    for line in bits_table.splitlines()[2:]:
        cells = [int(c.replace(",", "")) for c in line.strip("| ").split(" | ")[1:]]
        assert sum(cells[:-1]) == cells[-1]


def test_report_rewrite_is_atomic_and_removes_stale_figures(tmp_path: Path):
    snap = tmp_path / "snap"
    write_snapshot(snap, "llr", epochs=3)
    stale = snap / "figures" / "frontier.png"
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    files = build.build_report(snap, tmp_path / "out")
    assert stale.read_bytes() == b"old"  # --out given: the snapshot dir is not touched
    # no exactly-zero weights in this llr run: no sparsity figure
    assert {p.name for p in files.figures} == {"weights.png", "outputs.png", "loss.png"}
    (tmp_path / "out" / "figures" / "frontier.png").write_bytes(b"old")
    build.build_report(snap, tmp_path / "out")
    assert not (tmp_path / "out" / "figures" / "frontier.png").exists()
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_snapshot_dir_gives_training_curves_only(tmp_path: Path):
    write_snapshot(tmp_path / "snap", "softmax", epochs=4)
    files = build.build_report(tmp_path / "snap")
    assert files.sections == ("Notes", "Training", "Configuration")
    assert any("frontier: skipped" in n for n in files.notes)
    md = files.markdown.read_text()
    assert "softmax (snap)" in md and 'head = "softmax"' in md


def test_profile_dir_with_source_snapshot_outside(tmp_path: Path):
    snap = tmp_path / "runs" / "lenet-llr"
    write_snapshot(snap, "llr", epochs=3)
    d = tmp_path / "prof"
    d.mkdir()
    rows = profile_rows("refit") + profile_rows("finetune")
    rows.append(Row(axes={"method": "rewind", "sparsity": 0.99},
                    settings={"prune": {"method": "rewind"}}, error="layer emptied").to_dict())
    (d / "profile.json").write_text(json.dumps(profile_document(
        [Row.from_dict(r) for r in rows], {"scope": "global", "refit_epochs": 2},
        str(snap.resolve()))))
    files = build.build_report(d)
    assert files.sections == ("Notes", "Training", "Pruning profile", "Configuration")
    assert (d / "figures" / "prune_profile.png").is_file()
    md = files.markdown.read_text()
    assert fmt(rows[3]["nonzero_weights"]) in md and fmt(rows[7]["effective_connections"]) in md
    assert "| refit |" in md and "| finetune |" in md and "rewind" not in md
    assert '"refit_epochs": 2' in md  # the profile's config
    assert "llr (lenet-llr)" in md    # the profiled snapshot's curves
    # per-layer sparsity: effective connections per layer against the snapshot's layer sizes
    sparsity = md.split("**Per-layer sparsity (% of weights zero)**")[1].split("\n\n")[1]
    assert sparsity.splitlines()[0] == "| point | fc1 | fc2 | out |"
    assert f"| {fmt(100 * (1 - 900 / LAYERS['fc2']))} |" in sparsity


def test_profile_and_results_jsonl_with_a_bad_line(tmp_path: Path):
    (tmp_path / "profile.json").write_text(json.dumps({"rows": profile_rows("refit")}))
    rows = [sweep_row(i, *pt) for i, pt in enumerate(SWEEP_POINTS[:6])]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows)
                                            + '{"point": 7, "tot')  # killed writer
    files = build.build_report(tmp_path)
    assert files.sections == ("Notes", "Pruning profile", "Accuracy against total bits")
    assert any("results.jsonl line 7: not JSON" in n for n in files.notes)
    md = files.markdown.read_text()
    assert f"| {fmt(rows[4]['bits_breakdown']['codebook'])} |" in md
    assert "Per-layer sparsity" in md and "figures/sparsity.png" in md


def test_unreadable_profile_is_a_note(tmp_path: Path):
    (tmp_path / "profile.json").write_text(json.dumps({"rows": "nope"}))
    write_snapshot(tmp_path / "snap", "llr", epochs=2)
    files = build.build_report(tmp_path)
    assert any("profile.json: no list of row objects" in n for n in files.notes)


def test_empty_dir_is_a_clear_error(tmp_path: Path):
    with pytest.raises(LeanbitsError, match="nothing to report"):
        build.build_report(tmp_path)
    with pytest.raises(LeanbitsError, match="not a directory"):
        build.build_report(tmp_path / "missing")
    assert not (tmp_path / "report.md").exists()


def test_rows_missing_keys_skip_sections_with_notes(tmp_path: Path):
    (tmp_path / "results.json").write_text(json.dumps(
        {"rows": [{"test_acc": 0.9, "total_bits": 1000}, {"test_acc": 0.95, "total_bits": 4000},
                  {"val_acc": 0.5, "axes": {"bits": 4}}]}))
    files = build.build_report(tmp_path)
    assert "Accuracy against total bits" in files.sections
    assert any("Pruning profile: skipped" in n for n in files.notes)
    assert any("Bit breakdown: skipped" in n for n in files.notes)
    assert any("Training curves: skipped" in n for n in files.notes)
    assert any("Per-layer sparsity: skipped" in n for n in files.notes)


# ----------------------------------------------------------------------------- pure helpers
def test_pruned_models_give_one_point_per_pruned_model():
    rows = [Row.from_dict(sweep_row(i, *pt)) for i, pt in enumerate(SWEEP_POINTS)]
    got = profile.pruned_models(rows)
    # 3 networks x (dense start + 2 pruning levels); bit widths collapse
    assert len(got) == 9
    llr = [(m, r) for m, r in got if r.head == "llr"]
    assert [(m, r.sparsity) for m, r in llr] == [("refit", 0.0), ("refit", 0.9),
                                                 ("refit", 0.97)]
    assert llr[1][1].test_acc == rows[12].metrics["prune"]["test_acc"]  # before packing
    assert llr[1][1].total_bits is None and "bits" not in llr[1][1].settings
    names = grouping.group_names([r for _, r in got], [m for m, _ in got])
    assert names[:3] == ["softmax / refit"] * 3
    plain = [Row(test_acc=0.9, nonzero_weights=10)]
    assert profile.pruned_models(plain) == [(None, plain[0])]


def test_profile_of_three_seeds_draws_one_line_per_method_with_spread():
    """A 3-seed sweep's pruned models: one line per method (not per seed and method),
    each level at the mean over seeds with the std as its error bar."""
    rows, accs = [], {}
    for seed in (1, 2, 3):
        for method in ("refit", "finetune"):
            for s in (0.5, 0.9):
                acc = 0.98 - (0.02 if method == "refit" else 0.01) * s - 0.001 * seed
                accs.setdefault((method, s), []).append(100 * acc)
                rows.append(Row(
                    point=len(rows), axes={"seed": seed, "method": method, "level": s},
                    stages={"train": f"train/t-{seed}", "prune": f"prune/{method}-{s}-{seed}"},
                    settings={"train": {"head": "llr", "seed": seed},
                              "prune": {"method": method, "sparsity": s}},
                    val_acc=acc, test_acc=acc, sparsity=s,
                    nonzero_weights=round(1000 * (1 - s)) + seed,
                    effective_connections=round(900 * (1 - s)) + seed))
    points = [(r.axes["method"], r) for r in rows]
    panels = profile.profile_panels(points, "test_acc", "test accuracy (%)")
    assert len(panels) == 2
    for panel in panels:
        assert [s.label for s in panel.series] == ["refit", "finetune"]
        for series in panel.series:
            assert len(series.x) == 2 and len(series.spread) == 2
            for x, y, sd, s in zip(series.x, series.y, series.spread, (0.9, 0.5),
                                   strict=True):
                want = statistics.mean(accs[(series.label, s)])
                assert y == pytest.approx(want)
                assert sd == pytest.approx(statistics.stdev(accs[(series.label, s)]))
                assert x > 0
    notes: list[str] = []
    blocks = profile.prune_section(points, False, notes)
    fig = next(b for b in blocks if isinstance(b, document.Figure))
    check_png(fig.png)
    assert "Means over 3 seeds" in fig.caption and not notes
    # the table: one row per method and level, mean ± std over the 3 seeds
    table = next(b for b in blocks if isinstance(b, document.Table))
    assert table.headers[:2] == ["group", "seeds"] and len(table.rows) == len(accs)
    col = table.headers.index("test acc (%)")
    for method, level in ((m, s) for m in ("refit", "finetune") for s in (0.5, 0.9)):
        (row,) = [r for r in table.rows if r[0] == method
                  and r[2].startswith(f"{100 * level:.2f} ±")]
        assert row[1] == 3
        assert row[col] == pm_text(accs[(method, level)], 2)
    assert blocks[-1] == document.Text("Per-seed values: results.json.")
    # one seed: plain lines, no spread, no seed column
    one = [(m, r) for m, r in points if r.axes["seed"] == 1]
    assert all(s.spread is None for p in profile.profile_panels(one, "test_acc", "a")
               for s in p.series)


def pm_text(values: list[float], digits: int) -> str:
    """``mean ± std`` of ``values`` computed here, independently of the report's helpers."""
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def seeded_runs(configs: dict[str, str], seeds: tuple[int, ...]) -> list[TrainingRun]:
    """Training runs of a multi-seed sweep: per configuration name and seed, epochs_for its
    head with the losses and output magnitude shifted by the seed."""
    runs = []
    for config, head in configs.items():
        for seed in seeds:
            epochs = epochs_for(head, 6)
            for e in epochs:
                e["val_loss"] += 0.01 * seed
                e["mean_abs_output"] += 0.5 * seed
            runs.append(TrainingRun(f"stages/train/{config}-{seed}", head, Path("."), epochs,
                                    name=f"{config} / {seed}",
                                    config=config if len(seeds) > 1 else None))
    return runs


def drawn_panels(monkeypatch, runs: list[TrainingRun]) -> tuple[dict, list]:
    """training_section's figures, and per figure title the panels it was drawn from."""
    seen: dict = {}
    real = training.plots.line_figure

    def record(panels, title=None):
        seen[title or panels[0].title] = panels
        return real(panels, title)

    monkeypatch.setattr(training.plots, "line_figure", record)
    blocks = training.training_section(runs, [])
    return seen, [b for b in blocks if isinstance(b, document.Figure)]


def test_training_curves_of_seeds_are_one_line_per_configuration(monkeypatch):
    """3 seeds x 2 configurations: 2 lines per panel at the mean over seeds, with a band of
    ± 1 std; colours per arm and line styles per group; the caption says so."""
    runs = seeded_runs({"full / none": "llr", "1k / none": "llr"}, (1, 2, 3))
    seen, figures = drawn_panels(monkeypatch, runs)
    (val,) = [p for p in seen["Losses and accuracy per epoch"] if p.title == "Validation loss"]
    assert [s.label for s in val.series] == ["full / none", "1k / none"]
    for s, members in zip(val.series, (runs[:3], runs[3:]), strict=True):
        assert s.band and list(s.x) == list(range(1, 7))
        for i, (y, sd) in enumerate(zip(s.y, s.spread, strict=True)):
            vals = [r.epochs[i]["val_loss"] for r in members]
            assert y == pytest.approx(statistics.mean(vals))
            assert sd == pytest.approx(statistics.stdev(vals)) and sd > 0
    full, small = val.series
    assert full.color == small.color and full.linestyle != small.linestyle  # one arm
    (out,) = seen["Output magnitude (validation set)"]
    assert out.series[0].spread[0] == pytest.approx(0.5)  # std of 0.5 * (1, 2, 3)
    for fig in figures:
        check_png(fig.png)
        assert "mean over 3 seeds" in fig.caption and "± 1 std" in fig.caption
    _, again = drawn_panels(monkeypatch, runs)
    assert [f.png for f in again] == [f.png for f in figures]  # deterministic bytes
    # the tables: one row per configuration after the last epoch (the epochs before are
    # the figures' means); no table per run
    blocks = training.training_section(runs, [])
    tables_ = [b for b in blocks if isinstance(b, document.Table)]
    assert not any((t.title or "").startswith("Per epoch") for t in tables_)
    last = next(t for t in tables_ if t.title.startswith("After the last epoch"))
    assert [r[:2] for r in last.rows] == [["full / none", 3], ["1k / none", 3]]
    for row, members in zip(last.rows, (runs[:3], runs[3:]), strict=True):
        cell = dict(zip(last.headers, row, strict=True))
        assert cell["val loss"] == pm_text([r.epochs[-1]["val_loss"] for r in members], 4)
        assert cell["mean |out|"] == pm_text(
            [r.epochs[-1]["mean_abs_output"] for r in members], 3)
        assert cell["val acc (%)"] == pm_text(
            [100 * r.epochs[-1]["val_acc"] for r in members], 2)


def test_training_curves_of_single_runs_are_drawn_as_before(monkeypatch):
    """Without seeds to aggregate, every run is its own plain line (no band), coloured by
    its head, the caption saying one line per training run."""
    runs = seeded_runs({"a": "llr", "b": "softmax"}, (1,))
    seen, figures = drawn_panels(monkeypatch, runs)
    (val,) = [p for p in seen["Losses and accuracy per epoch"] if p.title == "Validation loss"]
    assert [s.label for s in val.series] == ["a / 1", "b / 1"]
    for s, run in zip(val.series, runs, strict=True):
        assert s.spread is None and not s.band and s.marker is None
        assert list(s.y) == [e["val_loss"] for e in run.epochs]
    assert [s.color for s in val.series] == ["#d62728", "#1f77b4"]
    assert "one line per training run" in figures[0].caption


def test_sweep_runs_named_by_configuration_without_seed():
    """name_runs gives each multi-seed run its configuration; configurations that differ
    only in their data (training-set size) stay apart although their train settings match."""
    rows, runs = [], []
    for regime, limit in (("full", None), ("1k", 1000)):
        for arm in ("none", "l2"):
            for seed in (1, 2):
                stage = f"train/{regime}-{arm}-{seed}"
                rows.append(Row(axes={"regime": regime, "regularizer": arm, "seed": seed},
                                stages={"train": stage},
                                settings={"train": {"head": "llr", "seed": seed,
                                                    "l2": 5e-4 if arm == "l2" else 0.0},
                                          "data": {"limit_train": limit,
                                                   "split_seed": seed}}))
                runs.append(TrainingRun(f"stages/{stage}", "llr", Path("."), []))
    shuffled = runs[::-1]
    training.name_runs(shuffled, rows)
    assert [r.label for r in shuffled] == [r.label for r in runs]  # the sweep's order
    assert [r.name for r in runs[:2]] == ["full / none / 1", "full / none / 2"]
    assert [r.config for r in runs] == [c for c in ("full / none", "full / l2",
                                                    "1k / none", "1k / l2") for _ in (1, 2)]
    one = [r for r in rows if r.axes["seed"] == 1]
    training.name_runs(runs, one)
    assert runs[0].config is None and runs[0].name == "full / none"


def test_fewest_bits_per_level_table_is_chosen_on_validation():
    """Issue 12: the per-level table picks its points on validation accuracy, so permuting
    the test accuracies leaves it unchanged (and it says so in its title)."""
    import random

    rng = random.Random(0)
    rows = [Row(axes={"head": h, "bits": b}, stages={"train": h}, total_bits=b * 1000 + i,
                val_acc=0.9 + 0.01 * b + 0.001 * i, test_acc=rng.uniform(0.85, 0.99))
            for h in ("llr", "softmax") for b in (2, 3, 4, 6) for i in range(3)]
    tests = [r.test_acc for r in rows]
    rng.shuffle(tests)
    shuffled = [Row(**{**r.to_dict(), "test_acc": t}) for r, t in zip(rows, tests, strict=True)]

    def table(rs):
        (t,) = [b for b in frontier.frontier_section(rs, [], [])
                if isinstance(b, document.Table) and "Fewest total bits" in (b.title or "")]
        return t

    before = table(rows)
    assert "validation" in before.title and before.rows[0][1] == 2000
    assert table(shuffled) == before


def test_group_names_by_network_axes():
    rows = [Row(axes={"model": m, "head": h, "bits": b}, stages={"train": f"{m}-{h}"})
            for m in ("lenet5", "conv2") for h in ("llr", "softmax") for b in (2, 4)]
    names = grouping.group_names(rows)
    assert names[::2] == ["lenet5 / llr", "lenet5 / softmax", "conv2 / llr", "conv2 / softmax"]
    prof = [Row(axes={"method": m}, stages={"profile": "p"}, settings={"train": {"head": "x"}})
            for m in ("none", "refit")]
    assert grouping.group_names(prof, ["none", "refit"]) == ["none", "refit"]
    two = [Row(stages={"profile": p}, settings={"train": {"head": h}})
           for p, h in (("a", "llr"), ("b", "softmax"), ("c", "llr"))]
    assert grouping.group_names(two) == ["a", "b", "c"]  # heads do not tell a and c apart
    assert grouping.group_names([Row()]) == ["all points"]


def test_sweep_training_runs_named_like_their_networks(built: build.ReportFiles):
    md = built.markdown.read_text()
    assert "**Per epoch: llr-code (stages/train/lenet-300-100-llr-code-0a1b2c)**" in md
    sparsity = md.split("**Per-layer sparsity (% of weights zero)**")[1].split("\n\n")[1]
    labels = [line.split(" | ")[0] for line in sparsity.splitlines()[2:]]
    assert len(labels) == len(set(labels)) >= 2  # one bar group per distinct pruned model


def test_bit_breakdown_of_a_row():
    row = Row.from_dict(sweep_row(0, "llr", 0.9, 4))
    parts = bits.bit_breakdown(row)
    assert list(parts) == ["values", "positions", "codebook", "non-weight", "header"]
    assert sum(parts.values()) == row.total_bits
    assert bits.layer_breakdowns(row)["fc2"]["positions"] == row.layer_bits["fc2"]["position"]
    short = Row(total_bits=130, bits_breakdown={"values": 100, "header": 20})
    assert bits.bit_breakdown(short) == {"values": 100, "header": 20, "other": 10}
    assert bits.bit_breakdown(Row(test_acc=0.9)) is None


def test_spread_pareto_and_labels():
    assert grouping.spread(list(range(10)), 4) == [0, 3, 6, 9]
    assert grouping.spread([1, 2], 6) == [1, 2] and grouping.spread([], 3) == []
    assert grouping.point_label(Row(axes={"head": "llr", "bits": 4}), 0) == "head=llr, bits=4"
    assert grouping.point_label(Row(), 3) == "point 3"
    assert grouping.group([3, 1, 4, 1, 5], lambda x: x % 2) == {1: [3, 1, 1, 5], 0: [4]}
    layers = {"a": {"l2_norm": 3.0, "zero_frac": 0.5, "numel": 10},
              "b": {"l2_norm": 4.0, "zero_frac": 0.0, "numel": 30}}
    from leanbits.report.training import total_l2, zero_fraction

    assert total_l2(layers) == 5.0 and zero_fraction(layers) == 0.125
    assert frontier.sparsity_of([Row(axes={"s": 0.9, "b": 2}, layer_sparsity={"fc1": 0.9}),
                                 Row(axes={"s": 0.9, "b": 4}, layer_sparsity={"fc1": 0.9})]
                                ) == [("s=0.9", {"fc1": 0.9})]


def test_markdown_table_and_fence():
    md = tables.markdown_table(["name", "bits"], [["a|b", 1200], ["c", None]])
    assert md.splitlines() == ["| name | bits |", "|:--|--:|", "| a\\|b | 1,200 |",
                               "| c | - |"]
    report = document.Report("t", [document.Code("x = ```\n", "toml")])
    assert "````toml\nx = ```\n````" in markdown.to_markdown(report)


def test_html_escapes_text():
    page = html.to_html(document.Report("<t>", [document.Heading("A & B"),
                                                document.Text("<b>x</b>"),
                                                document.Table(["h"], [["<i>"]])]))
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert 'href="#a-b"' in page and "&lt;i&gt;" in page


def test_cli_register_and_run(tmp_path: Path, capsys):
    write_snapshot(tmp_path / "snap", "llr", epochs=2)
    parser = argparse.ArgumentParser(prog="leanbits")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", str(tmp_path / "snap"), "--out",
                              str(tmp_path / "r"), "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["report_html"] == str(tmp_path / "r" / "report.html")
    assert all(Path(p).is_file() for p in out["figures"])
    args = parser.parse_args(["report", str(tmp_path / "snap")])
    assert args.func(args) == 0
    assert "report.html" in capsys.readouterr().out


def test_importing_report_does_not_import_matplotlib():
    code = ("import sys, leanbits.report, leanbits.report.build, leanbits.cli.report; "
            "print('matplotlib' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(Path(build.__file__).parents[2])}
    out = subprocess.run([os.sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.stdout.strip() == "False", out.stderr


# ----------------------------------------------------------------------------- browser
CHROMIUM = "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason="chromium not installed (apt-get install chromium)")

# Injected first in <head> (before the page's Content-Security-Policy, which forbids
# scripts): records console errors, uncaught exceptions, failed resource loads and CSP
# violations, then on load counts the images that did not decode, and writes it all into
# the DOM, which --dump-dom prints.
CHECKER = """<script>
(() => {
  const errors = [];
  const orig = console.error;
  console.error = (...a) => { errors.push("console.error: " + a.join(" ")); orig(...a); };
  addEventListener("error", (e) => errors.push(e.message ||
      ("failed to load " + ((e.target && (e.target.src || e.target.href)) || "?"))), true);
  addEventListener("unhandledrejection", (e) => errors.push("rejection: " + e.reason));
  document.addEventListener("securitypolicyviolation",
      (e) => errors.push("CSP blocked " + e.blockedURI));
  addEventListener("load", () => {
    const imgs = Array.from(document.images);
    const broken = imgs.filter((i) => !(i.complete && i.naturalWidth > 0)).length;
    document.body.dataset.lbCheck = JSON.stringify({images: imgs.length, broken, errors});
  });
})();
</script>"""


def browser_check(page: Path, work: Path, timeout: float = 60.0) -> dict:
    """Open ``page`` in headless Chromium; return ``{"images", "broken", "errors"}``.

    ``errors`` also holds console lines from Chromium's log that report an uncaught error
    (a second net under the injected listeners).
    """
    probe = work / f"probe-{page.name}"
    text = page.read_text(encoding="utf-8")
    assert "<head>" in text
    probe.write_text(text.replace("<head>", "<head>" + CHECKER, 1), encoding="utf-8")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={work / 'chromium-profile'}",
           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom",
           probe.resolve().as_uri()]
    # Own process group: on a timeout the whole Chromium tree is killed, not just the
    # launcher script.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        dom, log = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"chromium did not finish within {timeout}s")
    m = re.search(r'data-lb-check="([^"]*)"', dom)
    assert m, f"checker did not run (rc={proc.returncode}): {log[-2000:]}"
    import html as html_lib

    result = json.loads(html_lib.unescape(m.group(1)))
    result["errors"] += [line for line in log.splitlines()
                         if "CONSOLE" in line and "Uncaught" in line]
    return result


@needs_chromium
def test_report_html_renders_in_chromium(built: build.ReportFiles, tmp_path: Path):
    result = browser_check(built.html, tmp_path)
    assert result == {"images": len(build.FIGURE_NAMES), "broken": 0, "errors": []}


@needs_chromium
def test_browser_check_detects_broken_image_and_errors(built: build.ReportFiles,
                                                       tmp_path: Path):
    page = built.html.read_text()
    first = html_images(page)[0]
    broken = tmp_path / "broken.html"  # the real report with one image's bytes corrupted
    broken.write_text(page.replace(first, "data:image/png;base64,iVBORw0KGgoAAAAA", 1))
    result = browser_check(broken, tmp_path)
    assert result["broken"] == 1 and result["images"] == len(build.FIGURE_NAMES)
    script = tmp_path / "script.html"
    script.write_text("<!DOCTYPE html><html><head></head><body><img src='missing.png'>"
                      "<script>console.error('boom'); throw new Error('kaboom')</script>"
                      "</body></html>")
    result = browser_check(script, tmp_path)
    assert result["broken"] == 1
    assert any("boom" in e for e in result["errors"])
    assert any("kaboom" in e for e in result["errors"])

