"""Relative flatness (Petzka et al., "Relative Flatness and Generalization", NeurIPS 2021).

For the final Dense layer with kernel W of shape (m features, d outputs), let w_s = W[:, s] be
the incoming weights of output neuron s and H_{s,s'} the m x m block of the Hessian of the data
loss with respect to w_s and w_s'. Then

    kappa = sum over s, s' of <w_s, w_s'> * Tr(H_{s,s'})

Because the logits z = phi(x) W + b are linear in W, the Hessian block of one sample is
phi_i phi_j * A_{s,s'} with A the Hessian of that sample's loss with respect to z, so
Tr(H_{s,s'}) = mean over samples of |phi(x)|^2 * A_{s,s'}. This is exact and needs one forward
pass to the features plus a d x d Hessian per sample, not HVPs over the whole network.
Rescaling phi by alpha (a ReLU layer times alpha) and W by 1/alpha leaves kappa unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from biaslab.errors import ConfigError
from biaslab.flatness.hvp import check_probabilities, data_loss
from biaslab.flatness.progress import Progress


@dataclasses.dataclass(frozen=True)
class RelativeFlatness:
    """Relative flatness and the layer it was computed on."""

    value: float
    layer: str
    features: int
    outputs: int


def _final_dense(model: keras.Model) -> keras.layers.Dense:
    layer = model.layers[-1] if model.layers else None
    if not isinstance(layer, keras.layers.Dense):
        found = type(layer).__name__ if layer is not None else "no layer"
        raise ConfigError(
            f"relative_flatness needs a model whose last layer is a Dense classifier, but the last layer is "
            f"{found}; drop relative_flatness from the measures for this model"
        )
    return layer


def _feature_model(model: keras.Model, layer: keras.layers.Dense) -> keras.Model:
    try:
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        return keras.Model(inputs, layer.input)
    except (AttributeError, ValueError, TypeError) as error:
        raise ConfigError(
            f"relative_flatness could not read the input of layer {layer.name!r} ({error}); it needs a "
            f"functional or Sequential model built on a known input shape"
        ) from error


def relative_flatness(model: keras.Model, x: Any, y: Any, batch_size: int,
                      progress: Progress | None = None) -> RelativeFlatness:
    """Compute kappa for the final Dense layer of ``model`` over the evaluation set (x, y).

    Raises ConfigError when the last layer is not Dense, when its output is not softmax
    probabilities, or when the model's output is not that layer's output (the model would then
    not be features times W followed by the layer's activation).
    """
    layer = _final_dense(model)
    features_of = _feature_model(model, layer)
    kernel = tf.convert_to_tensor(layer.kernel.value)
    bias = tf.convert_to_tensor(layer.bias.value) if layer.use_bias else None
    gram = tf.cast(tf.matmul(kernel, kernel, transpose_a=True), tf.float64)

    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y).astype(np.int32).reshape(-1)
    n_samples = x.shape[0]
    total = 0.0
    for start in range(0, n_samples, batch_size):
        x_batch = x[start:start + batch_size]
        y_batch = y[start:start + batch_size]
        features = features_of(x_batch, training=False)

        with tf.GradientTape() as outer:
            logits = tf.matmul(features, kernel)
            if bias is not None:
                logits = logits + bias
            outer.watch(logits)
            with tf.GradientTape() as inner:
                inner.watch(logits)
                probabilities = layer.activation(logits)
                # a sum of per-sample losses, so the gradient row of a sample is that sample's alone
                loss_sum = data_loss(y_batch, probabilities) * tf.cast(tf.shape(logits)[0], tf.float32)
            logit_gradients = inner.gradient(loss_sum, logits)
        logit_hessians = outer.batch_jacobian(logit_gradients, logits)

        if start == 0:
            check_probabilities(probabilities)
            _check_reconstruction(model, layer, x_batch, probabilities)
        squared_norms = tf.reduce_sum(tf.cast(features, tf.float64) ** 2, axis=1)
        weighted = tf.einsum("nst,st->n", tf.cast(logit_hessians, tf.float64), gram)
        total += float(tf.reduce_sum(squared_norms * weighted))
        if progress is not None:
            progress.update(min(start + batch_size, n_samples))

    return RelativeFlatness(
        value=total / n_samples,
        layer=layer.name,
        features=int(kernel.shape[0]),
        outputs=int(kernel.shape[1]),
    )


def _check_reconstruction(model: keras.Model, layer: keras.layers.Dense, x: np.ndarray,
                          probabilities: tf.Tensor) -> None:
    expected = np.asarray(model(x, training=False))
    if not np.allclose(expected, np.asarray(probabilities), rtol=1e-4, atol=1e-5):
        raise ConfigError(
            f"the model output is not the output of its last layer {layer.name!r} applied to that layer's "
            f"input, so relative_flatness cannot isolate the final Dense layer of this model"
        )
