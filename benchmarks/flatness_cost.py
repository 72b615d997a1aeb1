"""Measure the cost of each flatness measure for ResNet-20 on 32x32x3 images.

Prints the seconds and the number of Hessian-vector products (HVPs) and gradient evaluations of
every measure, as computed by ``biaslab.flatness.compute_measures``, plus the seconds of one HVP
and one gradient after tracing. Images come from the CIFAR-10 sample in ``--data-dir`` when it
exists, otherwise from a seeded uniform generator. The cost of one HVP does not depend on the
pixel values. The number of Lanczos iterations depends on the weights, so a short training run
comes first.

    python benchmarks/flatness_cost.py                 # the default set, 5-8 minutes on 2 CPUs
    python benchmarks/flatness_cost.py --full          # every measure with its full defaults
    python benchmarks/flatness_cost.py --compare-hvp   # also time double-backpropagation HVPs

Other processes on the machine slow every figure, so the report includes the load average
before and after the run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

REPOSITORY = Path(__file__).resolve().parent.parent
FULL_SET = ["hessian_eigs", "hessian_trace", "eps_sharpness", "relative_flatness"]


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256, help="evaluation images (default 256)")
    parser.add_argument("--batch-size", type=int, default=256, help="evaluation batch size (default 256)")
    parser.add_argument("--train-epochs", type=int, default=1,
                        help="epochs of training before measuring, on the training split (default 1)")
    parser.add_argument("--data-dir", default="../shared/data/cifar10-sample",
                        help="CIFAR-10 folder in the official python layout, relative to the repository root "
                             "unless absolute (default: ../shared/data/cifar10-sample)")
    parser.add_argument("--full", action="store_true", help="run every measure with its full defaults")
    parser.add_argument("--compare-hvp", action="store_true",
                        help="time both HVP methods, forward-over-reverse and double backpropagation")
    parser.add_argument("--rounds", type=int, default=5,
                        help="timed calls of each primitive after the first; the median is reported (default 5)")
    parser.add_argument("--primitives-only", action="store_true",
                        help="time the gradient and the HVP only, without running the measures")
    parser.add_argument("--output", help="write the results as JSON to this file")
    return parser.parse_args()


def load_images(data_dir: str, samples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """Return (x_train, y_train, x_eval, y_eval, source), mean-image subtracted like the pipeline."""
    from biaslab.data import Preprocessor, load_cifar10

    folder = Path(data_dir) if Path(data_dir).is_absolute() else REPOSITORY / data_dir
    if folder.exists():
        dataset = load_cifar10(folder)
        preprocess = Preprocessor.fit("pixel", dataset.x_train)
        x_eval, y_eval = dataset.x_test[:samples], dataset.y_test[:samples]
        return preprocess(dataset.x_train), dataset.y_train, preprocess(x_eval), y_eval, f"CIFAR-10 sample in {data_dir}"
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.5, 0.5, size=(1000 + samples, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, size=1000 + samples)
    return x[:1000], y[:1000], x[1000:], y[1000:], "seeded uniform noise (no CIFAR-10 folder found)"


def seconds_of(step) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def time_primitives(model, x: np.ndarray, y: np.ndarray, batch_size: int, methods: list[str],
                    rounds: int = 5) -> dict[str, float]:
    """Time one gradient and one HVP per method, the first call (which traces) apart.

    The methods take turns within each round, so that load from other processes affects them
    alike, and the median over ``rounds`` is reported.
    """
    from biaslab.flatness.hvp import HessianOperator

    timings: dict[str, float] = {}
    gradient_operator = HessianOperator(model, x, y, batch_size)
    timings["parameters"] = gradient_operator.dimension
    timings["gradient_first_seconds"] = seconds_of(gradient_operator.loss_and_gradient)

    vector = np.random.default_rng(0).standard_normal(gradient_operator.dimension)
    operators = {method: HessianOperator(model, x, y, batch_size, method=method) for method in methods}
    for method, operator in operators.items():
        timings[f"hvp_{method}_first_seconds"] = seconds_of(lambda: operator.hvp(vector))

    samples: dict[str, list[float]] = {name: [] for name in ["gradient", *methods]}
    for _ in range(rounds):
        samples["gradient"].append(seconds_of(gradient_operator.loss_and_gradient))
        for method, operator in operators.items():
            samples[method].append(seconds_of(lambda: operator.hvp(vector)))
    timings["gradient_seconds"] = float(np.median(samples["gradient"]))
    for method in methods:
        timings[f"hvp_{method}_seconds"] = float(np.median(samples[method]))
    return timings


def describe_machine() -> str:
    model_name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
                break
    return f"{model_name}, {os.cpu_count()} logical CPUs"


def main() -> None:
    arguments = parse_arguments()

    import keras
    import tensorflow as tf

    from biaslab.flatness import compute_measures
    from biaslab.models import build_model
    from biaslab.plugins import load_plugins
    from biaslab.training import compile_model, one_hot

    x_train, y_train, x_eval, y_eval, source = load_images(arguments.data_dir, arguments.samples)
    model = build_model("resnet20", (32, 32, 3), 10, seed=0)
    if arguments.train_epochs > 0:
        compile_model(model, 1e-3)
        started = time.perf_counter()
        model.fit(x_train, one_hot(y_train, 10), batch_size=128, epochs=arguments.train_epochs, verbose=0)
        print(f"trained {arguments.train_epochs} epoch(s) in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    keras.utils.set_random_seed(0)

    load_before = os.getloadavg()
    from biaslab.flatness.hvp import HessianOperator

    # the first method is the default that compute_measures uses
    methods = list(HessianOperator.METHODS) if arguments.compare_hvp else [HessianOperator.METHODS[0]]
    primitives = time_primitives(model, x_eval, y_eval, arguments.batch_size, methods, arguments.rounds)
    measures: dict = {}
    metrics: dict = {}
    total_seconds = 0.0
    if not arguments.primitives_only:
        names = FULL_SET if arguments.full else None
        started = time.perf_counter()
        result = compute_measures(model, x_eval, y_eval, names, load_plugins(entry_points=False),
                                  seed=0, batch_size=arguments.batch_size, progress=True)
        total_seconds = time.perf_counter() - started
        metrics = result.metrics
        for name, entry in result.details["measures"].items():
            measures[name] = {key: entry[key] for key in ("seconds", "hvps", "gradient_evaluations", "options")}

    report = {
        "command": " ".join(["python", "benchmarks/flatness_cost.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": describe_machine(),
        "tensorflow": tf.__version__,
        "load_average_1min": {"before": load_before[0], "after": os.getloadavg()[0]},
        "data": source,
        "samples": int(len(y_eval)),
        "batch_size": arguments.batch_size,
        "train_epochs": arguments.train_epochs,
        "primitives": primitives,
        "total_seconds": total_seconds,
        "measures": measures,
        "metrics": metrics,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if arguments.output:
        Path(arguments.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
