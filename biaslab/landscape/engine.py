"""The compiled evaluator behind every landscape point.

The weights theta, two directions d1 and d2 and the evaluation set are held as TensorFlow
tensors and variables. One call of the compiled step assigns theta + a*d1 + b*d2 to the
perturbed model variables and runs the forward pass in inference mode over the evaluation set,
batch by batch, returning three scalars:

- ``ce``: mean categorical cross-entropy of the softmax output, normalized and clipped to
  [epsilon, 1 - epsilon] as ``keras.losses.categorical_crossentropy`` does on probabilities.
  Weight regularization penalties are not included, unlike ``model.evaluate``. Inside a
  compiled function Keras computes the loss from the logits under a Softmax layer instead, which
  differs only where a probability falls below epsilon (1e-7).
- ``mse``: mean over samples and classes of (softmax output - one-hot label) ** 2, as
  ``keras.losses.MeanSquaredError`` averages it.
- ``acc``: fraction of samples whose arg-max output equals the label.

``a`` and ``b`` go in as tensors and directions are swapped by assignment, so the step is
traced once for all points and all directions of a probe.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from biaslab.errors import ConfigError
from biaslab.landscape.grid import PointMetrics
from biaslab.landscape.settings import DEFAULT_BATCH_SIZE, DEFAULT_JIT_COMPILE


class LandscapeEvaluator:
    """Evaluate a model at theta + a*d1 + b*d2 with one compiled step per point.

    ``variables`` maps the path of each variable to perturb to the model variable, and theta is
    their value when the evaluator is built. Variables left out are never written. Use the
    evaluator as a context manager, or call ``restore()``, to put theta back bit for bit.
    """

    def __init__(
        self,
        model: keras.Model,
        variables: dict[str, keras.Variable],
        x: np.ndarray,
        y: np.ndarray,
        batch_size: int = DEFAULT_BATCH_SIZE,
        jit_compile: bool = DEFAULT_JIT_COMPILE,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if len(x) == 0:
            raise ConfigError("the evaluation set is empty. Pass at least one sample.")
        self.model = model
        self.paths = list(variables)
        self._variables = [variables[path] for path in self.paths]
        self._theta = [tf.constant(variable.numpy()) for variable in self._variables]
        self._d1 = [tf.Variable(tf.zeros_like(theta), trainable=False) for theta in self._theta]
        self._d2 = [tf.Variable(tf.zeros_like(theta), trainable=False) for theta in self._theta]
        self.sample_count = len(x)
        self.class_count = int(model(np.asarray(x[:1]), training=False).shape[-1])
        self._batches = _split_batches(np.asarray(x), np.asarray(y), batch_size)
        self._step = tf.function(self._evaluate_point, jit_compile=jit_compile, reduce_retracing=False)

    def __enter__(self) -> "LandscapeEvaluator":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.restore()

    @property
    def trace_count(self) -> int:
        """Number of times the compiled step has been traced."""
        return self._step.experimental_get_tracing_count()

    def set_directions(self, d1: dict[str, np.ndarray], d2: dict[str, np.ndarray] | None = None) -> None:
        """Load the directions of the next points. A missing ``d2`` means zero, as for a 1D curve."""
        for index, path in enumerate(self.paths):
            self._d1[index].assign(d1[path])
            if d2 is None:
                self._d2[index].assign(tf.zeros_like(self._theta[index]))
            else:
                self._d2[index].assign(d2[path])

    def evaluate(self, a: float, b: float = 0.0) -> PointMetrics:
        """Set the weights to theta + a*d1 + b*d2 and return the metrics there. The weights stay set."""
        ce, mse, acc = self._step(tf.constant(a, tf.float32), tf.constant(b, tf.float32))
        return PointMetrics(float(ce), float(mse), float(acc))

    def restore(self) -> None:
        """Assign theta back to every perturbed variable."""
        for variable, theta in zip(self._variables, self._theta):
            variable.assign(theta)

    def _evaluate_point(self, a: tf.Tensor, b: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        for variable, theta, d1, d2 in zip(self._variables, self._theta, self._d1, self._d2):
            a_cast = tf.cast(a, theta.dtype)
            b_cast = tf.cast(b, theta.dtype)
            variable.assign(theta + a_cast * d1 + b_cast * d2)

        totals = tf.zeros([3], tf.float64)
        full_x, full_y, rest_x, rest_y = self._batches
        if full_x is not None:
            for index in tf.range(tf.shape(full_x)[0]):
                totals += self._batch_sums(full_x[index], full_y[index])
        if rest_x is not None:
            totals += self._batch_sums(rest_x, rest_y)

        count = tf.constant(self.sample_count, tf.float64)
        return totals[0] / count, totals[1] / (count * self.class_count), totals[2] / count

    def _batch_sums(self, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        """Return the sums over one batch of cross-entropy, squared error and correct predictions."""
        probabilities = tf.cast(self.model(x, training=False), tf.float32)

        # the same normalization and clipping as Keras' categorical_crossentropy on probabilities
        epsilon = keras.config.epsilon()
        normalized = probabilities / tf.reduce_sum(probabilities, axis=-1, keepdims=True)
        clipped = tf.clip_by_value(normalized, epsilon, 1.0 - epsilon)
        cross_entropy = -tf.math.log(tf.gather(clipped, y, axis=1, batch_dims=1))

        one_hot = tf.one_hot(y, self.class_count, dtype=tf.float32)
        squared_error = tf.reduce_sum(tf.square(probabilities - one_hot), axis=-1)
        correct = tf.cast(tf.equal(tf.argmax(probabilities, axis=-1, output_type=y.dtype), y), tf.float32)

        return tf.stack(
            [
                tf.reduce_sum(tf.cast(cross_entropy, tf.float64)),
                tf.reduce_sum(tf.cast(squared_error, tf.float64)),
                tf.reduce_sum(tf.cast(correct, tf.float64)),
            ]
        )


def _split_batches(x: np.ndarray, y: np.ndarray, batch_size: int) -> tuple:
    """Split the data into a stack of full batches and one shorter rest, so every shape is static."""
    full_count = len(x) // batch_size
    split = full_count * batch_size
    labels = y.astype(np.int64)
    full_x = full_y = rest_x = rest_y = None
    if full_count:
        full_x = tf.constant(x[:split].reshape((full_count, batch_size) + x.shape[1:]))
        full_y = tf.constant(labels[:split].reshape(full_count, batch_size))
    if split < len(x):
        rest_x = tf.constant(x[split:])
        rest_y = tf.constant(labels[split:])
    return full_x, full_y, rest_x, rest_y
