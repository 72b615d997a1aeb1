import shutil
import tarfile

import numpy as np
import pytest

from biaslab.data import (
    CIFAR10_CLASSES,
    Preprocessor,
    load_cifar10,
    load_dataset,
    load_digits,
    resolve_class,
    write_cifar_batch,
)
from biaslab.errors import ConfigError, DataError


def test_cifar_sample_layout(cifar_dataset):
    assert cifar_dataset.x_train.shape == (3000, 32, 32, 3)
    assert cifar_dataset.x_test.shape == (1000, 32, 32, 3)
    assert cifar_dataset.x_train.dtype == np.float32
    assert cifar_dataset.x_train.min() >= 0.0
    assert cifar_dataset.x_train.max() <= 1.0
    assert np.bincount(cifar_dataset.y_train).tolist() == [300] * 10
    # the first labels of the sample's MANIFEST.csv: horse, frog, deer, cat
    assert cifar_dataset.y_train[:4].tolist() == [7, 6, 4, 3]


def test_cifar_from_official_archive(cifar_sample, cifar_dataset, tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as handle:
        handle.add(cifar_sample / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    from_archive = load_cifar10(archive)
    np.testing.assert_array_equal(from_archive.x_train, cifar_dataset.x_train)
    np.testing.assert_array_equal(from_archive.y_test, cifar_dataset.y_test)
    from_folder_with_archive = load_cifar10(tmp_path)
    np.testing.assert_array_equal(from_folder_with_archive.y_train, cifar_dataset.y_train)


def test_cifar_any_subset_of_batches(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    images = rng.integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    write_cifar_batch(folder / "data_batch_2", images[:2], [0, 1])
    write_cifar_batch(folder / "data_batch_4", images[2:4], [2, 3])
    write_cifar_batch(folder / "test_batch", images[4:], [4, 5])
    dataset = load_cifar10(tmp_path)
    assert dataset.y_train.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(dataset.x_train[1], images[1] / 255.0, rtol=1e-6)


def test_missing_data_dir_names_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="nowhere.*does not exist"):
        load_cifar10(missing)


def test_corrupt_batch_names_file(cifar_sample, tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    shutil.copytree(cifar_sample / "cifar-10-batches-py", folder)
    (folder / "test_batch").write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match="test_batch is corrupt"):
        load_cifar10(tmp_path)


def test_missing_test_batch(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    write_cifar_batch(folder / "data_batch_1", np.zeros((1, 32, 32, 3), np.uint8), [0])
    with pytest.raises(DataError, match="test_batch is missing"):
        load_cifar10(tmp_path)


def test_digits_fixed_split():
    first = load_digits()
    second = load_digits()
    assert first.x_train.shape == (1437, 8, 8, 1)
    assert first.x_test.shape == (360, 8, 8, 1)
    np.testing.assert_array_equal(first.y_test, second.y_test)
    assert first.x_train.max() == 1.0


def test_digits_rejects_data_dir(tmp_path):
    with pytest.raises(ConfigError, match="takes no data_dir"):
        load_dataset("digits", tmp_path)


@pytest.mark.parametrize("value, index", [("cat", 3), ("CAT", 3), ("Ship", 8), ("3", 3), (9, 9)])
def test_resolve_class(value, index):
    assert resolve_class(value, CIFAR10_CLASSES) == index


@pytest.mark.parametrize("value", ["kitten", "10", "-1"])
def test_unknown_class_lists_valid(value):
    with pytest.raises(ConfigError, match="valid classes are 0=airplane"):
        resolve_class(value, CIFAR10_CLASSES)


def test_preprocessing_uses_training_statistics():
    rng = np.random.default_rng(1)
    train = rng.random((20, 4, 4, 3), dtype=np.float32)
    test = rng.random((5, 4, 4, 3), dtype=np.float32)
    pixel = Preprocessor.fit("pixel", train)
    np.testing.assert_allclose(pixel(train).mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(pixel(test), test - train.mean(axis=0), atol=1e-6)
    sample = Preprocessor.fit("sample", train)
    np.testing.assert_allclose(sample(test).mean(axis=(1, 2, 3)), 0.0, atol=1e-6)
    np.testing.assert_array_equal(Preprocessor.fit("none", train)(test), test)
    with pytest.raises(ConfigError, match="unknown demean mode 'image'"):
        Preprocessor.fit("image", train)
