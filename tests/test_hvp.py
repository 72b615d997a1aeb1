"""Hessian-vector products of the data loss against Hessians computed with tf.GradientTape.jacobian."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from biaslab.errors import ConfigError  # noqa: E402
from biaslab.flatness.hvp import HessianOperator  # noqa: E402
from biaslab.flatness.regularization import l2_hessian_trace, regularization_loss  # noqa: E402


def two_layer_net(seed=0, hidden=5, regularizer=None):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    hidden_layer = keras.layers.Dense(hidden, activation="tanh", kernel_regularizer=regularizer, name="hidden")
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(hidden_layer(inputs))
    return keras.Model(inputs, outputs)


def sample_data(n=10, features=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, features)).astype(np.float32), rng.integers(0, classes, size=n)


def exact_hessian(model, x, y, variables):
    """Return the full Hessian of the mean cross-entropy over (x, y) with respect to ``variables``."""
    values = [variable.value for variable in variables]
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            probabilities = model(x, training=False)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, probabilities))
        gradients = inner.gradient(loss, values)
        flat = tf.concat([tf.reshape(gradient, [-1]) for gradient in gradients], axis=0)
    blocks = outer.jacobian(flat, values)
    size = int(flat.shape[0])
    return np.concatenate([np.reshape(block, (size, -1)) for block in blocks], axis=1).astype(np.float64)


@pytest.mark.parametrize("method", HessianOperator.METHODS)
def test_hvp_matches_exact_hessian(method):
    model = two_layer_net()
    x, y = sample_data()
    operator = HessianOperator(model, x, y, batch_size=4, method=method)
    hessian = exact_hessian(model, x, y, model.trainable_variables)
    assert operator.dimension == 4 * 5 + 5 + 5 * 3 + 3
    vector = np.random.default_rng(1).standard_normal(operator.dimension)
    np.testing.assert_allclose(operator.hvp(vector), hessian @ vector, rtol=1e-4, atol=1e-6)
    assert operator.trace_counts["hvp"] == 1


def test_unknown_hvp_method_rejected():
    x, y = sample_data()
    with pytest.raises(ConfigError, match="'reverse_over_forward'"):
        HessianOperator(two_layer_net(), x, y, batch_size=4, method="reverse_over_forward")


def test_hvp_batches_match_one_batch():
    model = two_layer_net()
    x, y = sample_data(n=23)
    vector = np.random.default_rng(2).standard_normal(43)
    whole = HessianOperator(model, x, y, batch_size=64).hvp(vector)
    for batch_size in (1, 4, 10):
        split = HessianOperator(model, x, y, batch_size=batch_size).hvp(vector)
        np.testing.assert_allclose(split, whole, rtol=1e-5, atol=1e-6)


def test_loss_and_gradient_batches_match_one_batch():
    model = two_layer_net()
    x, y = sample_data(n=23)
    whole_loss, whole_gradient = HessianOperator(model, x, y, batch_size=64).loss_and_gradient()
    split_loss, split_gradient = HessianOperator(model, x, y, batch_size=5).loss_and_gradient()
    assert split_loss == pytest.approx(whole_loss, rel=1e-6)
    np.testing.assert_allclose(split_gradient, whole_gradient, rtol=1e-5, atol=1e-7)


def test_loss_matches_keras_evaluate():
    model = two_layer_net()
    x, y = sample_data(n=30)
    model.compile(loss="sparse_categorical_crossentropy")
    expected = model.evaluate(x, y, batch_size=30, verbose=0)
    assert HessianOperator(model, x, y, batch_size=7).loss() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("method", HessianOperator.METHODS)
def test_hvp_step_traces_once(method):
    model = two_layer_net()
    x, y = sample_data(n=11)
    operator = HessianOperator(model, x, y, batch_size=4, method=method)  # batches of 4, 4 and 3
    rng = np.random.default_rng(3)
    for _ in range(3):
        operator.hvp(rng.standard_normal(operator.dimension))
    operator.hvp(rng.standard_normal(operator.dimension), delta=rng.standard_normal(operator.dimension) * 0.01)
    assert operator.trace_counts["hvp"] == 1
    assert operator.hvp_count == 4


def test_hvp_at_offset_matches_hessian_there():
    model = two_layer_net()
    x, y = sample_data()
    operator = HessianOperator(model, x, y, batch_size=32)
    delta = np.random.default_rng(4).standard_normal(operator.dimension) * 0.1
    vector = np.random.default_rng(5).standard_normal(operator.dimension)
    product = operator.hvp(vector, delta=delta)

    original = [variable.numpy() for variable in model.trainable_variables]
    for variable, offset in zip(model.trainable_variables, operator.split(delta).values()):
        variable.assign(variable.numpy() + offset)
    hessian = exact_hessian(model, x, y, model.trainable_variables)
    for variable, value in zip(model.trainable_variables, original):
        variable.assign(value)
    np.testing.assert_allclose(product, hessian @ vector, rtol=1e-4, atol=1e-6)


def test_hvp_leaves_weights_unchanged():
    model = two_layer_net()
    x, y = sample_data()
    before = [variable.numpy().copy() for variable in model.weights]
    operator = HessianOperator(model, x, y, batch_size=4)
    operator.hvp(np.ones(operator.dimension), delta=np.full(operator.dimension, 0.5))
    operator.loss_and_gradient(np.full(operator.dimension, 0.5))
    for variable, value in zip(model.weights, before):
        np.testing.assert_array_equal(variable.numpy(), value)


class SpareWeightDense(keras.layers.Layer):
    """A dense layer that also owns a trainable weight its output does not use."""

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], 3), initializer="glorot_uniform", name="kernel")
        self.spare = self.add_weight(shape=(7,), initializer="ones", name="spare")

    def call(self, inputs):
        return keras.ops.softmax(keras.ops.matmul(inputs, self.kernel))


def frozen_and_unused_net():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    frozen = keras.layers.Dense(5, activation="tanh", name="frozen")
    frozen.trainable = False
    outputs = SpareWeightDense(name="head")(frozen(inputs))
    return keras.Model(inputs, outputs)


def test_frozen_and_unused_variables_excluded():
    model = frozen_and_unused_net()
    x, y = sample_data()
    operator = HessianOperator(model, x, y, batch_size=4)
    assert [part.path for part in operator.layout] == ["head/kernel"]
    assert operator.unused_paths == ["head/spare"]
    assert set(operator.frozen_paths) == {"frozen/kernel", "frozen/bias"}
    assert operator.dimension == 15

    kernel = [variable for variable in model.trainable_variables if variable.path == "head/kernel"]
    hessian = exact_hessian(model, x, y, kernel)
    vector = np.random.default_rng(6).standard_normal(15)
    np.testing.assert_allclose(operator.hvp(vector), hessian @ vector, rtol=1e-4, atol=1e-6)
    description = operator.describe()
    assert description["unused"] == ["head/spare"]
    assert description["count"] == 15


def test_shared_kernel_counted_once():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    shared = keras.layers.Dense(4, activation="tanh", name="shared")
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(shared(shared(inputs)))
    model = keras.Model(inputs, outputs)
    x, y = sample_data()
    operator = HessianOperator(model, x, y, batch_size=4)
    assert [part.path for part in operator.layout] == ["shared/kernel", "shared/bias", "head/kernel", "head/bias"]
    assert operator.dimension == 16 + 4 + 12 + 3

    hessian = exact_hessian(model, x, y, [part for part in operator.variables])
    vector = np.random.default_rng(7).standard_normal(operator.dimension)
    np.testing.assert_allclose(operator.hvp(vector), hessian @ vector, rtol=1e-4, atol=1e-6)


def test_sharesnet_parameters_counted_once():
    from biaslab.models import build_model

    model = build_model("sharesnet20", (8, 8, 1), 10, seed=0)
    x = np.random.default_rng(0).uniform(-0.5, 0.5, size=(4, 8, 8, 1)).astype(np.float32)
    operator = HessianOperator(model, x, np.arange(4), batch_size=4)
    unique = {variable.path: int(np.prod(variable.shape)) for variable in model.trainable_variables}
    assert operator.dimension == sum(unique.values())
    assert len(operator.layout) == len(unique)


def test_non_probability_output_rejected():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(inputs))
    x, y = sample_data()
    with pytest.raises(ConfigError, match="softmax"):
        HessianOperator(model, x, y, batch_size=4)


def test_mismatched_labels_rejected():
    x, y = sample_data()
    with pytest.raises(ConfigError, match="9 labels"):
        HessianOperator(two_layer_net(), x, y[:9], batch_size=4)


def test_l2_trace_and_regularization_loss():
    model = two_layer_net(regularizer=keras.regularizers.L2(1e-3))
    total, by_variable, notes = l2_hessian_trace(model.trainable_variables)
    assert total == pytest.approx(2 * 1e-3 * 20)
    assert by_variable == {"hidden/kernel": pytest.approx(0.04)}
    assert notes == []
    kernel = model.get_layer("hidden").kernel.numpy()
    assert regularization_loss(model) == pytest.approx(1e-3 * float(np.sum(kernel ** 2)), rel=1e-5)


def test_l1l2_trace_notes_l1_part():
    model = two_layer_net(regularizer=keras.regularizers.L1L2(l1=1e-2, l2=1e-3))
    total, _, notes = l2_hessian_trace(model.trainable_variables)
    assert total == pytest.approx(0.04)
    assert len(notes) == 1
    assert "L1" in notes[0]


def test_unknown_regularizer_gives_no_trace():
    model = two_layer_net(regularizer=keras.regularizers.OrthogonalRegularizer(factor=0.01))
    total, _, notes = l2_hessian_trace(model.trainable_variables)
    assert total is None
    assert "hidden/kernel" in notes[0]


def test_no_regularization_is_zero():
    model = two_layer_net()
    assert regularization_loss(model) == 0.0
    assert l2_hessian_trace(model.trainable_variables) == (0.0, {}, [])
