"""The datasets leanbits knows: each one's four IDX files with the size and SHA-256 of their
decompressed content (:class:`DatasetSpec`, :class:`FileSpec`, :data:`DATASETS`), the cache
names of those files, and the lookup by name (:func:`dataset_spec`). A file enters the cache
only when it matches this table.
"""

from __future__ import annotations

from dataclasses import dataclass

from leanbits.errors import ConfigError


@dataclass(frozen=True)
class FileSpec:
    """One cached file: its name and the size and SHA-256 of its decompressed content."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its name and the four IDX files it consists of."""

    name: str
    files: tuple[FileSpec, ...]

    def file(self, name: str) -> FileSpec:
        """Return the spec of file ``name`` (KeyError if it is not part of the dataset)."""
        for f in self.files:
            if f.name == name:
                return f
        raise KeyError(name)


TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"

#: The known datasets. Tests swap entries (monkeypatch.setitem) to use tiny fakes.
DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        "mnist",
        (
            FileSpec(
                TRAIN_IMAGES,
                47040016,
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            ),
            FileSpec(
                TRAIN_LABELS,
                60008,
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            ),
            FileSpec(
                TEST_IMAGES,
                7840016,
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            ),
            FileSpec(
                TEST_LABELS,
                10008,
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            ),
        ),
    ),
    "fashion-mnist": DatasetSpec(
        "fashion-mnist",
        (
            FileSpec(
                TRAIN_IMAGES,
                47040016,
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            ),
            FileSpec(
                TRAIN_LABELS,
                60008,
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            ),
            FileSpec(
                TEST_IMAGES,
                7840016,
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            ),
            FileSpec(
                TEST_LABELS,
                10008,
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            ),
        ),
    ),
}


def dataset_spec(name: str) -> DatasetSpec:
    """Look up a dataset by name.

    Args:
        name: e.g. ``"mnist"`` or ``"fashion-mnist"``.

    Returns:
        Its :class:`DatasetSpec`.

    Raises:
        ConfigError: unknown name; the message lists the valid ones.
    """
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        valid = ", ".join(sorted(DATASETS))
        raise ConfigError(f"unknown dataset {name!r}; valid names: {valid}") from None
