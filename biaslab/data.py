"""Clean datasets: CIFAR-10 (downloaded, a local folder or the official tar.gz) and scikit-learn's digits.

Images come back as float32 NHWC in the [0, 1] pixel scale with int64 labels. ``Preprocessor``
then subtracts the mean image of the clean training split (or each image's own mean), and the
same fitted statistics are applied to the test split.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import tarfile
from pathlib import Path
from typing import Iterable

import numpy as np

from biaslab.errors import ConfigError, DataError

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
DIGITS_CLASSES = tuple(str(digit) for digit in range(10))
DATASETS = ("cifar10", "digits")
DEMEAN_MODES = ("pixel", "sample", "none")
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_BATCH = "test_batch"
CIFAR_LAYOUTS = (
    f"a folder holding {CIFAR_FOLDER}/ (or being it) with any of data_batch_1..5 and test_batch, "
    f"or the official {CIFAR_ARCHIVE}"
)
# The digits split is fixed (seed 0, 20% stratified test) so that every run uses the same test set.
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


@dataclasses.dataclass
class Dataset:
    """A clean dataset in the [0, 1] pixel scale, NHWC float32, with int64 labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]


def resolve_class(value: str | int, class_names: Iterable[str]) -> int:
    """Turn a class name (case insensitive) or index into the class index."""
    names = tuple(class_names)
    text = str(value).strip()
    lowered = [name.lower() for name in names]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    if text.lstrip("-").isdigit():
        index = int(text)
        if 0 <= index < len(names):
            return index
    valid = ", ".join(f"{i}={name}" for i, name in enumerate(names))
    raise ConfigError(f"unknown class {value!r}; valid classes are {valid} (give a name or an index)")


def _decode_batch(raw: bytes, path: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = pickle.loads(raw, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise DataError(
            f"CIFAR-10 batch file {path} is corrupt or not in the official python layout "
            f"({type(error).__name__}: {error}). Replace it with the official file; accepted layouts: {CIFAR_LAYOUTS}"
        ) from error
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(
            f"CIFAR-10 batch file {path} has data of shape {data.shape} and {len(labels)} labels; "
            f"expected N x 3072 with N labels"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"CIFAR-10 batch file {path} has labels outside 0..9")
    # rows are channel-first (1024 R, 1024 G, 1024 B values), row-major
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels


def _cifar_from_files(read: dict[str, tuple[bytes, str]], source: str) -> Dataset:
    train = [name for name in CIFAR_TRAIN_BATCHES if name in read]
    if not train:
        raise DataError(f"no CIFAR-10 training batch (data_batch_1..5) found in {source}; accepted layouts: {CIFAR_LAYOUTS}")
    if CIFAR_TEST_BATCH not in read:
        raise DataError(f"CIFAR-10 test_batch is missing in {source}; accepted layouts: {CIFAR_LAYOUTS}")
    parts = [_decode_batch(*read[name]) for name in train]
    x_test, y_test = _decode_batch(*read[CIFAR_TEST_BATCH])
    x_train = np.concatenate([images for images, _ in parts])
    y_train = np.concatenate([labels for _, labels in parts])
    return Dataset(
        name="cifar10",
        x_train=x_train.astype(np.float32) / 255.0,
        y_train=y_train,
        x_test=x_test.astype(np.float32) / 255.0,
        y_test=y_test,
        class_names=CIFAR10_CLASSES,
        source=f"{source} ({', '.join(train)}, {CIFAR_TEST_BATCH})",
    )


def _read_archive(path: Path) -> Dataset:
    try:
        with tarfile.open(path, "r:gz") as archive:
            read = {}
            for member in archive.getmembers():
                name = Path(member.name).name
                if member.isfile() and (name in CIFAR_TRAIN_BATCHES or name == CIFAR_TEST_BATCH):
                    handle = archive.extractfile(member)
                    assert handle is not None
                    read[name] = (handle.read(), f"{path}:{member.name}")
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataError(f"CIFAR-10 archive {path} cannot be read ({error}); accepted layouts: {CIFAR_LAYOUTS}") from error
    return _cifar_from_files(read, str(path))


def _read_folder(folder: Path) -> Dataset:
    read = {}
    for name in (*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH):
        path = folder / name
        if path.is_file():
            read[name] = (path.read_bytes(), str(path))
    return _cifar_from_files(read, str(folder))


def load_cifar10(data_dir: str | Path | None = None) -> Dataset:
    """Load CIFAR-10 from ``data_dir`` (a folder or the official archive), or through Keras when it is None."""
    if data_dir is None or str(data_dir) == "":
        return _download_cifar10()

    path = Path(data_dir).expanduser()
    if not path.exists():
        raise DataError(f"data_dir {str(path)!r} does not exist; give {CIFAR_LAYOUTS}")
    if path.is_file():
        return _read_archive(path)
    for folder in (path / CIFAR_FOLDER, path):
        if any((folder / name).is_file() for name in (*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH)):
            return _read_folder(folder)
    if (path / CIFAR_ARCHIVE).is_file():
        return _read_archive(path / CIFAR_ARCHIVE)
    raise DataError(f"data_dir {str(path)!r} contains no CIFAR-10 files; give {CIFAR_LAYOUTS}")


def _download_cifar10() -> Dataset:
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as error:  # noqa: BLE001 - network and archive errors alike
        raise DataError(
            f"downloading CIFAR-10 through keras.datasets.cifar10 failed ({type(error).__name__}: {error}). "
            f"Offline, pass data_dir with {CIFAR_LAYOUTS}, or use dataset=digits."
        ) from error
    return Dataset(
        name="cifar10",
        x_train=x_train.astype(np.float32) / 255.0,
        y_train=y_train.reshape(-1).astype(np.int64),
        x_test=x_test.astype(np.float32) / 255.0,
        y_test=y_test.reshape(-1).astype(np.int64),
        class_names=CIFAR10_CLASSES,
        source="keras.datasets.cifar10",
    )


def load_digits() -> Dataset:
    """Load scikit-learn's bundled 8x8 digits (1,797 images) with a fixed stratified 80/20 split."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[..., np.newaxis]
    labels = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED, stratify=labels
    )
    return Dataset("digits", x_train, y_train, x_test, y_test, DIGITS_CLASSES, "sklearn.datasets.load_digits")


def load_dataset(name: str, data_dir: str | Path | None = None) -> Dataset:
    if name == "cifar10":
        return load_cifar10(data_dir)
    if name == "digits":
        if data_dir:
            raise ConfigError(f"dataset=digits ships with scikit-learn and takes no data_dir (got {str(data_dir)!r})")
        return load_digits()
    raise ConfigError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")


@dataclasses.dataclass(frozen=True)
class Preprocessor:
    """Mean subtraction fitted on the clean training split and applied to any split."""

    demean: str
    mean_image: np.ndarray | None

    @classmethod
    def fit(cls, demean: str, x_train: np.ndarray) -> "Preprocessor":
        if demean not in DEMEAN_MODES:
            raise ConfigError(f"unknown demean mode {demean!r}; choose one of: {', '.join(DEMEAN_MODES)}")
        mean_image = x_train.mean(axis=0).astype(np.float32) if demean == "pixel" else None
        return cls(demean, mean_image)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        pixels = np.asarray(pixels, dtype=np.float32)
        if self.demean == "pixel":
            return pixels - self.mean_image
        if self.demean == "sample":
            axes = tuple(range(1, pixels.ndim))
            return pixels - pixels.mean(axis=axes, keepdims=True)
        return pixels.copy()


def write_cifar_batch(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write uint8 NHWC images in the official CIFAR-10 python batch layout (used by tests and tools)."""
    data = np.asarray(images, dtype=np.uint8).transpose(0, 3, 1, 2).reshape(len(images), -1)
    batch = {b"data": data, b"labels": [int(label) for label in labels], b"batch_label": b"biaslab"}
    with io.open(path, "wb") as handle:
        pickle.dump(batch, handle, protocol=2)
