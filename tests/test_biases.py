import csv
import math

import numpy as np
import pytest

from biaslab.biases import BiasInput, count_for_pct, resolve_options, write_manifest
from biaslab.data import Preprocessor
from biaslab.errors import ConfigError


def apply_bias(plugins, dataset, name, cls=None, pct=0.0, seed=0, **options):
    spec = plugins.get("bias", name)
    preprocessor = Preprocessor.fit("pixel", dataset.x_train)
    bias_input = BiasInput(
        x=preprocessor(dataset.x_train),
        x_pixels=dataset.x_train,
        y=dataset.y_train,
        preprocess=preprocessor,
        class_names=dataset.class_names,
        cls=cls,
        pct=pct,
        options=resolve_options(spec, options),
        seed=seed,
    )
    return bias_input, spec.apply(bias_input)


def test_mislabel_100_changes_every_label(plugins, cifar_dataset):
    _, result = apply_bias(plugins, cifar_dataset, "mislabel", pct=100)
    assert np.all(result.y != cifar_dataset.y_train)
    assert len(result.manifest) == 3000


def test_mislabel_50_changes_exactly_half(plugins, cifar_dataset):
    _, result = apply_bias(plugins, cifar_dataset, "mislabel", pct=50)
    assert int(np.sum(result.y != cifar_dataset.y_train)) == 1500
    assert result.stats["bias_realized_pct"] == 50.0
    # flips are spread over classes in proportion to size: 150 of each 300
    changed = result.y != cifar_dataset.y_train
    assert np.bincount(cifar_dataset.y_train[changed], minlength=10).tolist() == [150] * 10


def test_mislabel_0_changes_nothing(plugins, cifar_dataset):
    _, result = apply_bias(plugins, cifar_dataset, "mislabel", pct=0)
    np.testing.assert_array_equal(result.y, cifar_dataset.y_train)
    assert result.manifest == []


def test_mislabel_80_keeps_class_counts(plugins, cifar_dataset):
    _, result = apply_bias(plugins, cifar_dataset, "mislabel", pct=80)
    before = np.bincount(cifar_dataset.y_train, minlength=10)
    after = np.bincount(result.y, minlength=10)
    assert np.all(np.abs(after - before) <= 0.02 * before)


def test_mislabel_new_labels_cover_other_classes(plugins, cifar_dataset):
    _, result = apply_bias(plugins, cifar_dataset, "mislabel", pct=100)
    cats = cifar_dataset.y_train == 3
    new_labels = np.bincount(result.y[cats], minlength=10)
    assert new_labels[3] == 0
    # 300 cats over 9 other classes: about 33 each; every class gets a fair share
    assert new_labels[np.arange(10) != 3].min() >= 15


def test_size_cat_90_keeps_30_cats(plugins, cifar_dataset):
    bias_input, result = apply_bias(plugins, cifar_dataset, "size", cls=3, pct=90)
    counts = np.bincount(result.y, minlength=10)
    assert counts[3] == 30
    assert counts[np.arange(10) != 3].tolist() == [300] * 9
    # every kept sample is unchanged, image and label
    np.testing.assert_array_equal(result.x, bias_input.x[result.indices])
    np.testing.assert_array_equal(result.y, cifar_dataset.y_train[result.indices])
    assert len(result.manifest) == 270
    assert all(row[1] == "remove" and row[2] == 3 for row in result.manifest)


def test_size_100_warns_and_removes_class(plugins, cifar_dataset):
    with pytest.warns(UserWarning, match="removes class 'cat'"):
        _, result = apply_bias(plugins, cifar_dataset, "size", cls=3, pct=100)
    assert 3 not in result.y


def test_size_leaving_no_data_is_rejected(plugins):
    from biaslab.data import Dataset

    x = np.zeros((4, 2, 2, 1), np.float32)
    single_class = Dataset("tiny", x, np.zeros(4, np.int64), x, np.zeros(4, np.int64), ("a", "b"), "test")
    with pytest.raises(ConfigError, match="would remove all 4 training samples"):
        apply_bias(plugins, single_class, "size", cls=0, pct=100)


def test_gaussian_noise_std_on_constant_image(plugins):
    from biaslab.data import Dataset

    x = np.full((10, 32, 32, 3), 0.5, np.float32)
    y = np.array([0] * 5 + [1] * 5, np.int64)
    constant = Dataset("constant", x, y, x[:2], y[:2], ("a", "b"), "test")
    bias_input, result = apply_bias(plugins, constant, "gaussian", cls=0, pct=100, var=0.02)
    for index in range(5):
        noise = result.x[index] - bias_input.x[index]
        assert math.isclose(float(noise.std()), math.sqrt(0.02), rel_tol=0.03)
    np.testing.assert_array_equal(result.x[5:], bias_input.x[5:])


def test_gaussian_changes_exactly_pct_of_class(plugins, cifar_dataset):
    bias_input, result = apply_bias(plugins, cifar_dataset, "gaussian", cls=3, pct=60)
    changed = np.flatnonzero(np.any(result.x != bias_input.x, axis=(1, 2, 3)))
    assert len(changed) == count_for_pct(60, 300) == 180
    assert np.all(cifar_dataset.y_train[changed] == 3)
    assert sorted(row[0] for row in result.manifest) == changed.tolist()
    np.testing.assert_array_equal(result.y, cifar_dataset.y_train)


def test_gaussian_std_option_and_pixel_space(plugins, cifar_dataset):
    bias_input, result = apply_bias(plugins, cifar_dataset, "gaussian", cls=3, pct=10, std=0.2, space="pixel",
                                    clip=True, mean=0)
    assert result.stats["bias_noise_std"] == pytest.approx(0.2)
    changed = np.any(result.x != bias_input.x, axis=(1, 2, 3))
    assert int(changed.sum()) == 30
    # clipped in pixel space, then preprocessed with the clean mean image
    pixels = result.x[changed] + Preprocessor.fit("pixel", cifar_dataset.x_train).mean_image
    assert pixels.min() >= -1e-6
    assert pixels.max() <= 1 + 1e-6


def test_gaussian_rejects_var_and_std(plugins):
    spec = plugins.get("bias", "gaussian")
    with pytest.raises(ConfigError, match="both var=0.02 and std=0.2"):
        resolve_options(spec, {"var": "0.02", "std": "0.2"})


def test_unknown_option_names_bias_options(plugins):
    with pytest.raises(ConfigError, match="does not take option.*varr.*takes: clip, mean, space, std, var"):
        resolve_options(plugins.get("bias", "gaussian"), {"varr": "1"})


@pytest.mark.parametrize("name, kwargs", [("mislabel", {"pct": 30}), ("size", {"cls": 3, "pct": 60}),
                                           ("gaussian", {"cls": 3, "pct": 60})])
def test_same_seed_same_manifest(plugins, cifar_dataset, tmp_path, name, kwargs):
    manifests = []
    for index, seed in enumerate((7, 7, 8)):
        _, result = apply_bias(plugins, cifar_dataset, name, seed=seed, **kwargs)
        folder = tmp_path / f"run{index}"
        write_manifest(result, folder, {"seed": seed})
        manifests.append((folder / "manifest.csv").read_bytes())
    assert manifests[0] == manifests[1]
    assert manifests[0] != manifests[2]


def test_manifest_csv_rows(plugins, cifar_dataset, tmp_path):
    _, result = apply_bias(plugins, cifar_dataset, "mislabel", pct=10)
    write_manifest(result, tmp_path, {"bias": "mislabel"})
    with (tmp_path / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 300
    for row in rows:
        index = int(row["index"])
        assert int(row["label_before"]) == cifar_dataset.y_train[index]
        assert int(row["label_after"]) == result.y[index]
        assert row["label_before"] != row["label_after"]
