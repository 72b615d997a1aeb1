"""The training loop: Keras ``fit`` with callbacks for the learning-rate schedule, progress and logging.

The loop fires events and the callbacks act on them, so MLflow code stays in ``biaslab.tracking``.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Sequence

import keras
import numpy as np


def compile_model(model: keras.Model, learning_rate: float) -> None:
    """Compile with Adam and categorical cross-entropy on one-hot labels, reporting accuracy."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )


def one_hot(y: np.ndarray, num_classes: int) -> np.ndarray:
    return keras.utils.to_categorical(y, num_classes).astype(np.float32)


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{seconds:02d}s"
    return f"{seconds}s"


class EpochProgress(keras.callbacks.Callback):
    """Print one line per epoch with the metrics, time elapsed and an estimate of time left."""

    def __init__(self, total_epochs: int, stream=None):
        super().__init__()
        self.total_epochs = total_epochs
        self.stream = stream or sys.stderr

    def on_train_begin(self, logs=None) -> None:
        self.started = time.monotonic()
        self.first_epoch: int | None = None

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        if self.first_epoch is None:
            self.first_epoch = epoch

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        elapsed = time.monotonic() - self.started
        done_here = epoch + 1 - (self.first_epoch or 0)
        left = elapsed / done_here * (self.total_epochs - epoch - 1)
        values = "  ".join(f"{key} {value:.4f}" for key, value in (logs or {}).items() if key != "learning_rate")
        print(
            f"epoch {epoch + 1}/{self.total_epochs}  {values}  elapsed {format_seconds(elapsed)}  left ~{format_seconds(left)}",
            file=self.stream,
            flush=True,
        )


def train(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    validation: tuple[np.ndarray, np.ndarray],
    num_classes: int,
    epochs: int,
    batch_size: int,
    learning_rate_at: Callable[[int], float],
    initial_epoch: int = 0,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    seed: int = 0,
    progress: bool = True,
) -> keras.callbacks.History:
    """Train ``model`` (compiled) on integer labels from ``initial_epoch`` up to ``epochs``."""
    keras.utils.set_random_seed(seed + initial_epoch)
    schedule = keras.callbacks.LearningRateScheduler(lambda epoch, _: learning_rate_at(epoch))
    all_callbacks = [schedule, *callbacks]
    if progress:
        all_callbacks.append(EpochProgress(epochs))
    return model.fit(
        x,
        one_hot(y, num_classes),
        validation_data=(validation[0], one_hot(validation[1], num_classes)),
        epochs=epochs,
        initial_epoch=initial_epoch,
        batch_size=batch_size,
        shuffle=True,
        callbacks=all_callbacks,
        verbose=0,
    )
