"""Measure grid points per second of the landscape engine against a bound and the naive Keras loop.

For each model, in one process and on the same weights, data and batch size:

1. bound: a compiled forward pass over the evaluation set with no weight change and no metrics;
2. engine: ``LandscapeEvaluator.evaluate(a, b)``, which assigns theta + a*d1 + b*d2 and computes
   cross-entropy, MSE and accuracy;
3. naive: ``model.set_weights`` from NumPy arrays, then ``model.evaluate``.

The three are timed in interleaved rounds after one warm-up call each, and the median seconds per
point gives the points per second. Before the timing, a 21 x 21 grid runs through the engine to
record memory growth. The report gives the growth of the peak RSS (``ru_maxrss``) from the end of
the first row to the end of the grid, and the slope of the current RSS over the rows.
With ``--rss-samples`` below the evaluation set size, that grid uses the first images only, so it
finishes in a few minutes on a CPU.

    python benchmarks/landscape_speed.py                      # ResNet-20 on CIFAR and on digits
    python benchmarks/landscape_speed.py --sweep              # also batch size x XLA for the engine
    python benchmarks/landscape_speed.py --output landscape_speed.json

Other processes on the machine slow every figure, so the report includes the load average
before and after each model.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000, help="CIFAR evaluation images per point (default 2000)")
    parser.add_argument("--rounds", type=int, default=9, help="timed points per method (default 9)")
    parser.add_argument("--rss-grid", type=int, default=21, help="side of the grid for the memory check (default 21)")
    parser.add_argument("--rss-samples", type=int, default=200,
                        help="CIFAR images per point in the memory check grid (default 200)")
    parser.add_argument("--batch-size", type=int, default=None, help="batch size (default: the engine default)")
    parser.add_argument("--models", nargs="*", default=["resnet20_cifar", "resnet20_digits"],
                        choices=["resnet20_cifar", "resnet20_digits"], help="models to measure (none: sweep only)")
    parser.add_argument("--sweep", action="store_true",
                        help="first time the engine for each batch size with and without XLA")
    parser.add_argument("--sweep-batch-sizes", type=int, nargs="+", default=[100, 250, 500, 1000, 2000],
                        help="batch sizes of the sweep (default 100 250 500 1000 2000)")
    parser.add_argument("--sweep-models", nargs="+", default=["resnet20_cifar", "resnet20_digits"],
                        choices=["resnet20_cifar", "resnet20_digits"], help="models of the sweep (default both)")
    parser.add_argument("--data-dir", default="../shared/data/cifar10-sample",
                        help="CIFAR-10 folder in the official python layout, relative to the repository root "
                             "unless absolute (default: ../shared/data/cifar10-sample)")
    parser.add_argument("--output", help="write the results as JSON to this file")
    return parser.parse_args()


def load_cifar_images(data_dir: str, samples: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Return preprocessed CIFAR images and labels, or seeded noise when the folder is missing."""
    from biaslab.data import Preprocessor, load_cifar10

    folder = Path(data_dir) if Path(data_dir).is_absolute() else REPOSITORY / data_dir
    if folder.exists():
        dataset = load_cifar10(folder)
        preprocess = Preprocessor.fit("pixel", dataset.x_train)
        images = np.concatenate([dataset.x_train, dataset.x_test])[:samples]
        labels = np.concatenate([dataset.y_train, dataset.y_test])[:samples]
        return preprocess(images), labels, f"CIFAR-10 sample in {data_dir}"
    rng = np.random.default_rng(0)
    images = rng.uniform(-0.5, 0.5, size=(samples, 32, 32, 3)).astype(np.float32)
    return images, rng.integers(0, 10, size=samples), "seeded uniform noise (no CIFAR-10 folder found)"


def load_digit_images() -> tuple[np.ndarray, np.ndarray, str]:
    from biaslab.data import load_digits

    dataset = load_digits()
    images = np.concatenate([dataset.x_train, dataset.x_test])
    labels = np.concatenate([dataset.y_train, dataset.y_test])
    return images - images.mean(axis=0), labels, "scikit-learn digits, all 1,797 images"


def filter_directions(model, seed: int) -> tuple[dict, dict]:
    from biaslab.landscape.directions import STREAM_2D, direction_rng, filter_normalized_direction
    from biaslab.landscape.variables import classify_variables, collect_variables

    variables = collect_variables(model)
    weights = {path: variable.numpy() for path, variable in variables.items()}
    kinds = classify_variables(model, variables)
    rng = direction_rng(seed, STREAM_2D)
    return filter_normalized_direction(weights, kinds, rng), filter_normalized_direction(weights, kinds, rng)


def make_bound(model, x: np.ndarray, batch_size: int, jit_compile: bool):
    """Return a compiled forward pass over the same batches as the engine, with no weight change."""
    import tensorflow as tf

    from biaslab.landscape.engine import _split_batches

    # the engine's own split, so both run the same batch shapes
    full_x, _, rest_x, _ = _split_batches(x, np.zeros(len(x), dtype=np.int64), batch_size)

    @tf.function(jit_compile=jit_compile)
    def forward():
        total = tf.zeros([], tf.float32)
        if full_x is not None:
            for index in tf.range(tf.shape(full_x)[0]):
                total += tf.reduce_sum(model(full_x[index], training=False))
        if rest_x is not None:
            total += tf.reduce_sum(model(rest_x, training=False))
        return total

    return lambda a, b: float(forward())


def make_naive(model, variables: dict, x: np.ndarray, y: np.ndarray, d1: dict, d2: dict, batch_size: int):
    """Return the loop of ``set_weights`` from NumPy and ``evaluate`` that the engine replaces."""
    import keras

    model.compile(loss="categorical_crossentropy", metrics=["accuracy", "mse"])
    one_hot = keras.utils.to_categorical(y, model.output_shape[-1])
    theta = [weight.numpy() for weight in model.weights]
    steps = [
        (d1[weight.path], d2[weight.path]) if weight.path in variables else None for weight in model.weights
    ]

    def point(a: float, b: float) -> float:
        arrays = []
        for value, step in zip(theta, steps):
            if step is None:
                arrays.append(value)
            else:
                arrays.append(value + np.float32(a) * step[0] + np.float32(b) * step[1])
        model.set_weights(arrays)
        return model.evaluate(x, one_hot, batch_size=batch_size, verbose=0)

    def restore() -> None:
        model.set_weights(theta)

    return point, restore


def rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def peak_rss_bytes() -> int:
    # ru_maxrss is in kilobytes on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_over_grid(evaluator, side: int) -> dict:
    """Run a side x side grid through the engine and return the memory growth over it.

    The first row warms up the allocator, so the growth is taken from the end of the first row to
    the end of the grid. The growth from the first point and the RSS after each row are recorded
    too, and the slope of RSS over the later rows separates a leak from allocator noise.
    """
    axis = np.linspace(-1.0, 1.0, side)
    evaluator.evaluate(0.0, 0.0)
    peak_first_point = peak_rss_bytes()
    started = time.perf_counter()
    rows_mb = []
    peak_first_row = None
    for row, a in enumerate(axis):
        for b in axis:
            evaluator.evaluate(float(a), float(b))
        rows_mb.append(rss_bytes() / 2**20)
        if row == 0:
            peak_first_row = peak_rss_bytes()
    seconds = time.perf_counter() - started
    peak_after = peak_rss_bytes()
    later_rows = np.arange(1, side)
    slope = float(np.polyfit(later_rows * side, rows_mb[1:], 1)[0]) * 100 if side > 2 else float("nan")
    return {
        "grid": f"{side}x{side}",
        "points": side * side,
        "seconds": seconds,
        "peak_rss_after_first_row_mb": peak_first_row / 2**20,
        "peak_rss_after_grid_mb": peak_after / 2**20,
        "peak_rss_growth": (peak_after - peak_first_row) / peak_first_row,
        "peak_rss_growth_from_first_point": (peak_after - peak_first_point) / peak_first_point,
        "rss_after_each_row_mb": rows_mb,
        "rss_slope_mb_per_100_points": slope,
        "traces": evaluator.trace_count,
    }


def time_interleaved(methods: dict, rounds: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Call each method once per round at a new point and return the wall and CPU seconds of every call.

    The CPU seconds of this process (all threads) are less disturbed than wall time when other
    processes share the cores, so the report gives ratios of both.
    """
    wall = {name: [] for name in methods}
    cpu = {name: [] for name in methods}
    for method in methods.values():
        method(0.0, 0.0)
    names = list(methods)
    for round_index in range(rounds):
        a, b = 0.1 + 0.05 * round_index, -0.2 + 0.03 * round_index

        # rotate the order, so that no method always runs right after the same other one
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            methods[name](a, b)
            wall[name].append(time.perf_counter() - wall_start)
            cpu[name].append(time.process_time() - cpu_start)
    return wall, cpu


def measure_model(name: str, arguments: argparse.Namespace, batch_size: int, jit_compile: bool) -> dict:
    from biaslab.landscape.engine import LandscapeEvaluator
    from biaslab.landscape.variables import collect_variables
    from biaslab.models import build_model

    load_before = os.getloadavg()
    if name == "resnet20_cifar":
        x, y, source = load_cifar_images(arguments.data_dir, max(arguments.samples, arguments.rss_samples))
        x, y = x[: arguments.samples], y[: arguments.samples]
        rss_x, rss_y = x[: arguments.rss_samples], y[: arguments.rss_samples]
    else:
        x, y, source = load_digit_images()
        rss_x, rss_y = x, y
    model = build_model("resnet20", tuple(x.shape[1:]), 10, seed=0)
    variables = collect_variables(model)
    d1, d2 = filter_directions(model, seed=0)
    parameters = int(sum(np.prod(weight.shape) for weight in model.weights))
    print(f"{name}: {parameters} parameters, {len(x)} images per point ({source}), batch {batch_size}, "
          f"XLA {jit_compile}", flush=True)

    # memory first, so the peak is not already raised by the naive loop
    with LandscapeEvaluator(model, variables, rss_x, rss_y, batch_size, jit_compile) as evaluator:
        evaluator.set_directions(d1, d2)
        memory = memory_over_grid(evaluator, arguments.rss_grid)
    memory["images_per_point"] = len(rss_x)
    print(f"  memory over {memory['grid']} grid ({len(rss_x)} images per point): peak RSS "
          f"{memory['peak_rss_after_first_row_mb']:.0f} MB after the first row, "
          f"{memory['peak_rss_after_grid_mb']:.0f} MB after the grid ({100 * memory['peak_rss_growth']:+.2f}%, "
          f"{100 * memory['peak_rss_growth_from_first_point']:+.2f}% from the first point), "
          f"RSS slope {memory['rss_slope_mb_per_100_points']:+.2f} MB per 100 points", flush=True)

    evaluator = LandscapeEvaluator(model, variables, x, y, batch_size, jit_compile)
    evaluator.set_directions(d1, d2)
    naive_point, naive_restore = make_naive(model, variables, x, y, d1, d2, batch_size)
    methods = {
        "bound": make_bound(model, x, batch_size, jit_compile),
        "engine": evaluator.evaluate,
        "naive": naive_point,
    }
    try:
        seconds, cpu_seconds = time_interleaved(methods, arguments.rounds)
    finally:
        evaluator.restore()
        naive_restore()

    rates = {method: 1.0 / statistics.median(values) for method, values in seconds.items()}
    best_rates = {method: 1.0 / min(values) for method, values in seconds.items()}
    cpu_rates = {method: 1.0 / statistics.median(values) for method, values in cpu_seconds.items()}
    result = {
        "parameters": parameters,
        "images_per_point": len(x),
        "data": source,
        "batch_size": batch_size,
        "jit_compile": jit_compile,
        "seconds_per_point": seconds,
        "points_per_second": rates,
        "engine_over_bound": rates["engine"] / rates["bound"],
        "engine_over_naive": rates["engine"] / rates["naive"],
        "fastest_points_per_second": best_rates,
        "fastest_engine_over_bound": best_rates["engine"] / best_rates["bound"],
        "fastest_engine_over_naive": best_rates["engine"] / best_rates["naive"],
        "cpu_seconds_per_point": cpu_seconds,
        "points_per_cpu_second": cpu_rates,
        "cpu_engine_over_bound": cpu_rates["engine"] / cpu_rates["bound"],
        "cpu_engine_over_naive": cpu_rates["engine"] / cpu_rates["naive"],
        "engine_traces": evaluator.trace_count,
        "memory": memory,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }
    print(f"  points per second: bound {rates['bound']:.3f}, engine {rates['engine']:.3f}, "
          f"naive {rates['naive']:.3f}", flush=True)
    print(f"  engine/bound {result['engine_over_bound']:.3f}, engine/naive {result['engine_over_naive']:.3f} "
          f"(fastest calls: {result['fastest_engine_over_bound']:.3f}, {result['fastest_engine_over_naive']:.3f}; "
          f"CPU time: {result['cpu_engine_over_bound']:.3f}, {result['cpu_engine_over_naive']:.3f}), "
          f"engine traces {result['engine_traces']}", flush=True)
    return result


def sweep_engine(name: str, arguments: argparse.Namespace) -> list[dict]:
    """Time the engine on one model for each batch size with and without XLA, interleaved."""
    from biaslab.landscape.engine import LandscapeEvaluator
    from biaslab.landscape.variables import collect_variables
    from biaslab.models import build_model

    if name == "resnet20_cifar":
        x, y, _ = load_cifar_images(arguments.data_dir, arguments.samples)
    else:
        x, y, _ = load_digit_images()
    model = build_model("resnet20", tuple(x.shape[1:]), 10, seed=0)
    variables = collect_variables(model)
    d1, d2 = filter_directions(model, seed=0)
    methods = {}
    evaluators = []
    for jit_compile in (False, True):
        for batch_size in arguments.sweep_batch_sizes:
            evaluator = LandscapeEvaluator(model, variables, x, y, batch_size, jit_compile)
            evaluator.set_directions(d1, d2)
            evaluators.append(evaluator)
            methods[(batch_size, jit_compile)] = evaluator.evaluate
    try:
        seconds, _ = time_interleaved(methods, arguments.rounds)
    finally:
        evaluators[0].restore()

    rows = []
    for (batch_size, jit_compile), values in seconds.items():
        row = {"batch_size": batch_size, "jit_compile": jit_compile, "median_seconds": statistics.median(values),
               "min_seconds": min(values), "seconds": values}
        rows.append(row)
        print(f"  sweep {name}: batch {batch_size:5d}, XLA {str(jit_compile):5s}: median "
              f"{row['median_seconds']:.3f} s, fastest {row['min_seconds']:.3f} s per point", flush=True)
    return rows


def machine() -> dict:
    model_name = platform.processor()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model_name = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    import tensorflow as tf

    return {"cpu": model_name, "cores": os.cpu_count(), "tensorflow": tf.__version__, "python": platform.python_version()}


def main() -> None:
    arguments = parse_arguments()
    from biaslab.landscape.settings import DEFAULT_BATCH_SIZE, DEFAULT_JIT_COMPILE

    batch_size = arguments.batch_size or DEFAULT_BATCH_SIZE
    report = {
        "date": datetime.date.today().isoformat(),
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "machine": machine(),
        "models": {},
    }
    if arguments.sweep:
        report["sweep"] = {name: sweep_engine(name, arguments) for name in arguments.sweep_models}
    for name in arguments.models:
        report["models"][name] = measure_model(name, arguments, batch_size, DEFAULT_JIT_COMPILE)

    # the headline keys describe ResNet-20 on CIFAR when it was measured
    if report["models"]:
        headline = report["models"].get("resnet20_cifar") or next(iter(report["models"].values()))
        report["engine_over_bound"] = headline["engine_over_bound"]
        report["engine_over_naive"] = headline["engine_over_naive"]
        report["points_per_second"] = headline["points_per_second"]
        report["engine_traces"] = headline["engine_traces"]
        report["peak_rss_growth"] = headline["memory"]["peak_rss_growth"]

    if arguments.output:
        Path(arguments.output).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {arguments.output}")


if __name__ == "__main__":
    main()
