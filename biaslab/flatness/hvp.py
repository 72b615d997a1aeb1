"""Hessian-vector products of the data loss of a Keras classifier.

The data loss is the mean sparse categorical cross-entropy of the model's softmax output against
integer labels, evaluated in inference mode (``training=False``, so BatchNormalization uses its
moving statistics). Regularization terms in ``model.losses`` are left out, and
``biaslab.flatness.regularization`` reports them separately.

Every product is with respect to the measured parameters: the model's trainable variables,
de-duplicated by ``variable.path`` so that a kernel shared by two layers counts once, minus the
variables the loss does not depend on (their gradient is None). Vectors are flat float64 NumPy
arrays that concatenate the measured variables in order.

HVPs use forward-over-reverse by default: the directional derivative along v of the gradient,
with ``tf.autodiff.ForwardAccumulator`` around a ``tf.GradientTape``. Double backpropagation (the
gradient of <grad L, v> with nested tapes, ``method="double_backprop"``) gives the same product.
For ResNet-20 on 256 CIFAR-10 images on a 2-core CPU with TensorFlow 2.21, forward-over-reverse
was 2-8% faster per product in four runs of ``benchmarks/flatness_cost.py --compare-hvp``
(figures in BENCHMARKS.md). The first call, which traces, took 17-32 s for either method.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from biaslab.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class MeasuredVariable:
    """One variable of the measured parameter set and its slice of the flat vector."""

    path: str
    shape: tuple[int, ...]
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


def unique_trainable_variables(model: keras.Model) -> list[Any]:
    """Return the model's trainable variables in order, one entry per ``variable.path``.

    A shared variable appears once. Two different variable objects with one path raise
    ConfigError, because keeping one of them would drop the other from every measure.
    """
    by_path: dict[str, Any] = {}
    for variable in model.trainable_variables:
        seen = by_path.get(variable.path)
        if seen is None:
            by_path[variable.path] = variable
        elif seen is not variable:
            raise ConfigError(
                f"two different trainable variables share the path {variable.path!r}; "
                f"give their layers unique names so that each variable can be measured"
            )
    return list(by_path.values())


def data_loss(labels: tf.Tensor, probabilities: tf.Tensor) -> tf.Tensor:
    """Return the mean sparse categorical cross-entropy of softmax probabilities.

    Keras keeps the logits on the output of its softmax activation, and the Keras loss reads
    them, so the value and its derivatives are those of the logits and never hit the clipping
    of probabilities near 0 and 1.
    """
    per_sample = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
    return tf.reduce_mean(per_sample)


class HessianOperator:
    """Loss, gradient and Hessian-vector products of the data loss over an evaluation set.

    The evaluation set is split into batches of ``batch_size``. Every quantity is the
    batch-size-weighted average of the per-batch values, so the result does not depend on the
    batch size (up to float rounding). Weights are never modified: all steps evaluate the model
    with ``stateless_call`` at the current weights plus an optional flat offset ``delta``.

    Each step is one ``tf.function`` with a fixed input signature, so it is traced once.
    ``hvp_count`` and ``gradient_count`` count whole-set evaluations, and ``trace_counts`` counts
    the traces of each step. ``method`` is ``forward_over_reverse`` or ``double_backprop``.
    """

    METHODS = ("forward_over_reverse", "double_backprop")

    def __init__(self, model: keras.Model, x: Any, y: Any, batch_size: int,
                 method: str = "forward_over_reverse"):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if method not in self.METHODS:
            raise ConfigError(f"unknown HVP method {method!r}; choose one of: {', '.join(self.METHODS)}")
        self.method = method
        self.model = model
        self.batch_size = int(batch_size)
        self.x = tf.convert_to_tensor(np.asarray(x, dtype=np.float32))
        self.y = tf.convert_to_tensor(np.asarray(y).astype(np.int32).reshape(-1))
        if self.x.shape[0] != self.y.shape[0]:
            raise ConfigError(
                f"x has {self.x.shape[0]} samples but y has {self.y.shape[0]} labels; pass one label per sample"
            )
        if self.x.shape[0] == 0:
            raise ConfigError("the evaluation set is empty; pass at least one sample")
        self.n_samples = int(self.x.shape[0])

        self._trainable = list(model.trainable_variables)
        self._non_trainable = list(model.non_trainable_variables)
        unique = unique_trainable_variables(model)
        used, unused = self._split_by_gradient(unique)
        self.variables = used
        self.unused_paths = [variable.path for variable in unused]
        self.frozen_paths = [variable.path for variable in self._non_trainable]

        layout = []
        start = 0
        for variable in used:
            shape = tuple(int(d) for d in variable.shape)
            size = int(np.prod(shape, dtype=np.int64))
            layout.append(MeasuredVariable(variable.path, shape, start, start + size))
            start += size
        self.layout = layout
        self.dimension = start
        if self.dimension == 0:
            raise ConfigError(
                "the data loss depends on no trainable variable of the model; "
                "unfreeze at least one layer before measuring flatness"
            )
        self._slot_of_path = {variable.path: index for index, variable in enumerate(used)}

        self.hvp_count = 0
        self.gradient_count = 0
        self.trace_counts = {"loss": 0, "gradient": 0, "hvp": 0}
        self._zero_delta = tf.zeros([self.dimension], tf.float32)
        self._build_steps()

    # setup

    def _split_by_gradient(self, unique: list[Any]) -> tuple[list[Any], list[Any]]:
        """Split variables into those the loss depends on and those with a None gradient."""
        x_probe = self.x[:2]
        y_probe = self.y[:2]
        with tf.GradientTape() as tape:
            tape.watch([variable.value for variable in unique])
            probabilities = self.model(x_probe, training=False)
            check_probabilities(probabilities)
            loss = data_loss(y_probe, probabilities)
        gradients = tape.gradient(loss, [variable.value for variable in unique])
        used = [v for v, g in zip(unique, gradients) if g is not None]
        unused = [v for v, g in zip(unique, gradients) if g is None]
        return used, unused

    def _parameter_values(self, delta: tf.Tensor) -> list[tf.Tensor]:
        """Trainable values for ``stateless_call``: measured variables are offset by their slice of delta."""
        values = []
        for variable in self._trainable:
            slot = self._slot_of_path.get(variable.path)
            if slot is None:
                values.append(variable.value)
                continue
            part = self.layout[slot]
            offset = tf.reshape(delta[part.start:part.stop], part.shape)
            values.append(variable.value + tf.cast(offset, variable.dtype))
        return values

    def _batch_loss(self, delta: tf.Tensor, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        non_trainable = [variable.value for variable in self._non_trainable]
        probabilities, _ = self.model.stateless_call(
            self._parameter_values(delta), non_trainable, x, training=False
        )
        return data_loss(y, probabilities)

    def _build_steps(self) -> None:
        vector_spec = tf.TensorSpec([self.dimension], tf.float32)
        x_spec = tf.TensorSpec([None, *self.x.shape[1:]], tf.float32)
        y_spec = tf.TensorSpec([None], tf.int32)

        def loss_step(delta, x, y):
            self.trace_counts["loss"] += 1
            return self._batch_loss(delta, x, y)

        def gradient_step(delta, x, y):
            self.trace_counts["gradient"] += 1
            with tf.GradientTape() as tape:
                tape.watch(delta)
                loss = self._batch_loss(delta, x, y)
            gradient = tape.gradient(loss, delta, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return loss, gradient

        def hvp_step(delta, vector, x, y):
            self.trace_counts["hvp"] += 1
            with tf.GradientTape() as outer:
                outer.watch(delta)
                with tf.GradientTape() as inner:
                    inner.watch(delta)
                    loss = self._batch_loss(delta, x, y)
                gradient = inner.gradient(loss, delta, unconnected_gradients=tf.UnconnectedGradients.ZERO)
                projection = tf.reduce_sum(gradient * vector)
            return outer.gradient(projection, delta, unconnected_gradients=tf.UnconnectedGradients.ZERO)

        def forward_over_reverse_step(delta, vector, x, y):
            self.trace_counts["hvp"] += 1
            with tf.autodiff.ForwardAccumulator(primals=delta, tangents=vector) as accumulator:
                with tf.GradientTape() as tape:
                    tape.watch(delta)
                    loss = self._batch_loss(delta, x, y)
                gradient = tape.gradient(loss, delta, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return accumulator.jvp(gradient, unconnected_gradients=tf.UnconnectedGradients.ZERO)

        self._loss_step = tf.function(loss_step, input_signature=[vector_spec, x_spec, y_spec])
        self._gradient_step = tf.function(gradient_step, input_signature=[vector_spec, x_spec, y_spec])
        chosen = hvp_step if self.method == "double_backprop" else forward_over_reverse_step
        self._hvp_step = tf.function(chosen, input_signature=[vector_spec, vector_spec, x_spec, y_spec])

    # evaluation over the whole set

    def _batches(self):
        for start in range(0, self.n_samples, self.batch_size):
            stop = min(start + self.batch_size, self.n_samples)
            yield self.x[start:stop], self.y[start:stop], (stop - start) / self.n_samples

    def _delta(self, delta: np.ndarray | None) -> tf.Tensor:
        if delta is None:
            return self._zero_delta
        return tf.convert_to_tensor(np.asarray(delta, dtype=np.float32))

    def loss(self, delta: np.ndarray | None = None) -> float:
        """Return the data loss at the current weights plus ``delta``."""
        delta_tensor = self._delta(delta)
        total = 0.0
        for x, y, weight in self._batches():
            total += weight * float(self._loss_step(delta_tensor, x, y))
        return total

    def loss_and_gradient(self, delta: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """Return the data loss and its flat gradient at the current weights plus ``delta``."""
        delta_tensor = self._delta(delta)
        total = 0.0
        gradient = np.zeros(self.dimension)
        for x, y, weight in self._batches():
            loss, batch_gradient = self._gradient_step(delta_tensor, x, y)
            total += weight * float(loss)
            gradient += weight * batch_gradient.numpy()
        self.gradient_count += 1
        return total, gradient

    def hvp(self, vector: np.ndarray, delta: np.ndarray | None = None) -> np.ndarray:
        """Return the Hessian of the data loss times ``vector``, both flat over the measured parameters."""
        vector = np.asarray(vector)
        if vector.shape != (self.dimension,):
            raise ValueError(f"vector has shape {vector.shape}, expected ({self.dimension},)")
        delta_tensor = self._delta(delta)
        vector_tensor = tf.convert_to_tensor(vector.astype(np.float32))
        product = np.zeros(self.dimension)
        for x, y, weight in self._batches():
            product += weight * self._hvp_step(delta_tensor, vector_tensor, x, y).numpy()
        self.hvp_count += 1
        return product

    # flat vectors and variables

    def split(self, vector: np.ndarray) -> dict[str, np.ndarray]:
        """Split a flat vector into arrays shaped like the measured variables, keyed by path."""
        return {part.path: vector[part.start:part.stop].reshape(part.shape) for part in self.layout}

    def flat_weights(self) -> np.ndarray:
        """Return the current values of the measured variables as one flat float64 vector."""
        return np.concatenate([np.asarray(variable.numpy(), dtype=np.float64).ravel() for variable in self.variables])

    def describe(self) -> dict[str, Any]:
        """Describe the measured parameter set for the result details (JSON-serializable)."""
        return {
            "count": self.dimension,
            "variables": [{"path": part.path, "shape": list(part.shape), "size": part.size} for part in self.layout],
            "unused": list(self.unused_paths),
            "frozen": list(self.frozen_paths),
            "evaluation_samples": self.n_samples,
            "batch_size": self.batch_size,
        }


def check_probabilities(probabilities: tf.Tensor) -> None:
    """Raise ConfigError unless each output row is a probability distribution."""
    values = np.asarray(probabilities, dtype=np.float64)
    if values.ndim != 2:
        raise ConfigError(
            f"the model output has shape {tuple(values.shape)}; flatness measures need a classifier "
            f"whose output is (batch, classes) softmax probabilities"
        )
    sums = values.sum(axis=1)
    if values.min() < 0 or np.abs(sums - 1.0).max() > 1e-3:
        raise ConfigError(
            "the model output is not a probability distribution (rows must be non-negative and sum to 1); "
            "flatness measures need a model that ends in a softmax activation"
        )
