"""What a sparse VD epoch costs against a plain one, per net, side by side, as a ratio; and
what that makes one seed of the record recipe cost.

The same minibatches of the MNIST training split pass through two trainings of each net:
plain (Adam on the data loss, masks none: what training and masked fine-tuning do) and
sparse VD (``prune.variational.train_variational``: the local reparameterisation trick,
the KL term). Both run through the one training loop (``loop.fit``) on ``--examples``
training examples, interleaved (plain, VD, plain, ...) so machine noise hits both alike;
the time is scaled to a full epoch of the 55,000 training examples. One torch thread by
default: a study stage runs on one (``--threads`` to change).

The estimate of a record seed's cost is arithmetic on the measured epochs, not a
measurement: ``train.epochs`` plain epochs, ``vd_epochs`` variational ones and the rest of
the compress ``budget`` as plain ones (levels' fine-tuning, gradual pruning, codebook
fine-tuning), read from the record preset; the validation scoring of candidate files is
not in it.

    python benchmarks/vd_cost.py [--examples 6400] [--repeats 3] [--write]
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_md import publish  # noqa: E402

from leanbits.data import DataConfig, load_data  # noqa: E402
from leanbits.heads import Head  # noqa: E402
from leanbits.loop import epoch_batches, fit  # noqa: E402
from leanbits.models import build, preset  # noqa: E402
from leanbits.prune import PruneConfig  # noqa: E402
from leanbits.prune.variational import train_variational  # noqa: E402
from leanbits.sweep.experiment import load_experiment  # noqa: E402
from leanbits.sweep.presets import study_path  # noqa: E402

TITLE = "What a sparse VD epoch costs"
FULL_EPOCH = 55_000
NETS = (("lenet-300-100", "LeNet-300-100"), ("lenet5", "LeNet-5-Caffe"))


def plain_epoch(net: str, data, batch_size: int) -> float:
    """Seconds of one plain epoch over ``data`` (the loop's own epoch time: no set-up)."""
    torch.manual_seed(0)
    model = build(preset(net))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    result = fit(model, model.parameters(), epoch_batches(data, batch_size, 0),
                 Head("llr", 10).loss, opt, epochs=1, seed=0)
    return float(result.history[0]["epoch_time_s"])


def vd_epoch(net: str, data, batch_size: int) -> float:
    """Seconds of one sparse VD epoch over ``data`` (KL weight 1 from the start)."""
    torch.manual_seed(0)
    model = build(preset(net))
    cfg = PruneConfig(vd_epochs=1, vd_warmup_epochs=0, batch_size=batch_size, seed=0)
    _, record = train_variational(model, data, Head("llr", 10).loss, cfg)
    return float(record["history"][0]["epoch_time_s"])


def record_recipe() -> dict[str, int]:
    """The record preset's epochs: train, variational, and the compress budget."""
    stage = load_experiment(study_path("record")).stages("compress")[0]
    return {"train": stage.input.config.epochs, "vd": stage.config.vd_epochs,
            "budget": stage.config.budget}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=6400,
                    help="training examples timed per run (scaled to 55,000)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    splits = load_data(DataConfig(dataset="mnist"))
    data = (splits.train.x[:args.examples], splits.train.y[:args.examples])
    scale = FULL_EPOCH / data[0].shape[0]
    recipe = record_recipe()
    rows, costs = [], []
    for net, label in NETS:
        plain, vd = [], []
        for _ in range(args.repeats):
            plain.append(plain_epoch(net, data, args.batch_size) * scale)
            vd.append(vd_epoch(net, data, args.batch_size) * scale)
        a, b = statistics.median(plain), statistics.median(vd)
        rows.append(f"| {label} | {a:.1f} ({min(plain):.1f}-{max(plain):.1f}) | {b:.1f} "
                    f"({min(vd):.1f}-{max(vd):.1f}) | {b / a:.2f} |")
        rest = recipe["budget"] - recipe["vd"]
        seconds = recipe["train"] * a + recipe["vd"] * b + rest * a
        costs.append(f"| {label} | {recipe['train']} x {a:.1f} s | {recipe['vd']} x {b:.1f} s "
                     f"| {rest} x {a:.1f} s | {seconds / 3600:.1f} h |")
    body = "\n".join([
        f"`python benchmarks/vd_cost.py --examples {args.examples} --repeats {args.repeats} "
        f"--threads {args.threads} --write` ({platform.machine()}, {args.threads} torch "
        f"thread(s), batch size {args.batch_size}, {dt.date.today().isoformat()}). The same "
        f"{args.examples:,} MNIST training examples through a plain and a sparse VD training "
        "of each net, interleaved, each through `loop.fit`; seconds scaled to a 55,000-"
        "example epoch; medians with the range over the repeats in brackets.", "",
        "| net | plain epoch (s) | sparse VD epoch (s) | VD / plain |",
        "|---|---|---|---|", *rows, "",
        "What that makes one seed of the record preset cost on one core (arithmetic on the "
        "epochs above, not a run: the train stage's epochs, the variational ones, and the "
        "rest of the compress budget as plain epochs; the validation scoring of candidate "
        "files comes on top):", "",
        "| net | train | sparse VD | rest of the budget | total |",
        "|---|---|---|---|---|", *costs,
    ])
    publish(body, TITLE, args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
