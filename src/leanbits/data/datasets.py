"""Train / validation / test splits as normalized tensors, and the one way leanbits loads
them: :func:`load_data` turns data settings (a :class:`DataConfig`, a snapshot's ``[data]``
table or a sweep's data settings) into :class:`Splits` - the IDX image data sets through
:func:`load_splits`, or tiny generated data (``"synthetic"``) for tests and smoke runs.
The regimes where overfitting shows are data settings too: a training subset
(``limit_train``) and symmetric label noise on the training split (``label_noise``,
:func:`symmetric_label_noise`); validation and test labels are never changed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from leanbits.config import make
from leanbits.data import idx, sources
from leanbits.errors import ConfigError, DataError, FormatError
from leanbits.settings.data import DATASETS, MAX_LABEL_NOISE, SYNTHETIC, VAL_SIZE, DataConfig

__all__ = ["DATASETS", "MAX_LABEL_NOISE", "VAL_SIZE", "DataConfig", "Split", "Splits",
           "dataset_meta", "load_data", "load_splits", "snapshot_data",
           "symmetric_label_noise", "synthetic_splits"]

#: second word of the label noise RNG's seed, so its stream differs from the split's
_NOISE_STREAM = 0x6E6F697365  # "noise"

# Per-pixel mean/std of the 60k training images after scaling to [0, 1].
# Fashion-MNIST's were computed from the data: 0.28604 / 0.35302.
_NORMALIZATION: dict[str, tuple[float, float]] = {
    "mnist": (0.1307, 0.3081),
    "fashion-mnist": (0.2860, 0.3530),
}
_FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
_CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": tuple(str(d) for d in range(10)),
    "fashion-mnist": _FASHION_CLASSES,
}
NUM_CLASSES = 10
IN_SHAPE = (1, 28, 28)


# eq=False: tensors have no single truth value, so a generated __eq__ would raise.
@dataclass(frozen=True, eq=False)
class Split:
    """One split: images ``x`` float32 ``[N, 1, 28, 28]`` (normalized), labels ``y`` int64 ``[N]``.

    ``len(split)`` is N, and ``x, y = split`` unpacks like a pair.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter((self.x, self.y))


@dataclass(frozen=True, eq=False)
class Splits:
    """The three splits of one dataset, plus the settings that produced them."""

    name: str
    train: Split
    val: Split
    test: Split
    seed: int


def dataset_meta(name: str) -> dict:
    """Describe dataset ``name``.

    Args:
        name: ``"mnist"`` or ``"fashion-mnist"``.

    Returns:
        ``{"name", "num_classes": 10, "in_shape": (1, 28, 28), "mean", "std",
        "class_names"}``; ``mean``/``std`` are the normalization applied by
        :func:`load_splits`.

    Raises:
        ConfigError: unknown name (the message lists the valid ones).
    """
    sources.dataset_spec(name)
    mean, std = _NORMALIZATION[name]
    return {
        "name": name,
        "num_classes": NUM_CLASSES,
        "in_shape": IN_SHAPE,
        "mean": mean,
        "std": std,
        "class_names": _CLASS_NAMES[name],
    }


def _check_int(what: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ConfigError(f"{what} must be an integer >= {low}, got {value!r}")
    return int(value)


def symmetric_label_noise(y: torch.Tensor, rate: float, num_classes: int, seed: int,
                          ) -> torch.Tensor:
    """Labels with symmetric noise: exactly ``round(rate * N)`` of them, chosen at random,
    are replaced by one of the other ``num_classes - 1`` classes drawn uniformly.

    Args:
        y: int64 labels ``[N]`` in ``0 .. num_classes - 1`` (not modified).
        rate: fraction of labels to change, from 0 to :data:`MAX_LABEL_NOISE`.
        num_classes: K (at least 2).
        seed: fixes which labels change and to what.

    Returns:
        A new label tensor; ``(result != y).float().mean()`` is ``round(rate * N) / N``.

    Raises:
        ConfigError: a rate outside ``[0, MAX_LABEL_NOISE]``.

    Example:
        >>> y = torch.zeros(10, dtype=torch.int64)
        >>> int((symmetric_label_noise(y, 0.3, 10, seed=1) != y).sum())
        3
    """
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not (
            0 <= rate <= MAX_LABEL_NOISE):
        raise ConfigError(f"label_noise must be a number from 0 to {MAX_LABEL_NOISE}, got "
                          f"{rate!r}")
    n = int(y.shape[0])
    flips = round(rate * n)
    if flips == 0:
        return y.clone()
    rng = np.random.default_rng([_check_int("seed", seed, 0), _NOISE_STREAM])
    idx_ = torch.from_numpy(rng.permutation(n)[:flips])
    # An offset of 1 .. K-1 classes, modulo K: a different class, each equally likely.
    offset = torch.from_numpy(rng.integers(1, num_classes, size=flips))
    out = y.clone()
    out[idx_] = (y[idx_] + offset) % num_classes
    return out


def _read_pair(name: str, ddir: Path, images: str, labels: str) -> tuple[np.ndarray, np.ndarray]:
    hint = f"delete it and run `leanbits data fetch {name}` again"
    x = idx.read_idx(ddir / images, hint=hint)
    y = idx.read_idx(ddir / labels, hint=hint)
    h, w = IN_SHAPE[1:]
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (h, w):
        raise DataError(
            f"{ddir / images}: expected uint8 images of shape [N, {h}, {w}], got {x.dtype} "
            f"{list(x.shape)}; {hint}"
        )
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(
            f"{ddir / labels}: expected 1-D integer labels, got {y.dtype} {list(y.shape)}; {hint}"
        )
    if x.shape[0] != y.shape[0]:
        raise DataError(
            f"{ddir}: {images} has {x.shape[0]} images but {labels} has {y.shape[0]} labels; {hint}"
        )
    if y.size and (int(y.min()) < 0 or int(y.max()) >= NUM_CLASSES):
        raise DataError(
            f"{ddir / labels}: labels outside 0..{NUM_CLASSES - 1} "
            f"(min {int(y.min())}, max {int(y.max())}); {hint}"
        )
    return x, y


def _to_split(
    x: np.ndarray, y: np.ndarray, index: torch.Tensor | None, mean: float, std: float
) -> Split:
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(y.astype(np.int64))
    if index is not None:
        # Select on uint8 before converting: 4x less memory than indexing floats.
        xt, yt = xt[index], yt[index]
    xf = xt.to(torch.float32).div_(255.0).sub_(mean).div_(std).unsqueeze_(1)
    return Split(xf.contiguous(), yt.contiguous())


def load_splits(
    name: str,
    val_size: int = VAL_SIZE,
    seed: int = 0,
    cache_dir: Path | str | None = None,
    limit_train: int | None = None,
    label_noise: float = 0.0,
) -> Splits:
    """Load dataset ``name`` (fetching it if needed) as train / val / test tensors.

    The validation set is ``val_size`` examples of the official training set,
    chosen by a permutation seeded with ``seed``; the rest, in that permuted
    order, is the training split. The official test set is the test split.
    Images are scaled to [0, 1], then normalized with the dataset's mean/std.

    Args:
        name: ``"mnist"`` or ``"fashion-mnist"``.
        val_size: examples held out for validation (0 for none).
        seed: seed of the split permutation; same seed, same split.
        cache_dir: data cache root; default ``$LEANBITS_DATA`` or ``~/.cache/leanbits``.
        limit_train: keep only the first N training examples (fast tests, small-data
            regimes).
        label_noise: symmetric label noise on the training split
            (:func:`symmetric_label_noise`, seeded by ``seed``). It is drawn over the
            whole training split before ``limit_train`` cuts it, so an example's label
            does not depend on the limit (on a subset the rate holds on average).

    Returns:
        A frozen :class:`Splits`; e.g. for MNIST 55000 / 5000 / 10000 examples.

    Raises:
        ConfigError: unknown name or bad sizes.
        DataError: files cannot be fetched, are corrupt, or images and labels disagree.

    Example:
        >>> s = load_splits("mnist", limit_train=1000)  # doctest: +SKIP
        >>> s.train.x.shape, s.val.y.shape  # doctest: +SKIP
        (torch.Size([1000, 1, 28, 28]), torch.Size([5000]))
    """
    meta = dataset_meta(name)
    val_size = _check_int("val_size", val_size, 0)
    seed = _check_int("seed", seed, 0)
    if limit_train is not None:
        limit_train = _check_int("limit_train", limit_train, 0)

    ddir = sources.fetch(name, cache_dir=cache_dir)
    x_tr, y_tr = _read_pair(name, ddir, sources.TRAIN_IMAGES, sources.TRAIN_LABELS)
    x_te, y_te = _read_pair(name, ddir, sources.TEST_IMAGES, sources.TEST_LABELS)

    n = x_tr.shape[0]
    if val_size >= n:
        raise ConfigError(f"val_size={val_size} leaves no training data ({name} has {n})")
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    val_idx, train_idx = perm[:val_size], perm[val_size:]
    # Noise is drawn over the whole training split, then cut: an example's label does not
    # depend on limit_train.
    y_noisy = None
    if label_noise:
        y_noisy = symmetric_label_noise(torch.from_numpy(y_tr.astype(np.int64))[train_idx],
                                        label_noise, NUM_CLASSES, seed)
    if limit_train is not None:
        train_idx = train_idx[:limit_train]
        y_noisy = None if y_noisy is None else y_noisy[:limit_train].contiguous()

    mean, std = meta["mean"], meta["std"]
    train = _to_split(x_tr, y_tr, train_idx, mean, std)
    return Splits(
        name=name,
        train=train if y_noisy is None else Split(train.x, y_noisy),
        val=_to_split(x_tr, y_tr, val_idx, mean, std),
        test=_to_split(x_te, y_te, None, mean, std),
        seed=seed,
    )


def synthetic_splits(n_train: int, n_val: int, n_test: int, seed: int = 0) -> Splits:
    """Tiny MNIST-shaped data: 10 random class means of shape [1, 28, 28] plus Gaussian noise.

    Hard enough that accuracy moves with bits, fast enough for tests. Through
    :func:`load_data`, ``dataset = "synthetic"`` gives ``limit_train`` (default 512) training
    examples and ``min(val_size, 512)`` validation and as many test examples, seeded by
    ``split_seed``.
    """
    g = torch.Generator().manual_seed(1000 + seed)
    centers = 0.7 * torch.randn(10, *IN_SHAPE, generator=g)

    def part(n: int) -> Split:
        y = torch.randint(0, NUM_CLASSES, (n,), generator=g)
        return Split(centers[y] + torch.randn(n, *IN_SHAPE, generator=g), y)

    return Splits("synthetic", part(n_train), part(n_val), part(n_test), seed)


def load_data(data: DataConfig | Mapping[str, Any]) -> Splits:
    """The splits that data settings name, fetching the data set if needed.

    Args:
        data: a :class:`DataConfig`, or a mapping with its keys (a snapshot's ``[data]``
            table, a sweep's data settings); a missing or None key takes the default.
            ``dataset = "synthetic"`` gives :func:`synthetic_splits`.

    Returns:
        The :class:`Splits`.

    Raises:
        ConfigError: unknown data set or bad sizes.
        DataError: the files cannot be fetched or are corrupt.

    Example:
        >>> load_data(DataConfig(limit_train=1000)).train.x.shape  # doctest: +SKIP
        torch.Size([1000, 1, 28, 28])
    """
    d = {f.name: getattr(data, f.name) for f in fields(DataConfig)} \
        if isinstance(data, DataConfig) else dict(data)
    noise = d.get("label_noise") or 0.0
    if d.get("dataset") == SYNTHETIC:
        n_val = min(int(d.get("val_size") or 128), 512)
        seed = int(d.get("split_seed") or 0)
        s = synthetic_splits(d.get("limit_train") or 512, n_val, n_val, seed)
        if not noise:
            return s
        noisy = symmetric_label_noise(s.train.y, noise, NUM_CLASSES, seed)
        return Splits(s.name, Split(s.train.x, noisy), s.val, s.test, s.seed)
    default = DataConfig()
    val_size = d.get("val_size")
    split_seed = d.get("split_seed")
    return load_splits(str(d.get("dataset") or default.dataset),
                       val_size=default.val_size if val_size is None else int(val_size),
                       seed=default.split_seed if split_seed is None else int(split_seed),
                       limit_train=d.get("limit_train"), label_noise=noise)


def snapshot_data(config: Mapping[str, Any], limit_train: int | None = None,
                  source: str | Path = "config.toml") -> Splits:
    """The splits a snapshot was trained on, from the ``[data]`` table of its config.toml.

    Args:
        config: the snapshot's config.
        limit_train: keep only this many training examples (the snapshot's own limit is
            not applied: pruning and quantizing re-fit on the full training split).
        source: where the config came from, for error messages.

    Raises:
        FormatError: the ``[data]`` table is not a table of valid :class:`DataConfig`
            settings.
    """
    section = config.get("data", {})
    try:
        if not isinstance(section, dict):
            raise ConfigError(f"data = {section!r} must be a [data] table of settings")
        data = make(DataConfig, section)
    except ConfigError as exc:
        raise FormatError(f"{source}: {exc}; fix its [data] section") from None
    return load_data(replace(data, limit_train=limit_train))
