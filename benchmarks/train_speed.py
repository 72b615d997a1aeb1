"""Measure biaslab's training loop against a plain ``model.fit`` on the same model and data.

Both train ResNet-20 from the same initial weights for the same epochs, batch size and data. The
biaslab loop adds the learning-rate schedule, per-epoch progress lines, per-epoch MLflow metrics and
a ``.keras`` checkpoint logged every epoch (a SQLite store in a temporary folder). Their epochs
alternate; the first epoch of each is a warm-up that includes tracing and is not timed.

    python benchmarks/train_speed.py                      # CIFAR-10 sample, 32x32x3
    python benchmarks/train_speed.py --data digits        # 8x8x1

Writes JSON with ``train_over_fit`` (samples per second of biaslab's loop over plain fit).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import mlflow  # noqa: E402

from biaslab import tracking  # noqa: E402
from biaslab.data import Preprocessor, load_cifar10, load_digits  # noqa: E402
from biaslab.models import build_model  # noqa: E402
from biaslab.training import compile_model, one_hot, train  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
CIFAR_SAMPLE = REPO_ROOT.parent / "shared" / "data" / "cifar10-sample"


class EpochTimer(keras.callbacks.Callback):
    """Record the seconds of every epoch of every fit call it is passed to."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("cifar", "digits"), default="cifar")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per loop, the first one untimed")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--output", default="train_speed.json")
    args = parser.parse_args()

    dataset = load_cifar10(CIFAR_SAMPLE) if args.data == "cifar" else load_digits()
    preprocess = Preprocessor.fit("pixel", dataset.x_train)
    x, y = preprocess(dataset.x_train), dataset.y_train
    x_test, y_test = preprocess(dataset.x_test), dataset.y_test
    samples = len(y)

    # Epochs of the two loops alternate, so that a change in machine load hits both alike.
    fit_model = build_model("resnet20", dataset.input_shape, dataset.num_classes, seed=0)
    compile_model(fit_model, 1e-3)
    loop_model = build_model("resnet20", dataset.input_shape, dataset.num_classes, seed=0)
    compile_model(loop_model, 1e-3)
    fit_timer, loop_timer = EpochTimer(), EpochTimer()
    with tempfile.TemporaryDirectory() as folder:
        mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
        checkpoints = Path(folder) / "checkpoints"
        checkpoints.mkdir()
        with mlflow.start_run():
            logger = tracking.MlflowEpochLogger(checkpoints, lambda epoch: 1e-3)
            for epoch in range(args.epochs):
                # plain model.fit: the bound for any loop built on it
                fit_model.fit(x, one_hot(y, 10), validation_data=(x_test, one_hot(y_test, 10)),
                              initial_epoch=epoch, epochs=epoch + 1, batch_size=args.batch_size, verbose=0,
                              callbacks=[fit_timer])
                # biaslab's loop with its callbacks, logging into a throwaway MLflow store
                train(loop_model, x, y, (x_test, y_test), 10, epoch + 1, args.batch_size, lambda e: 1e-3,
                      initial_epoch=epoch, callbacks=[logger, loop_timer], progress=False)

    fit_seconds = sum(fit_timer.seconds[1:])
    loop_seconds = sum(loop_timer.seconds[1:])
    timed_epochs = args.epochs - 1
    result = {
        "data": args.data,
        "samples": samples,
        "timed_epochs": timed_epochs,
        "batch_size": args.batch_size,
        "fit_samples_per_second": samples * timed_epochs / fit_seconds,
        "loop_samples_per_second": samples * timed_epochs / loop_seconds,
        "fit_epoch_seconds": fit_timer.seconds,
        "loop_epoch_seconds": loop_timer.seconds,
        "train_over_fit": fit_seconds / loop_seconds,
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "date": time.strftime("%Y-%m-%d"),
    }
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(f"plain fit {result['fit_samples_per_second']:.0f} samples/s, biaslab loop "
          f"{result['loop_samples_per_second']:.0f} samples/s, train_over_fit {result['train_over_fit']:.3f}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
