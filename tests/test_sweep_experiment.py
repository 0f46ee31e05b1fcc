"""Experiment files: grid expansion, stage names (hashes), and errors for bad files."""

import copy
from pathlib import Path

import pytest
import torch

from leanbits.errors import ConfigError
from leanbits.sweep.experiment import differences, load_experiment, parse_experiment
from leanbits.sweep.presets import study_names, study_path

EXAMPLES = Path(__file__).resolve().parents[1] / "experiments"
TINY = {
    "name": "tiny",
    "data": {"dataset": "synthetic", "limit_train": 128, "val_size": 64},
    "train": {"fc": [8], "epochs": 1, "batch_size": 32, "lr": 0.1, "train_eval_size": 32,
              "vary": {"head": ["softmax", "llr"]}},
    "prune": {"refit_epochs": 1, "compensation_examples": 64,
              "vary": {"sparsity": [0.5, 0.8]}},
    "bits": {"vary": {"bits": [2, 4]}},
}


def _exp(**changes):
    raw = copy.deepcopy(TINY)
    for path, value in changes.items():
        d = raw
        *parents, last = path.split("__")
        for p in parents:
            d = d.setdefault(p, {})
        d[last] = value
    return parse_experiment(raw)


def _keys(exp, kind):
    return {s.key for s in exp.stages(kind)}


def test_grid_is_the_product_and_stages_are_shared():
    exp = _exp()
    assert len(exp.points) == 2 * 2 * 2
    assert [len(exp.stages(k)) for k in ("train", "prune", "bits")] == [2, 4, 8]
    # Grid order: train axes outermost, then prune, then bits.
    assert [tuple(p.axes.values()) for p in exp.points[:3]] == [
        ("softmax", 0.5, 2), ("softmax", 0.5, 4), ("softmax", 0.8, 2)]
    # Points sharing a train setting share the very same train stage.
    trains = {p.stages[0].key for p in exp.points if p.axes["head"] == "llr"}
    assert len(trains) == 1
    for p in exp.points:
        assert [s.kind for s in p.stages] == ["train", "prune", "bits"]
        assert p.stages[1].input is p.stages[0] and p.stages[2].input is p.stages[1]


def test_changing_a_setting_renames_only_what_depends_on_it():
    base = _exp()
    bits = _exp(bits__values="fixed")
    assert _keys(bits, "train") == _keys(base, "train")
    assert _keys(bits, "prune") == _keys(base, "prune")
    assert _keys(bits, "bits").isdisjoint(_keys(base, "bits"))

    prune = _exp(prune__refit_epochs=2)
    assert _keys(prune, "train") == _keys(base, "train")
    assert _keys(prune, "prune").isdisjoint(_keys(base, "prune"))
    assert _keys(prune, "bits").isdisjoint(_keys(base, "bits"))  # their input changed

    train = _exp(train__lr=0.2)
    assert _keys(train, "train").isdisjoint(_keys(base, "train"))

    # Stating a default explicitly changes nothing (hashes cover non-default settings).
    same = _exp(prune__method="refit")
    assert _keys(same, "bits") == _keys(base, "bits")


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist", "synthetic"])
def test_train_stage_name_matches_leanbits_train(dataset):
    from leanbits.data import DataConfig
    from leanbits.train import TrainConfig, run_name

    exp = parse_experiment({"data": {"dataset": dataset, "limit_train": 100},
                            "train": {"epochs": 2, "head": "softmax"}})
    (stage,) = exp.stages("train")
    assert stage.key == run_name(DataConfig(dataset=dataset, limit_train=100),
                                 TrainConfig(epochs=2, head="softmax"))


#: Stage directory names of a real-data experiment, as leanbits named them before the data
#: set was recorded in synthetic train stages' config.toml (main at bf4cdc3). A study
#: resumes from these directories: a change here makes every existing run of it rebuild
#: from scratch, so it must be a deliberate migration, never a side effect.
_NAMED = {"data": {"limit_train": 1000, "label_noise": 0.2, "split_seed": "seed"},
          "train": {"epochs": 3, "vary": {"head": ["softmax", "llr"], "seed": [0, 1]}},
          "prune": {"refit_epochs": 1, "vary": {"sparsity": [0.9]}},
          "bits": {"vary": {"bits": [4]}}}
_NAMES = {
    "mnist": {
        "train/lenet-300-100-llr-2b2f3371ab", "train/lenet-300-100-llr-9951d91292",
        "train/lenet-300-100-softmax-60ffb3d2c6", "train/lenet-300-100-softmax-e395ecf101",
        "prune/refit-0.9-641148f462", "prune/refit-0.9-7131b01f80",
        "prune/refit-0.9-71834635b9", "prune/refit-0.9-ad9ebb7aed",
        "bits/kmeans-4-coded-0bc13a220e", "bits/kmeans-4-coded-3993331f8e",
        "bits/kmeans-4-coded-7c10311969", "bits/kmeans-4-coded-e55326e146"},
    "fashion-mnist": {
        "train/lenet-300-100-llr-0105b53051", "train/lenet-300-100-llr-aebed01016",
        "train/lenet-300-100-softmax-8b8c734d97", "train/lenet-300-100-softmax-9a0ee19bf9"},
}


@pytest.mark.parametrize("dataset", sorted(_NAMES))
def test_real_data_stage_names_are_those_existing_runs_have(dataset):
    raw = copy.deepcopy(_NAMED)
    raw["data"]["dataset"] = dataset
    exp = parse_experiment(raw)
    names = {s.relpath for p in exp.points for s in p.stages}
    assert len(names) == 12
    assert _NAMES[dataset] <= names
    if dataset == "mnist":
        assert names == _NAMES[dataset]


def test_table_axes_labels_and_skipped_stages():
    exp = _exp(train__vary={"reg": [{"name": "none"}, {"l2": 1e-3}, {"l1": 1e-4, "l2": 0.1}]},
               prune__vary={"level": [{"name": "dense", "skip": True}, {"sparsity": 0.9}],
                            "sparsity_": [{"scope": "layer"}, {"scope": "global"}]})
    labels = [p.axes["reg"] for p in exp.points]
    assert labels[0] == "none" and 0.001 in labels and "l1=0.0001,l2=0.1" in labels
    dense = [p for p in exp.points if p.axes["level"] == "dense"]
    # A skipped prune stage: no prune in the chain, its other axes blank, no duplicates.
    assert all([s.kind for s in p.stages] == ["train", "bits"] for p in dense)
    assert all(p.axes["sparsity_"] is None for p in dense)
    assert len(dense) == 3 * 2  # regularizers x bit widths
    assert len(exp.points) == 3 * 2 + 3 * 2 * 2


def test_quick_and_overrides_merge_and_everything_is_validated():
    raw = copy.deepcopy(TINY)
    raw["quick"] = {"train": {"vary": {"head": ["llr"]}}, "bits": {"vary": {"bits": [3]}}}
    exp = parse_experiment(raw, quick=True, overrides=["train.epochs=2", "data.split_seed=3",
                                                       "prune.vary.sparsity=[0.9]"])
    assert len(exp.points) == 1
    (p,) = exp.points
    assert p.stages[0].config.epochs == 2 and p.stages[0].config.fc == (8,)
    assert p.axes == {"head": "llr", "sparsity": 0.9, "bits": 3}
    assert exp.data["split_seed"] == 3 and "quick" not in exp.settings
    assert len(parse_experiment(raw).points) == 8  # without --quick, [quick] is ignored


@pytest.mark.parametrize("name", ["explosion", "regularization", "snapshot", "frontier"])
def test_shipped_studies_validate_full_and_quick(name):
    assert name in study_names()
    full = load_experiment(study_path(name))
    quick = load_experiment(study_path(name), quick=True, overrides=["data.dataset=synthetic"])
    assert 0 < len(quick.points) <= len(full.points)
    assert quick.data["dataset"] == "synthetic"
    for p in quick.points:  # seconds on tiny data (claim 1 needs a few epochs for growth)
        assert p.stages[0].config.epochs <= 6
    if name in ("explosion", "regularization"):  # synthetic without being told
        assert load_experiment(study_path(name), quick=True).data["dataset"] == "synthetic"


def test_split_seed_can_follow_the_train_seed():
    exp = _exp(data__split_seed="seed", train__vary={"seed": [1, 2]}, prune={}, bits={})
    trains = list(exp.stages("train"))
    assert sorted(s.data["split_seed"] for s in trains) == [1, 2]
    for p in exp.points:  # every stage of a point evaluates on its train stage's split
        assert {s.data["split_seed"] for s in p.stages} == {p.stages[0].config.seed}
    fixed = _exp(data__split_seed=0, train__vary={"seed": [1, 2]}, prune={}, bits={})
    # the split is part of the train stage's name: following the seed makes new stages
    assert {s.data["split_seed"] for s in fixed.stages("train")} == {0}
    assert not _keys(exp, "train") & _keys(fixed, "train")
    with pytest.raises(ConfigError, match="split_seed"):
        _exp(data__split_seed="seeds")


# Issue 12: verdicts need spread, so a full study runs >= 5 seeds of LeNet-300-100 (>= 3 of
# LeNet-5) with the split following the seed; --quick stays one seed.
@pytest.mark.parametrize("name", ["explosion", "regularization", "snapshot", "frontier"])
def test_shipped_studies_run_enough_seeds_and_vary_the_split(name):
    full = load_experiment(study_path(name))
    seeds: dict[str, set[tuple[int, int]]] = {}
    for s in full.stages("train"):
        seeds.setdefault(s.config.model, set()).add((s.config.seed, s.data["split_seed"]))
    for model, pairs in seeds.items():
        assert len(pairs) >= (3 if model == "lenet5" else 5), model
        assert all(seed == split for seed, split in pairs)
    quick = load_experiment(study_path(name), quick=True)
    assert len({s.config.seed for s in quick.stages("train")}) == 1


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_example_experiment_files_validate(path):
    for quick in (False, True):
        assert load_experiment(path, quick=quick).points


def test_data_axes_vary_the_train_stages_data():
    exp = _exp(data__vary={"regime": [{"name": "full"}, {"name": "small", "limit_train": 32},
                                      {"name": "noisy", "label_noise": 0.2}]},
               data__split_seed="seed", train__vary={"seed": [1, 2]}, prune={}, bits={})
    assert len(exp.points) == 3 * 2
    assert [p.axes for p in exp.points[:3]] == [
        {"regime": "full", "seed": 1}, {"regime": "full", "seed": 2},
        {"regime": "small", "seed": 1}]
    data = {(p.axes["regime"], p.axes["seed"]): p.stages[0].data for p in exp.points}
    assert data[("small", 2)]["limit_train"] == 32 and data[("small", 2)]["split_seed"] == 2
    assert data[("noisy", 1)]["label_noise"] == 0.2 and data[("noisy", 1)]["limit_train"] == 128
    assert data[("full", 1)] == {**exp.data, "split_seed": 1}
    assert len(_keys(exp, "train")) == 6  # each regime trains its own models
    # a plain field name takes plain values
    plain = _exp(data__vary={"label_noise": [0.0, 0.1]}, prune={}, bits={})
    assert [p.axes["label_noise"] for p in plain.points] == [0.0, 0.0, 0.1, 0.1]


@pytest.mark.parametrize("vary, words", [
    ({"dataset": ["mnist"]}, ["dataset", "one per experiment"]),
    ({"regime": [{"label_nois": 0.2}]}, ["label_nois", "valid:", "label_noise"]),
    ({"regime": [{"label_noise": 1.5}]}, ["label_noise", "1.5", "regime=1.5"]),
    ({"regime": ["small"]}, ["regime", "tables of field values"]),
    ({"regime": []}, ["regime", "non-empty list"]),
    ({"head": [{"limit_train": 3}]}, ["head", "[data.vary]", "rename"]),
])
def test_bad_data_axes_name_the_key(vary, words):
    with pytest.raises(ConfigError) as exc:
        _exp(data__vary=vary)
    for w in words:
        assert w in str(exc.value), (w, str(exc.value))


# ----------------------------------------------------------------------------- bad files
@pytest.mark.parametrize("changes, words", [
    ({"trian": {}}, ["trian", "valid:", "train", "prune", "bits"]),
    ({"train__epoch": 3}, ["epoch", "valid:", "epochs"]),
    ({"train__head": "sigmoid"}, ["head", "'sigmoid'", "softmax, llr, llr-code"]),
    ({"train__vary": {"head": ["softmax", "sigmoid"]}}, ["head", "sigmoid", "llr-code"]),
    ({"train__vary": {"regularizer": ["l2"]}}, ["regularizer", "tables", "valid fields", "l2"]),
    ({"train__vary": {"reg": [{"l3": 1.0}]}}, ["reg[0]", "l3", "valid:", "l1, l2"]),
    ({"train__vary": {"head": []}}, ["head", "non-empty list"]),
    ({"train__vary": {"a": [{"l2": 0.1}], "b": [{"l2": 0.2}]}}, ["a and b", "l2"]),
    ({"data__dataset": "cifar"}, ["dataset", "'cifar'", "mnist, fashion-mnist, synthetic"]),
    ({"data__val_sise": 3}, ["val_sise", "valid:", "val_size"]),
    ({"prune__vary": {"sparsity": [0.5, 1.5]}}, ["sparsity", "1.5", "maximum"]),
    ({"prune__vary": {"method": ["refit", "magic"]}}, ["method", "magic", "refit, finetune"]),
    ({"bits__vary": {"bits": [4, 99]}}, ["bits", "99", "maximum"]),
    ({"bits__quant": "lloyd"}, ["quant", "lloyd", "kmeans"]),
    ({"train__conv": [4]}, ["conv"]),
    ({"prune__vary": {"head": [{"seed": 1}]}}, ["head", "[train.vary]", "rename"]),
])
def test_bad_experiment_names_the_key_and_the_allowed_values(changes, words):
    with pytest.raises(ConfigError) as exc:
        _exp(**changes)
    msg = str(exc.value)
    for w in words:
        assert w in msg, (w, msg)


def test_bad_overrides_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="SECTION.KEY=VALUE"):
        parse_experiment(copy.deepcopy(TINY), overrides=["epochs"])
    with pytest.raises(ConfigError, match="must start with one of data, train"):
        parse_experiment(copy.deepcopy(TINY), overrides=["trian.epochs=3"])
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nepochs = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_experiment(bad)
    bad.write_text('[train]\nhead = "sigmoid"\n')
    with pytest.raises(ConfigError, match=r"bad\.toml: .*head.*softmax, llr, llr-code"):
        load_experiment(bad)
    with pytest.raises(ConfigError, match="unknown study 'nope'; valid: demo, explosion"):
        study_path("nope")


def test_exclude_drops_the_points_its_rules_match():
    """A rule drops every point matching all its keys (a list: any of its labels), with
    their stages when no other point uses them; the other points keep their stages (same
    names); a misspelt axis or a malformed rule is refused; --set reaches exclude."""
    full = _exp(train__vary={"head": ["softmax", "llr"], "seed": [1, 2, 3]})
    rules = [{"head": "llr", "seed": [2, 3]}, {"head": "softmax", "sparsity": 0.8}]
    cut = _exp(train__vary={"head": ["softmax", "llr"], "seed": [1, 2, 3]}, exclude=rules)
    def dropped(p):
        return (p.axes["head"] == "llr" and p.axes["seed"] in (2, 3)
                or p.axes["head"] == "softmax" and p.axes["sparsity"] == 0.8)
    kept = [p for p in full.points if not dropped(p)]
    assert [p.axes for p in cut.points] == [p.axes for p in kept]
    assert [[s.key for s in p.stages] for p in cut.points] == [
        [s.key for s in p.stages] for p in kept]
    assert [p.index for p in cut.points] == list(range(len(kept)))
    assert len(cut.stages("train")) == 4  # softmax x 3 seeds, llr x seed 1
    # a label the grid does not have (an axis narrowed by --set) drops nothing
    same = _exp(exclude=[{"head": "llr-code"}])
    assert [p.axes for p in same.points] == [p.axes for p in _exp().points]
    # --set exclude=...
    over = parse_experiment(copy.deepcopy(TINY), overrides=['exclude=[{head="llr"}]'])
    assert {p.axes["head"] for p in over.points} == {"softmax"}
    for bad, words in ((["head"], "list of tables"), ([{}], "empty rule"),
                       ([{"haed": "llr"}], "haed: not an axis of this grid; valid: head"),
                       ([{"head": {"x": 1}}], "label of the axis")):
        with pytest.raises(ConfigError, match=words):
            _exp(exclude=bad)


def test_profile_and_pick_tables_are_checked():
    raw = copy.deepcopy(TINY)
    raw["profile"] = {"methods": ["refit"], "sparsities": [0.5]}
    raw["pick"] = {"max_drop": 0.01}
    exp = parse_experiment(raw)
    assert len(exp.profiles) == 2 and exp.pick.max_drop == 0.01  # one per trained model
    assert [p.input.key for p in exp.profiles] == [s.key for s in exp.stages("train")]
    for table, message in (({"profile": {"vary": {"methods": [["none"]]}}}, "no axes"),
                           ({"profile": {"max_drop": 0.01}}, "sets max_drop per run"),
                           ({"profile": {"methods": ["bogus"]}}, "bogus"),
                           ({"pick": {"max_drop": 2}}, "above the maximum"),
                           ({"pick": {"fewest": "bits"}}, "unknown PickConfig key")):
        with pytest.raises(ConfigError, match=message):
            parse_experiment({**raw, **table})
    over = parse_experiment(raw, overrides=["profile.sparsities=[0.9]", "pick.max_drop=0.1"])
    assert over.profiles[0].config.sparsities == (0.9,) and over.pick.max_drop == 0.1


def test_stage_seeds_follow_the_train_seed_unless_the_table_sets_one():
    raw = copy.deepcopy(TINY)
    raw["train"]["vary"] = {"seed": [1, 2]}
    raw["profile"] = {"methods": ["refit"], "sparsities": [0.5]}
    exp = parse_experiment(raw)
    for p in exp.points:  # prune and bits stages take their point's train seed
        assert {s.config.seed for s in p.stages} == {p.stages[0].config.seed}
    assert sorted((s.input.config.seed, s.config.seed) for s in exp.profiles) == [(1, 1), (2, 2)]
    # a seed set in the table, as a value or in an axis entry, is used as given
    fixed = _exp(train__vary={"seed": [1, 2]}, prune__seed=7)
    assert {s.config.seed for s in fixed.stages("prune")} == {7}
    assert {s.config.seed for s in fixed.stages("bits")} == {1, 2}
    entry = _exp(train__vary={"seed": [1, 2]},
                 prune__vary={"sparsity": [{"sparsity": 0.5, "seed": 3}]})
    assert {s.config.seed for s in entry.stages("prune")} == {3}


@pytest.mark.parametrize("method", ["none", "refit", "finetune"])
def test_the_seed_a_prune_stage_takes_from_its_point_drives_its_randomness(method):
    """Two seeds of a sweep give two minibatch orders to re-fit and fine-tuning (the same
    trained net pruned with each point's prune config); one seed reproduces exactly; pruning
    alone has no randomness and gives the same model."""
    from leanbits.heads import Head
    from leanbits.models import Plan, build
    from leanbits.prune import run_method

    exp = _exp(train__vary={"seed": [1, 2]}, prune__batch_size=16, prune__finetune_epochs=1,
               prune__vary={"sparsity": [0.5]}, bits={})
    cfgs = {p.stages[0].config.seed: p.stages[1].config for p in exp.points}
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 1, 4, 4, generator=g), torch.randint(0, 10, (64,), generator=g)
    torch.manual_seed(0)
    net = build(Plan("mlp", (1, 4, 4), (), (12,), 10))
    loss = Head("softmax", 10).loss

    def pruned(seed):
        res = run_method(net, method, 0.5, (x, y), loss, cfgs[seed])
        return torch.cat([v.flatten() for v in res.model.state_dict().values()])

    one, again, two = pruned(1), pruned(1), pruned(2)
    assert torch.equal(one, again)
    assert torch.equal(one, two) == (method == "none")


def test_differences_name_what_changes_the_run_and_nothing_else():
    base = _exp()
    # written otherwise, named or described otherwise: the same stages for the same points
    same = _exp(name="other", description="words",
                train__vary__head=[{"head": "softmax"}, {"name": "llr", "head": "llr"}])
    assert differences(same, base) == []
    assert differences(_exp(train__epochs=3, prune__vary__sparsity=[0.5]), base,
                       "preset") == ["train.epochs = 3 (preset: 1)",
                                     "prune.vary.sparsity = 0.5 (preset: 0.5, 0.8)"]
    # an axis whose labels agree shows its settings; a new setting is "not set" in the base
    fc = _exp(train__vary__head=[{"name": "softmax", "head": "softmax", "fc": [4]},
                                 {"name": "llr", "head": "llr"}], train__l2=0.001)
    assert differences(fc, base) == [
        'train.vary.head = [{"name": "softmax", "head": "softmax", "fc": [4]}, '
        '{"name": "llr", "head": "llr"}] (base: ["softmax", "llr"])',
        "train.l2 = 0.001 (base: not set)"]
