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
import signal
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from leanbits.errors import LeanbitsError
from leanbits.report import build, cli, html, tables
from leanbits.report.tables import fmt
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


def account(head: str, sparsity: float, qbits: int) -> dict:
    """An ``account.json`` shaped like leanbits.bits.account.Account.to_dict()."""
    layers = []
    for name, numel in LAYERS.items():
        nz = round(numel * (1 - sparsity * (1.03 if name == "fc1" else 0.85)))
        parts = {"values_bits": nz * qbits, "position_bits": round(nz * 4.2),
                 "codebook_bits": 16 * 2 ** qbits + 32,
                 "nonweight_bits": 16 * (300 if name == "fc1" else 10)}
        layers.append({"name": name, "weights": numel, "nonzero": nz, "values": "entropy",
                       "index": "coded", "bits": qbits, "quant": "kmeans", **parts,
                       "total_bits": sum(parts.values())})
    totals = {k: sum(la[k] for la in layers) for k in
              ("values_bits", "position_bits", "codebook_bits", "nonweight_bits")}
    header = 412
    return {"layers": layers, "header_bits": header, **totals,
            "total_bits": header + sum(totals.values()), "weights": sum(LAYERS.values()),
            "nonzero": sum(la["nonzero"] for la in layers)}


def sweep_row(point: int, head: str, sparsity: float | None, qbits: int) -> dict:
    """A row of results.json as leanbits.sweep.run writes it (sparsity None: kept dense)."""
    s = sparsity or 0.0
    acct = account(head, s, qbits)
    base = {"softmax": 0.979, "llr": 0.982, "llr-code": 0.981}[head]
    acc = base - 0.15 * s ** 8 - 0.02 * 2.0 ** -qbits
    level = "dense" if sparsity is None else sparsity
    stages = {"train": f"train/lenet-300-100-{head}-0a1b2c",
              "bits": f"bits/kmeans-{qbits}-auto-{head}-{level}"}
    if sparsity is not None:
        stages["prune"] = f"prune/refit-{sparsity}-{head}"
    return {
        "point": point, "axes": {"head": head, "level": level, "bits": qbits},
        "stages": stages,
        "settings": {"data": {"dataset": "mnist"}, "train": {"head": head, "epochs": 8},
                     **({"prune": {"method": "refit", "sparsity": sparsity}}
                        if sparsity is not None else {}),
                     "bits": {"bits": qbits, "quant": "kmeans", "index": "auto"}},
        "val_acc": round(acc + 0.001, 4), "test_acc": round(acc, 4),
        "nonzero_weights": acct["nonzero"], "weights": acct["weights"],
        "total_bits": acct["total_bits"],
        "bits_breakdown": {"values": acct["values_bits"], "position": acct["position_bits"],
                           "codebook": acct["codebook_bits"],
                           "nonweight": acct["nonweight_bits"],
                           "header": acct["header_bits"], "padding": 3},
        "file_bytes": (acct["total_bits"] + 7) // 8, "dense_bits": 32 * 266610,
        "metrics": {  # each stage's own evaluation: the pruned model before quantization
            "train": {"val_acc": base + 0.001, "test_acc": base, "weights": acct["weights"],
                      "nonzero_weights": acct["weights"]},
            **({"prune": {"val_acc": base - 0.15 * s ** 8 + 0.001,
                          "test_acc": base - 0.15 * s ** 8, "weights": acct["weights"],
                          "nonzero_weights": acct["nonzero"], "sparsity": sparsity,
                          "effective_connections": acct["nonzero"] - 97}}
               if sparsity is not None else {})},
    }


def profile_rows(method: str) -> list[dict]:
    """Rows of ``leanbits profile``'s profile.json (leanbits.prune.search.measure + method)."""
    rows = []
    for s in (0.5, 0.8, 0.9, 0.95, 0.98):
        nz = round(sum(LAYERS.values()) * (1 - s))
        rows.append({"method": method, "sparsity_requested": s, "sparsity": s,
                     "val_acc": 0.98 - 0.2 * s ** 10, "test_acc": 0.979 - 0.2 * s ** 10,
                     "weights": sum(LAYERS.values()), "nonzero_weights": nz,
                     "effective_connections": nz - int(50 * s),
                     "connections": {"fc1": nz - 1000, "fc2": 900, "out": 100},
                     "live_units": {"fc1": 290, "fc2": 97, "out": 10},
                     "units": {"fc1": 300, "fc2": 100, "out": 10}})
    return rows


def handmade_row(head: str, sparsity: float, qbits: int) -> dict:
    """A row in another shape than the sweep's: nested bit account with per-layer
    ``values``/``positions``/``codebook``+``scales``/``non_weight`` and a header."""
    layers = {}
    for name, numel in LAYERS.items():
        nz = round(numel * (1 - sparsity))
        layers[name] = {"numel": numel, "nonzero": nz, "values": nz * qbits,
                        "positions": round(nz * 4.2), "codebook": 32 * 2 ** qbits,
                        "scales": 32, "non_weight": 320}
    total = 256 + sum(v for d in layers.values() for k, v in d.items()
                      if k not in ("numel", "nonzero"))
    return {"head": head, "method": "magnitude", "sparsity": sparsity,
            "test_acc": 0.98 - 0.1 * sparsity ** 6 - 0.01 / qbits, "total_bits": total,
            "nonzero_weights": sum(d["nonzero"] for d in layers.values()),
            "bits": {"layers": layers, "header": 256, "total": total}}


SWEEP_POINTS = [(h, s, q) for h in HEADS for s in (None, 0.9, 0.97) for q in (2, 4, 8)]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    """A sweep run directory laid out as leanbits.sweep.run writes one: experiment.toml,
    stages/train/* snapshots, stages/bits/*/account.json (one missing: that point falls
    back to the row's bits_breakdown), results.json and results.jsonl."""
    root = tmp_path_factory.mktemp("sweep")
    (root / "experiment.toml").write_text(
        '# The experiment that made this run directory\nname = "frontier"\n\n'
        '[train.vary]\nhead = ["softmax", "llr", "llr-code"]\n\n[bits.vary]\n'
        'bits = [2, 4, 8]\n')
    rows = [sweep_row(i, *pt) for i, pt in enumerate(SWEEP_POINTS)]
    for h in HEADS:
        write_snapshot(root / "stages" / "train" / f"lenet-300-100-{h}-0a1b2c", h)
    for r, (h, s, q) in zip(rows[1:], SWEEP_POINTS[1:], strict=True):
        d = root / "stages" / r["stages"]["bits"]
        d.mkdir(parents=True, exist_ok=True)
        (d / "account.json").write_text(json.dumps(account(h, s or 0.0, q)))
    (root / "results.json").write_text(json.dumps(
        {"schema": 1, "experiment": "frontier", "axes": ["head", "level", "bits"],
         "rows": rows, "frontier": {}}))
    (root / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture(scope="module")
def built(sweep_dir: Path) -> build.ReportFiles:
    return build.build_report(sweep_dir)


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
    assert built.sections == ("Training", "Pruning profile", "Accuracy against total bits",
                              "Configuration")
    assert built.notes == ()
    rows = json.loads((sweep_dir / "results.json").read_text())["rows"]
    softmax = [json.loads(line) for line in (
        sweep_dir / "stages/train/lenet-300-100-softmax-0a1b2c/metrics.jsonl"
    ).read_text().splitlines()]
    acct = json.loads((sweep_dir / "stages" / rows[5]["stages"]["bits"] / "account.json")
                      .read_text())
    numbers = [
        fmt(softmax[-1]["val_loss"]), fmt(softmax[3]["mean_abs_output"]),  # training table
        fmt(softmax[-1]["layers"]["out"]["l2_norm"]),                      # per-layer table
        fmt(rows[4]["nonzero_weights"]),                                   # pruning table
        fmt(rows[4]["metrics"]["prune"]["effective_connections"]),
        fmt(rows[5]["total_bits"]), fmt(rows[5]["test_acc"]),              # frontier table
        fmt(acct["layers"][1]["position_bits"]),                           # bits per layer
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
    rows.append({"method": "rewind", "sparsity_requested": 0.99, "error": "layer emptied"})
    (d / "profile.json").write_text(json.dumps(
        {"source": str(snap.resolve()), "config": {"scope": "global", "refit_epochs": 2},
         "methods": ["refit", "finetune", "rewind"], "sparsities": [0.5, 0.99],
         "rows": rows}))
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


def test_bare_list_profile_and_handmade_rows(tmp_path: Path):
    (tmp_path / "profile.json").write_text(json.dumps(profile_rows("refit")))
    rows = [handmade_row(h, s, q) for h in ("softmax", "llr") for s in (0.5, 0.9)
            for q in (2, 4)]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows)
                                            + '{"head": "llr", "tot')  # killed writer
    files = build.build_report(tmp_path)
    assert files.sections == ("Notes", "Pruning profile", "Accuracy against total bits")
    assert any("results.jsonl line 9: not JSON" in n for n in files.notes)
    md = files.markdown.read_text()
    # codebook = codebook + scales, summed over layers
    r = rows[0]
    codebook = sum(d["codebook"] + d["scales"] for d in r["bits"]["layers"].values())
    assert f"| {fmt(codebook)} |" in md
    assert "Per-layer sparsity" in md and "figures/sparsity.png" in md


def test_empty_dir_is_a_clear_error(tmp_path: Path):
    with pytest.raises(LeanbitsError, match="nothing to report"):
        build.build_report(tmp_path)
    with pytest.raises(LeanbitsError, match="not a directory"):
        build.build_report(tmp_path / "missing")
    assert not (tmp_path / "report.md").exists()


def test_rows_missing_keys_skip_sections_with_notes(tmp_path: Path):
    (tmp_path / "results.json").write_text(json.dumps(
        {"rows": [{"test_acc": 0.9, "total_bits": 1000}, {"test_acc": 0.95, "total_bits": 4000},
                  {"val_acc": 0.5, "bits": 4}]}))
    files = build.build_report(tmp_path)
    assert "Accuracy against total bits" in files.sections
    assert any("Pruning profile: skipped" in n for n in files.notes)
    assert any("Bit breakdown: skipped" in n for n in files.notes)
    assert any("Training curves: skipped" in n for n in files.notes)
    assert any("Per-layer sparsity: skipped" in n for n in files.notes)


# ----------------------------------------------------------------------------- pure helpers
def test_stage_rows_give_one_point_per_pruned_model():
    rows = [sweep_row(i, *pt) for i, pt in enumerate(SWEEP_POINTS)]
    got = build.stage_rows(rows)
    # 3 networks x (dense start + 2 pruning levels); bit widths collapse
    assert len(got) == 9
    llr = [r for r in got if r["_head"] == "llr"]
    assert [(r["method"], r["sparsity"]) for r in llr] == [("refit", 0.0), ("refit", 0.9),
                                                          ("refit", 0.97)]
    assert llr[1]["test_acc"] == rows[12]["metrics"]["prune"]["test_acc"]  # before packing
    assert build.group_names(got, by_method=True)[:3] == ["softmax / refit"] * 3
    plain = [{"test_acc": 0.9, "nonzero_weights": 10}]
    assert build.stage_rows(plain) == plain


def test_group_names_by_network_axes():
    rows = [{"axes": {"model": m, "head": h, "bits": b}, "stages": {"train": f"{m}-{h}"}}
            for m in ("lenet5", "conv2") for h in ("llr", "softmax") for b in (2, 4)]
    names = build.group_names(rows)
    assert names[::2] == ["lenet5 / llr", "lenet5 / softmax", "conv2 / llr", "conv2 / softmax"]
    prof = [{"method": m, "_source": "p", "_head": "llr"} for m in ("none", "refit")]
    assert build.group_names(prof, by_method=True) == ["none", "refit"]
    assert build.group_names([{}]) == ["all points"]


def test_sweep_training_runs_named_like_their_networks(built: build.ReportFiles):
    md = built.markdown.read_text()
    assert "**Per epoch: llr-code (stages/train/lenet-300-100-llr-code-0a1b2c)**" in md
    sparsity = md.split("**Per-layer sparsity (% of weights zero)**")[1].split("\n\n")[1]
    labels = [line.split(" | ")[0] for line in sparsity.splitlines()[2:]]
    assert len(labels) == len(set(labels)) >= 2  # one bar group per distinct pruned model


def test_lookup_and_get_aliases():
    assert build.lookup({"axes": {"head": "llr"}}, build.ROW_KEYS["head"]) == "llr"
    assert build.lookup({"head": None, "axes": {"head": "x"}}, build.ROW_KEYS["head"]) == "x"
    assert build.get({"bits": {"total": 123}}, "total_bits") == 123
    assert build.get({"bits": 4}, "total_bits") is None  # a sweep's bits-per-weight axis
    assert build.get({"account": {"total_bits": 7}}, "total_bits") == 7
    assert build.get({"sparsity": 0.75, "weights": 400}, "nonzero") == 100
    assert build.get({"test_acc": True}, "test_acc") is None  # bools are not numbers


def test_bit_breakdown_shapes():
    flat = {"values_bits": 100, "position_bits": 50, "header_bits": 10, "total_bits": 160}
    assert build.bit_breakdown(flat) == {"values": 100, "positions": 50, "header": 10}
    nested = {"account": {"layers": [{"name": "a", "values": 10, "codebook": 4, "scales": 1},
                                     {"name": "b", "values": 20, "non_weight": 3}],
                          "header": 5, "total": 50}}
    assert build.bit_breakdown(nested) == {"values": 30, "codebook": 5, "non-weight": 3,
                                           "header": 5, "other": 7}
    assert build.layer_breakdowns(nested) == {"a": {"values": 10, "codebook": 5},
                                              "b": {"values": 20, "non-weight": 3}}
    assert build.bit_breakdown({"test_acc": 0.9}) is None


def test_layer_sparsity_sources():
    assert build.layer_sparsity({"layer_sparsity": {"fc1": 0.9}}) == {"fc1": 0.9}
    row = {"layers": {"fc1": {"nonzero": 25, "numel": 100}, "out": {"zero_frac": 0.5}}}
    assert build.layer_sparsity(row) == {"fc1": 0.75, "out": 0.5}
    assert build.layer_sparsity({"bits": {"layers": {"a": {"sparsity": 0.1}}}}) == {"a": 0.1}
    assert build.layer_sparsity({}) == {}


def test_spread_pareto_and_labels():
    assert build.spread(list(range(10)), 4) == [0, 3, 6, 9]
    assert build.spread([1, 2], 6) == [1, 2] and build.spread([], 3) == []
    assert build.pareto_indices([(100, 0.9), (50, 0.95), (200, 0.97), (60, 0.93)]) == [1, 2]
    assert build.point_label({"axes": {"head": "llr", "bits": 4}}, 0) == "head=llr, bits=4"
    assert build.point_label({"method": "m", "sparsity": 0.9}, 3) == "m s=0.9"
    assert build.point_label({}, 3) == "point 3"
    layers = {"a": {"l2_norm": 3.0, "zero_frac": 0.5, "numel": 10},
              "b": {"l2_norm": 4.0, "zero_frac": 0.0, "numel": 30}}
    assert build.total_l2(layers) == 5.0 and build.zero_fraction(layers) == 0.125


def test_markdown_table_and_fence():
    md = tables.markdown_table(["name", "bits"], [["a|b", 1200], ["c", None]])
    assert md.splitlines() == ["| name | bits |", "|:--|--:|", "| a\\|b | 1,200 |",
                               "| c | - |"]
    report = build.Report("t", [build.Code("x = ```\n", "toml")])
    assert "````toml\nx = ```\n````" in build.to_markdown(report)


def test_html_escapes_text():
    page = html.to_html(build.Report("<t>", [build.Heading("A & B"), build.Text("<b>x</b>"),
                                             build.Table(["h"], [["<i>"]])]))
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
    code = ("import sys, leanbits.report, leanbits.report.build, leanbits.report.cli; "
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

