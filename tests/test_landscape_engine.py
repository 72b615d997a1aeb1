"""Tests of the compiled landscape evaluator against plain Keras evaluations."""

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

from biaslab.landscape.directions import direction_rng, filter_normalized_direction
from biaslab.landscape.engine import LandscapeEvaluator
from biaslab.landscape.variables import classify_variables, collect_variables


def build_model(l2: float = 0.0, shared: bool = False) -> keras.Model:
    """A small conv net with BatchNormalization and a softmax Dense layer on 8x8x1 input."""
    keras.utils.set_random_seed(1)
    regularizer = keras.regularizers.L2(l2) if l2 else None
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Conv2D(6, 3, padding="same", kernel_regularizer=regularizer, name="conv")(inputs)
    hidden = keras.layers.BatchNormalization(name="bn")(hidden)
    hidden = keras.layers.Activation("relu")(hidden)
    if shared:
        repeated = keras.layers.Conv2D(6, 3, padding="same", name="shared_conv")
        hidden = repeated(hidden)
        hidden = repeated(hidden)
    hidden = keras.layers.Flatten()(hidden)
    outputs = keras.layers.Dense(10, activation="softmax", kernel_regularizer=regularizer, name="classifier")(hidden)
    model = keras.Model(inputs, outputs)

    # moving statistics away from their initial 0 and 1, so training-mode BatchNormalization changes results
    bn = model.get_layer("bn")
    bn.moving_mean.assign(np.linspace(-0.3, 0.3, 6).astype(np.float32))
    bn.moving_variance.assign(np.linspace(0.5, 2.0, 6).astype(np.float32))
    return model


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    x = (data.images[:300] / 16.0).astype(np.float32)[..., None]
    y = data.target[:300].astype(np.int64)
    return x, y


def reference_metrics(model: keras.Model, x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Evaluate eagerly with Keras' own loss functions on the probabilities."""
    probabilities = model(x, training=False)
    one_hot = keras.ops.one_hot(y, 10)
    ce = float(keras.ops.mean(keras.losses.categorical_crossentropy(one_hot, probabilities)))
    mse = float(keras.losses.MeanSquaredError()(one_hot, probabilities))
    acc = float(np.mean(np.argmax(np.asarray(probabilities), axis=1) == y))
    return ce, mse, acc


def directions_for(model: keras.Model, seed: int) -> tuple[dict, dict]:
    variables = collect_variables(model)
    weights = {path: variable.numpy() for path, variable in variables.items()}
    kinds = classify_variables(model, variables)
    first = filter_normalized_direction(weights, kinds, direction_rng(seed, 1))
    second = filter_normalized_direction(weights, kinds, direction_rng(seed, 2))
    return first, second


def snapshot(model: keras.Model) -> list[np.ndarray]:
    return [np.array(variable.numpy(), copy=True) for variable in model.variables]


def test_center_equals_plain_evaluation(digits):
    x, y = digits
    model = build_model()
    d1, d2 = directions_for(model, seed=0)
    expected_ce, expected_mse, expected_acc = reference_metrics(model, x, y)

    with LandscapeEvaluator(model, collect_variables(model), x, y, batch_size=128) as evaluator:
        evaluator.set_directions(d1, d2)
        center = evaluator.evaluate(0.0, 0.0)

    assert center.ce == pytest.approx(expected_ce, abs=1e-5)
    assert center.mse == pytest.approx(expected_mse, abs=1e-7)
    assert center.acc == pytest.approx(expected_acc, abs=1e-12)


def test_evaluate_includes_penalty_landscape_not(digits):
    x, y = digits
    model = build_model(l2=0.05)
    model.compile(loss="categorical_crossentropy")
    penalty = float(sum(keras.ops.convert_to_numpy(loss) for loss in model.losses))
    evaluate_loss = model.evaluate(x, keras.ops.one_hot(y, 10), batch_size=300, verbose=0)
    d1, _ = directions_for(model, seed=0)

    with LandscapeEvaluator(model, collect_variables(model), x, y) as evaluator:
        evaluator.set_directions(d1)
        center = evaluator.evaluate(0.0)

    assert penalty > 0.01
    assert evaluate_loss == pytest.approx(center.ce + penalty, abs=1e-4)
    assert center.ce == pytest.approx(reference_metrics(model, x, y)[0], abs=1e-5)


@pytest.mark.parametrize("shared", [False, True])
def test_off_center_point_matches_manual_weights(digits, shared):
    x, y = digits
    model = build_model(shared=shared)
    variables = collect_variables(model)
    d1, d2 = directions_for(model, seed=2)
    a, b = 0.3, -0.45

    with LandscapeEvaluator(model, variables, x, y, batch_size=64) as evaluator:
        evaluator.set_directions(d1, d2)
        point = evaluator.evaluate(a, b)

    # set theta + a*d1 + b*d2 by hand, once per variable, and evaluate eagerly
    for path, variable in variables.items():
        variable.assign(variable.numpy() + np.float32(a) * d1[path] + np.float32(b) * d2[path])
    expected_ce, expected_mse, expected_acc = reference_metrics(model, x, y)

    assert point.ce == pytest.approx(expected_ce, abs=1e-5)
    assert point.mse == pytest.approx(expected_mse, abs=1e-6)
    assert point.acc == pytest.approx(expected_acc, abs=1e-12)


def test_restore_is_bit_identical(digits):
    x, y = digits
    model = build_model()
    before = snapshot(model)
    d1, d2 = directions_for(model, seed=0)

    with LandscapeEvaluator(model, collect_variables(model), x, y, batch_size=100) as evaluator:
        evaluator.set_directions(d1, d2)
        evaluator.evaluate(0.7, -0.2)
        assert not np.array_equal(model.get_layer("conv").kernel.numpy(), before[0])

    after = snapshot(model)
    assert len(after) == len(before)
    for previous, current in zip(before, after):
        assert np.array_equal(previous, current)


def test_one_trace_for_all_points(digits):
    x, y = digits
    model = build_model()
    first_pair = directions_for(model, seed=0)
    second_pair = directions_for(model, seed=1)

    with LandscapeEvaluator(model, collect_variables(model), x, y, batch_size=128) as evaluator:
        for d1, d2 in (first_pair, second_pair):
            evaluator.set_directions(d1, d2)
            for a in (-0.5, 0.0, 0.5):
                evaluator.evaluate(a, 0.25)
        evaluator.set_directions(first_pair[0])
        evaluator.evaluate(1.0)

        assert evaluator.trace_count == 1


@pytest.mark.parametrize("batch_size", [1, 7, 300, 1000])
def test_batch_size_does_not_change_metrics(digits, batch_size):
    x, y = digits
    x, y = x[:60], y[:60]
    model = build_model()
    d1, d2 = directions_for(model, seed=0)
    expected_ce, expected_mse, expected_acc = reference_metrics(model, x, y)

    with LandscapeEvaluator(model, collect_variables(model), x, y, batch_size=batch_size) as evaluator:
        evaluator.set_directions(d1, d2)
        center = evaluator.evaluate(0.0, 0.0)

    assert center.ce == pytest.approx(expected_ce, abs=1e-5)
    assert center.mse == pytest.approx(expected_mse, abs=1e-7)
    assert center.acc == pytest.approx(expected_acc, abs=1e-12)


def test_only_given_variables_change(digits):
    x, y = digits
    model = build_model()
    variables = collect_variables(model)
    kernel_only = {"classifier/kernel": variables["classifier/kernel"]}
    d1, _ = directions_for(model, seed=0)
    conv_before = model.get_layer("conv").kernel.numpy().copy()
    classifier_before = variables["classifier/kernel"].numpy().copy()

    evaluator = LandscapeEvaluator(model, kernel_only, x, y)
    evaluator.set_directions(d1)
    evaluator.evaluate(0.5)

    assert np.array_equal(model.get_layer("conv").kernel.numpy(), conv_before)
    assert not np.array_equal(variables["classifier/kernel"].numpy(), classifier_before)
    evaluator.restore()
    assert np.array_equal(variables["classifier/kernel"].numpy(), classifier_before)
