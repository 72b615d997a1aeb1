"""compute_measures and the built-in measures on small networks whose values are known in advance."""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from biaslab.errors import ConfigError  # noqa: E402
from biaslab.flatness import FlatnessResult, MeasureSpec, compute_measures  # noqa: E402
from biaslab.hookspecs import hookimpl  # noqa: E402
from biaslab.plugins import load_plugins  # noqa: E402


@pytest.fixture(scope="module")
def plugins():
    return load_plugins(entry_points=False)


def relu_net(seed=0, regularizer=None):
    """A 4-6-3 network: a ReLU layer and a softmax Dense head."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(6, activation="relu", kernel_regularizer=regularizer, name="hidden")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(hidden)
    return keras.Model(inputs, outputs)


def sample_data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4)).astype(np.float32), rng.integers(0, 3, size=n)


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


def rescale(model, alpha):
    """Multiply the ReLU layer (kernel and bias) by alpha and the head kernel by 1/alpha."""
    hidden = model.get_layer("hidden")
    hidden.kernel.assign(hidden.kernel.numpy() * alpha)
    hidden.bias.assign(hidden.bias.numpy() * alpha)
    head = model.get_layer("head")
    head.kernel.assign(head.kernel.numpy() / alpha)


# Hessian trace

def test_trace_split_sums_to_total(plugins):
    model = relu_net()
    x, y = sample_data()
    result = compute_measures(model, x, y, ["hessian_trace"], plugins, batch_size=16, progress=False,
                              options={"hessian_trace": {"samples": 30, "rtol": 0.0}})
    by_variable = result.details["measures"]["hessian_trace"]["by_variable"]
    assert set(by_variable) == {"hidden/kernel", "hidden/bias", "head/kernel", "head/bias"}
    assert sum(part["mean"] for part in by_variable.values()) == pytest.approx(result.metrics["hessian_trace"], rel=1e-9)
    assert by_variable["hidden/kernel"]["size"] == 24
    assert result.metrics["hessian_trace_samples"] == 30


def test_trace_agrees_with_exact_hessian(plugins):
    model = relu_net()
    x, y = sample_data()
    hessian = exact_hessian(model, x, y, model.trainable_variables)
    result = compute_measures(model, x, y, ["hessian_trace"], plugins, batch_size=16, progress=False,
                              options={"hessian_trace": {"samples": 300, "rtol": 0.0}})
    estimate = result.metrics["hessian_trace"]
    stderr = result.metrics["hessian_trace_stderr"]
    assert stderr > 0
    assert abs(estimate - np.trace(hessian)) <= 3 * stderr

    # the head kernel's share against the trace of its diagonal block (rows 30..47 of the Hessian)
    head = result.details["measures"]["hessian_trace"]["by_variable"]["head/kernel"]
    assert abs(head["mean"] - np.trace(hessian[30:48, 30:48])) <= 3 * head["stderr"]


def test_trace_reports_regularization_apart(plugins):
    model = relu_net(regularizer=keras.regularizers.L2(5e-3))
    x, y = sample_data()
    result = compute_measures(model, x, y, ["hessian_trace"], plugins, progress=False,
                              options={"hessian_trace": {"samples": 4}})
    assert result.metrics["hessian_trace_regularization"] == pytest.approx(2 * 5e-3 * 24)
    kernel = model.get_layer("hidden").kernel.numpy()
    assert result.metrics["regularization_loss"] == pytest.approx(5e-3 * float(np.sum(kernel ** 2)), rel=1e-5)

    # the data-loss trace is the same with or without the penalty
    plain = compute_measures(relu_net(), x, y, ["hessian_trace"], plugins, progress=False,
                             options={"hessian_trace": {"samples": 4}})
    assert result.metrics["hessian_trace"] == pytest.approx(plain.metrics["hessian_trace"], rel=1e-6)


# Hessian eigenvalues

def test_eigenvalues_match_exact_hessian(plugins):
    model = relu_net()
    x, y = sample_data()
    expected = np.sort(np.linalg.eigvalsh(exact_hessian(model, x, y, model.trainable_variables)))[::-1][:3]
    result = compute_measures(model, x, y, ["hessian_eigs"], plugins, progress=False)
    measured = [result.metrics[f"hessian_eig_{index}"] for index in (1, 2, 3)]
    assert measured == pytest.approx(expected, rel=0.01)
    assert result.metrics["hessian_eigs_hvps"] == result.details["measures"]["hessian_eigs"]["hvps"]
    assert result.metrics["hessian_eigs_hvps"] > 0


# relative flatness

def test_relative_flatness_matches_exact_hessian(plugins):
    model = relu_net()
    x, y = sample_data()
    head = model.get_layer("head")
    hessian = exact_hessian(model, x, y, [head.kernel])  # 18 x 18, index i * 3 + s
    kernel = head.kernel.numpy().astype(np.float64)
    block_traces = np.einsum("isit->st", hessian.reshape(6, 3, 6, 3))
    expected = float(np.sum((kernel.T @ kernel) * block_traces))

    result = compute_measures(model, x, y, ["relative_flatness"], plugins, batch_size=16, progress=False)
    assert result.metrics["relative_flatness"] == pytest.approx(expected, rel=1e-4)
    assert result.details["measures"]["relative_flatness"]["layer"] == "head"


def test_relative_flatness_invariant_to_rescaling(plugins):
    x, y = sample_data()
    names = ["relative_flatness", "hessian_eigs"]
    options = {"hessian_eigs": {"k": 1}}
    original = compute_measures(relu_net(), x, y, names, plugins, progress=False, options=options)

    model = relu_net()
    rescale(model, 4.0)
    np.testing.assert_allclose(model.predict(x, verbose=0), relu_net().predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    rescaled = compute_measures(model, x, y, names, plugins, progress=False, options=options)

    assert rescaled.metrics["relative_flatness"] == pytest.approx(original.metrics["relative_flatness"], rel=1e-4)
    change = abs(rescaled.metrics["hessian_eig_1"] / original.metrics["hessian_eig_1"] - 1.0)
    assert change > 0.1


def test_relative_flatness_needs_dense_head(plugins):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    logits = keras.layers.Dense(3, name="logits")(inputs)
    model = keras.Model(inputs, keras.layers.Softmax(name="softmax")(logits))
    x, y = sample_data()
    with pytest.raises(ConfigError, match="Softmax"):
        compute_measures(model, x, y, ["relative_flatness"], plugins, progress=False)


def test_relative_flatness_needs_softmax_head(plugins):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(inputs))
    x, y = sample_data()
    with pytest.raises(ConfigError, match="softmax"):
        compute_measures(model, x, y, ["relative_flatness"], plugins, progress=False)


# epsilon-sharpness

def test_eps_sharpness_first_order_for_small_epsilon(plugins):
    # away from a minimum the maximum over a tiny box is L(w) + sum |g_i| * h_i to first order
    model = relu_net()
    x, y = sample_data()
    epsilon = 1e-4
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, model(x, training=False)))
    gradients = tape.gradient(loss, [variable.value for variable in model.trainable_variables])
    first_order = sum(
        float(np.sum(np.abs(gradient.numpy()) * epsilon * (np.abs(variable.numpy()) + 1.0)))
        for gradient, variable in zip(gradients, model.trainable_variables)
    )
    expected = 100.0 * first_order / (1.0 + float(loss))

    result = compute_measures(model, x, y, ["eps_sharpness"], plugins, batch_size=16, progress=False,
                              options={"eps_sharpness": {"epsilon": epsilon}})
    assert result.metrics["eps_sharpness"] == pytest.approx(expected, rel=0.02)
    details = result.details["measures"]["eps_sharpness"]
    assert details["base_loss"] == pytest.approx(float(loss), rel=1e-5)
    assert details["gradient_evaluations"] == 10


def test_eps_sharpness_leaves_weights_unchanged(plugins):
    model = relu_net()
    x, y = sample_data()
    before = [variable.numpy().copy() for variable in model.weights]
    compute_measures(model, x, y, ["eps_sharpness"], plugins, progress=False,
                     options={"eps_sharpness": {"epsilon": 0.1, "random_start": True}})
    for variable, value in zip(model.weights, before):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_eps_sharpness_grows_with_epsilon(plugins):
    model = relu_net()
    x, y = sample_data()
    values = []
    for epsilon in (1e-3, 1e-2):
        result = compute_measures(model, x, y, ["eps_sharpness"], plugins, progress=False,
                                  options={"eps_sharpness": {"epsilon": epsilon}})
        values.append(result.metrics["eps_sharpness"])
    assert 0 < values[0] < values[1]


# landscape curvature

def test_landscape_curvature_copied(plugins):
    x, y = sample_data()
    result = compute_measures(relu_net(), x, y, ["landscape_curvature"], plugins, progress=False,
                              landscape_metrics={"landscape_1d_ce_curvature": 12.5, "landscape_1d_ce_min": 0.1})
    assert result.metrics["landscape_curvature"] == 12.5
    assert result.details["measures"]["landscape_curvature"]["hvps"] == 0


def test_landscape_curvature_without_landscape(plugins):
    x, y = sample_data()
    result = compute_measures(relu_net(), x, y, ["landscape_curvature"], plugins, progress=False)
    assert "landscape_curvature" not in result.metrics
    assert "no landscape was computed" in result.details["measures"]["landscape_curvature"]["notes"][0]


def test_landscape_curvature_missing_key_warns(plugins):
    x, y = sample_data()
    with pytest.warns(UserWarning, match="landscape_2d_curvature"):
        result = compute_measures(relu_net(), x, y, ["landscape_curvature"], plugins, progress=False,
                                  landscape_metrics={"landscape_2d_curvature": 3.0})
    assert "landscape_curvature" not in result.metrics


# the default set, settings, details and progress

def test_default_set_uses_quick_options(plugins):
    x, y = sample_data()
    result = compute_measures(relu_net(), x, y, None, plugins, batch_size=16, progress=False)
    assert isinstance(result, FlatnessResult)
    assert result.settings["flatness.hessian_eigs.k"] == "1"
    assert result.settings["flatness.hessian_trace.samples"] == "20"
    assert "hessian_eig_1" in result.metrics
    assert "hessian_eig_2" not in result.metrics
    for name in ("hessian_trace", "eps_sharpness", "relative_flatness", "regularization_loss"):
        assert name in result.metrics
    assert set(result.details["measures"]) == set(result.settings["flatness.measures"].split(","))


def test_settings_are_flat_strings(plugins):
    x, y = sample_data()
    result = compute_measures(relu_net(), x, y, ["eps_sharpness"], plugins, seed=3, batch_size=8,
                              progress=False, options={"eps_sharpness": {"steps": 4}})
    assert result.settings == {
        "flatness.measures": "eps_sharpness",
        "flatness.seed": "3",
        "flatness.batch_size": "8",
        "flatness.samples": "40",
        "flatness.eps_sharpness.epsilon": "0.001",
        "flatness.eps_sharpness.steps": "4",
        "flatness.eps_sharpness.step_fraction": "0.25",
        "flatness.eps_sharpness.random_start": "False",
    }


def test_details_are_json_serializable(plugins):
    x, y = sample_data()
    result = compute_measures(relu_net(), x, y, None, plugins, progress=False)
    decoded = json.loads(json.dumps(result.details, allow_nan=False))
    assert decoded["parameters"]["count"] == 4 * 6 + 6 + 6 * 3 + 3
    for entry in decoded["measures"].values():
        assert entry["seconds"] >= 0


def test_measures_are_seeded(plugins):
    x, y = sample_data()
    options = {"hessian_trace": {"samples": 5}}
    first = compute_measures(relu_net(), x, y, ["hessian_trace"], plugins, seed=11, progress=False, options=options)
    second = compute_measures(relu_net(), x, y, ["hessian_trace"], plugins, seed=11, progress=False, options=options)
    other = compute_measures(relu_net(), x, y, ["hessian_trace"], plugins, seed=12, progress=False, options=options)
    assert first.metrics["hessian_trace"] == second.metrics["hessian_trace"]
    assert first.metrics["hessian_trace"] != other.metrics["hessian_trace"]


def test_progress_lines_on_stderr(plugins, capsys):
    x, y = sample_data()
    compute_measures(relu_net(), x, y, ["hessian_trace"], plugins, progress=True,
                     options={"hessian_trace": {"samples": 3}})
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("hessian_trace: 1/3 HVPs")
    assert "s left" in lines[0]
    assert lines[-1].startswith("hessian_trace: finished after 3 HVPs")


def test_quiet_without_progress(plugins, capsys):
    x, y = sample_data()
    compute_measures(relu_net(), x, y, ["hessian_trace", "eps_sharpness"], plugins, progress=False,
                     options={"hessian_trace": {"samples": 3}})
    assert capsys.readouterr().err == ""


def test_frozen_and_unused_variables_noted(plugins):
    class SpareWeightDense(keras.layers.Layer):
        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], 3), initializer="glorot_uniform", name="kernel")
            self.spare = self.add_weight(shape=(7,), initializer="ones", name="spare")

        def call(self, inputs):
            return keras.ops.softmax(keras.ops.matmul(inputs, self.kernel))

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    frozen = keras.layers.Dense(5, activation="tanh", name="frozen")
    frozen.trainable = False
    model = keras.Model(inputs, SpareWeightDense(name="head")(frozen(inputs)))
    x, y = sample_data()
    result = compute_measures(model, x, y, ["hessian_eigs", "hessian_trace", "eps_sharpness"], plugins,
                              progress=False, options={"hessian_trace": {"samples": 4}})
    assert result.details["parameters"]["count"] == 15
    assert result.details["parameters"]["unused"] == ["head/spare"]
    assert "head/spare" in result.details["notes"][0]
    for name in ("hessian_eig_1", "hessian_trace", "eps_sharpness"):
        assert np.isfinite(result.metrics[name])


# bad input is rejected before any computation

class CallRecorder:
    """A third-party plugin with one measure that records every call."""

    def __init__(self):
        self.calls = 0

    @hookimpl
    def biaslab_register_measures(self, register):
        def count(context):
            self.calls += 1
            return {"recorded": float(context.options["value"])}

        register(MeasureSpec(name="recorder", description="counts calls", compute=count,
                             defaults={"value": 1.0}))


@pytest.mark.parametrize(
    ("measure", "options", "message"),
    [
        ("hessian_eigs", {"k": 0}, "k=0"),
        ("hessian_eigs", {"k": 1.5}, "k=1.5"),
        ("hessian_eigs", {"tol": -1.0}, "tol=-1.0"),
        ("hessian_trace", {"samples": 1}, "samples=1"),
        ("hessian_trace", {"rtol": -0.1}, "rtol=-0.1"),
        ("eps_sharpness", {"epsilon": 0.0}, "epsilon=0.0"),
        ("eps_sharpness", {"epsilon": -1e-3}, "epsilon=-0.001"),
        ("eps_sharpness", {"steps": 0}, "steps=0"),
        ("eps_sharpness", {"random_start": "yes"}, "random_start='yes'"),
        ("hessian_trace", {"sample": 10}, "sample"),
    ],
)
def test_bad_option_rejected_before_computing(measure, options, message):
    recorder = CallRecorder()
    plugins = load_plugins(extra=[("recorder", recorder)], entry_points=False)
    x, y = sample_data()
    with pytest.raises(ConfigError, match=message):
        compute_measures(relu_net(), x, y, ["recorder", measure], plugins, progress=False,
                         options={measure: options})
    assert recorder.calls == 0


def test_third_party_measure_runs():
    recorder = CallRecorder()
    plugins = load_plugins(extra=[("recorder", recorder)], entry_points=False)
    x, y = sample_data()
    result = compute_measures(relu_net(), x, y, ["recorder"], plugins, progress=False,
                              options={"recorder": {"value": 2.5}})
    assert result.metrics["recorded"] == 2.5
    assert result.settings["flatness.recorder.value"] == "2.5"
    assert recorder.calls == 1


def test_unknown_measure_lists_available(plugins):
    x, y = sample_data()
    with pytest.raises(ConfigError, match="hessian_trace") as error:
        compute_measures(relu_net(), x, y, ["hessian_max"], plugins, progress=False)
    assert "hessian_max" in str(error.value)


def test_options_for_unselected_measure_rejected(plugins):
    x, y = sample_data()
    with pytest.raises(ConfigError, match="hessian_eigs"):
        compute_measures(relu_net(), x, y, ["hessian_trace"], plugins, progress=False,
                         options={"hessian_eigs": {"k": 2}})


@pytest.mark.parametrize("batch_size", [0, -4, 2.5])
def test_bad_batch_size_rejected(plugins, batch_size):
    x, y = sample_data()
    with pytest.raises(ConfigError, match=f"batch_size={batch_size}"):
        compute_measures(relu_net(), x, y, ["hessian_trace"], plugins, batch_size=batch_size, progress=False)


def test_float_labels_rejected(plugins):
    x, y = sample_data()
    with pytest.raises(ConfigError, match="integer class labels"):
        compute_measures(relu_net(), x, y.astype(np.float32), ["hessian_trace"], plugins, progress=False)
