"""Tests of variable collection, kinds and the built-in direction generators."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from biaslab.errors import PluginError
from biaslab.landscape.directions import (
    DirectionSpec,
    direction_rng,
    draw_directions,
    filter_normalized_direction,
    least_aligned_pair,
    load_directions,
    random_direction,
    save_directions,
)
from biaslab.landscape.variables import classify_variables, collect_variables
from biaslab.plugins import load_plugins


def build_model(shared: bool = False) -> keras.Model:
    """A small conv net with BatchNormalization, dropout and a softmax Dense layer on 8x8x1 input."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    hidden = keras.layers.BatchNormalization(name="bn")(hidden)
    hidden = keras.layers.Activation("relu")(hidden)
    if shared:
        repeated = keras.layers.Conv2D(4, 3, padding="same", name="shared_conv")
        hidden = repeated(hidden)
        hidden = repeated(hidden)
    hidden = keras.layers.Dropout(0.1, name="dropout")(hidden)
    hidden = keras.layers.Flatten()(hidden)
    outputs = keras.layers.Dense(10, activation="softmax", name="classifier")(hidden)
    return keras.Model(inputs, outputs)


def weights_and_kinds(model: keras.Model) -> tuple[dict, dict]:
    variables = collect_variables(model)
    weights = {path: variable.numpy() for path, variable in variables.items()}
    return weights, classify_variables(model, variables)


def filter_norms(array: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(array.astype(np.float64) ** 2, axis=tuple(range(array.ndim - 1))))


def test_kinds_follow_layer_types():
    weights, kinds = weights_and_kinds(build_model())

    assert kinds["conv/kernel"] == "conv_kernel"
    assert kinds["conv/bias"] == "bias"
    assert kinds["classifier/kernel"] == "dense_kernel"
    assert kinds["classifier/bias"] == "bias"
    for name in ("gamma", "beta", "moving_mean", "moving_variance"):
        assert kinds[f"bn/{name}"] == "batchnorm"


def test_integer_state_is_left_out():
    model = build_model()
    weights, kinds = weights_and_kinds(model)

    integer_paths = [v.path for v in model.variables if "int" in str(v.dtype)]
    assert integer_paths, "the dropout layer should own an integer seed variable"
    for path in integer_paths:
        assert path not in weights


def test_other_kind_for_unknown_layers():
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Conv2DTranspose(2, 3, name="up")(inputs)
    hidden = keras.layers.LayerNormalization(name="norm")(hidden)
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(keras.layers.Flatten()(hidden))
    weights, kinds = weights_and_kinds(keras.Model(inputs, outputs))

    assert kinds["up/kernel"] == "other"
    assert kinds["norm/gamma"] == "other"
    assert kinds["norm/beta"] == "other"
    direction = filter_normalized_direction(weights, kinds, direction_rng(0, 1))
    assert np.any(direction["up/kernel"] != 0)
    assert np.all(direction["norm/gamma"] == 0)


def test_filter_norms_match_weights():
    weights, kinds = weights_and_kinds(build_model())
    direction = filter_normalized_direction(weights, kinds, direction_rng(3, 1))

    for path in ("conv/kernel", "classifier/kernel"):
        np.testing.assert_allclose(filter_norms(direction[path]), filter_norms(weights[path]), rtol=1e-5)
        assert direction[path].shape == weights[path].shape
        assert direction[path].dtype == weights[path].dtype


def test_zero_filter_gets_zero_direction():
    weights, kinds = weights_and_kinds(build_model())
    weights["conv/kernel"][..., 2] = 0.0
    weights["classifier/kernel"][:, 7] = 0.0

    direction = filter_normalized_direction(weights, kinds, direction_rng(0, 1))

    assert np.all(np.isfinite(direction["conv/kernel"]))
    assert np.all(direction["conv/kernel"][..., 2] == 0)
    assert np.all(direction["classifier/kernel"][:, 7] == 0)
    assert np.all(direction["conv/kernel"][..., 1] != 0)


@pytest.mark.parametrize("generate", [random_direction, filter_normalized_direction])
def test_bias_and_batchnorm_are_zero(generate):
    weights, kinds = weights_and_kinds(build_model())
    direction = generate(weights, kinds, direction_rng(0, 1))

    for path in ("conv/bias", "classifier/bias", "bn/gamma", "bn/beta", "bn/moving_mean", "bn/moving_variance"):
        assert np.all(direction[path] == 0), path
    assert np.any(direction["conv/kernel"] != 0)


def test_random_direction_is_standard_gaussian():
    weights = {"big/kernel": np.ones((200, 500), dtype=np.float32)}
    direction = random_direction(weights, {"big/kernel": "dense_kernel"}, direction_rng(0, 1))

    assert direction["big/kernel"].dtype == np.float32
    assert abs(float(np.mean(direction["big/kernel"]))) < 0.01
    assert abs(float(np.std(direction["big/kernel"])) - 1.0) < 0.01


@pytest.mark.parametrize("generate", [random_direction, filter_normalized_direction])
def test_same_seed_same_directions(generate):
    weights, kinds = weights_and_kinds(build_model())
    first = generate(weights, kinds, direction_rng(5, 1))
    again = generate(weights, kinds, direction_rng(5, 1))
    other_seed = generate(weights, kinds, direction_rng(6, 1))
    other_stream = generate(weights, kinds, direction_rng(5, 2))

    for path in weights:
        np.testing.assert_array_equal(first[path], again[path])
    assert not np.array_equal(first["conv/kernel"], other_seed["conv/kernel"])
    assert not np.array_equal(first["conv/kernel"], other_stream["conv/kernel"])


def test_shared_kernel_appears_once():
    model = build_model(shared=True)
    weights, kinds = weights_and_kinds(model)

    paths = list(weights)
    assert paths.count("shared_conv/kernel") == 1
    assert len(paths) == len(set(paths))
    assert kinds["shared_conv/kernel"] == "conv_kernel"
    direction = filter_normalized_direction(weights, kinds, direction_rng(0, 1))
    assert sorted(direction) == sorted(weights)


def test_builtins_are_registered():
    plugins = load_plugins(entry_points=False)

    assert plugins.names("direction") == ["filter", "random"]
    assert plugins.get("direction", "filter").generate is filter_normalized_direction
    assert plugins.get("direction", "random").generate is random_direction


@pytest.mark.parametrize(
    "bad_direction, message",
    [
        (lambda w: {}, "missing"),
        (lambda w: {**w, "extra/kernel": np.zeros(1)}, "unexpected"),
        (lambda w: {p: a.astype(np.float64) for p, a in w.items()}, "float64"),
        (lambda w: {p: np.zeros((1,) + a.shape, a.dtype) for p, a in w.items()}, "is expected"),
        (lambda w: {p: np.full_like(a, np.nan) for p, a in w.items()}, "NaN"),
        (lambda w: {p: np.zeros_like(a) for p, a in w.items()}, "zero for every variable"),
    ],
)
def test_invalid_plugin_direction_raises(bad_direction, message):
    weights, kinds = weights_and_kinds(build_model())
    spec = DirectionSpec("broken", "returns a bad direction", lambda w, k, rng: bad_direction(w))

    with pytest.raises(PluginError, match=message) as raised:
        draw_directions(spec, weights, kinds, direction_rng(0, 1), count=1)
    assert "broken" in str(raised.value)


def test_least_aligned_pair_on_known_vectors():
    candidates = [
        {"v": np.array([1.0, 0.0, 0.0])},
        {"v": np.array([1.0, 1.0, 0.0])},
        {"v": np.array([1.0, 0.0, 1.0])},
        {"v": np.array([-1.0, 0.2, 1.1])},
    ]
    first, second, cosine = least_aligned_pair(candidates)

    # pairs (0, 1), (0, 2), (0, 3), (1, 2), (1, 3) have |cosine| 0.71, 0.71, 0.67, 0.5 and 0.38
    assert (first, second) == (2, 3)
    assert cosine == pytest.approx(0.1 / (np.sqrt(2.0) * 1.5))


def test_directions_file_round_trip(tmp_path):
    weights, kinds = weights_and_kinds(build_model())
    spec = DirectionSpec("filter", "", filter_normalized_direction)
    drawn = draw_directions(spec, weights, kinds, direction_rng(4, 1), count=3)
    path = tmp_path / "directions.npz"

    save_directions(path, drawn, {"direction": "filter", "seed": 4})
    loaded, metadata = load_directions(path)

    assert metadata == {"direction": "filter", "seed": 4}
    assert len(loaded) == 3
    for original, restored in zip(drawn, loaded):
        assert sorted(restored) == sorted(original)
        for name in original:
            np.testing.assert_array_equal(restored[name], original[name])
    with np.load(path) as stored:
        assert stored["conv/kernel"].shape == (3, 3, 3, 1, 4)
        assert json.loads(str(stored["__metadata__"]))["seed"] == 4


def test_sharesnet_kernels_counted_once():
    from biaslab.models import build_model as build_biaslab_model
    from biaslab.models import parameter_counts

    model = build_biaslab_model("sharesnet20", (8, 8, 1), 10, seed=0)
    weights, kinds = weights_and_kinds(model)

    assert sum(array.size for array in weights.values()) == parameter_counts(model)["total"]
    assert "stage1_block2_conv1/kernel" in weights
    assert "stage1_block2_conv2/kernel" not in weights
    assert "stage2_block1_conv2/kernel" in weights
    assert kinds["stage1_block2_conv1/kernel"] == "conv_kernel"
    assert kinds["stage1_block2_bn2/moving_variance"] == "batchnorm"


def test_loading_directions_skips_tensorflow():
    code = (
        "import sys\n"
        "from biaslab.plugins import load_plugins\n"
        "load_plugins(entry_points=False).get('direction', 'filter')\n"
        "print('tensorflow' in sys.modules, 'matplotlib' in sys.modules)\n"
    )
    repository = Path(__file__).resolve().parent.parent
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repository), os.environ.get("PYTHONPATH", "")])}
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=environment
    )

    assert completed.stdout.split() == ["False", "False"]
