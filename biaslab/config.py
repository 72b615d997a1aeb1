"""The run configuration: presets, overrides, validation, and the flat params logged to MLflow.

``build_config`` is the one place where user input becomes a ``RunConfig``. Everything is
checked here, before data is loaded or a model is built, so bad input fails in seconds.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from biaslab.biases import BiasSpec, parse_pct, resolve_options
from biaslab.data import CIFAR10_CLASSES, DATASETS, DEMEAN_MODES, DIGITS_CLASSES, resolve_class
from biaslab.errors import ConfigError
from biaslab.models import MODELS
from biaslab.plugins import Plugins

PRESETS: dict[str, dict[str, Any]] = {
    # Adam, batch 128, 200 epochs, learning rate 1e-3 times 0.1, 0.01, 0.001 and 0.0005 after
    # epochs 80, 120, 160 and 180: the recipe of the Keras CIFAR-10 ResNet example that the
    # original biased-training study used.
    "paper": {
        "dataset": "cifar10",
        "epochs": 200,
        "batch_size": 128,
        "learning_rate": 1e-3,
        "lr_boundaries": (80, 120, 160, 180),
        "lr_factors": (0.1, 0.01, 0.001, 0.0005),
        "landscape_n_directions": 20,
        "landscape_points": 51,
        "landscape_candidates": 50,
        "landscape_resolution": 51,
        "landscape_samples": 0,
    },
    # The same recipe scaled down tenfold in epochs, with a coarse landscape, so that a run on
    # the bundled digits data finishes in about a minute on a laptop CPU.
    "quick": {
        "dataset": "digits",
        "epochs": 20,
        "batch_size": 128,
        "learning_rate": 1e-3,
        "lr_boundaries": (8, 12, 16, 18),
        "lr_factors": (0.1, 0.01, 0.001, 0.0005),
        "landscape_n_directions": 5,
        "landscape_points": 21,
        "landscape_candidates": 10,
        "landscape_resolution": 11,
        "landscape_samples": 500,
    },
}
SPLITS = ("test", "train")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One validated configuration of a run; ``params()`` is exactly what MLflow records."""

    model: str
    dataset: str
    data_dir: str
    bias: str
    cls: str
    pct: float
    bias_options: tuple[tuple[str, Any], ...]
    seed: int
    preset: str
    demean: str
    epochs: int
    batch_size: int
    learning_rate: float
    lr_boundaries: tuple[int, ...]
    lr_factors: tuple[float, ...]
    landscape: bool
    landscape_direction: str
    landscape_seed: int
    landscape_split: str
    landscape_samples: int
    landscape_n_directions: int
    landscape_points: int
    landscape_candidates: int
    landscape_resolution: int
    landscape_lo: float
    landscape_hi: float
    flatness: tuple[str, ...]
    experiment: str
    run_name: str

    @property
    def class_names(self) -> tuple[str, ...]:
        return CIFAR10_CLASSES if self.dataset == "cifar10" else DIGITS_CLASSES

    @property
    def cls_index(self) -> int | None:
        return resolve_class(self.cls, self.class_names) if self.cls else None

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.bias_options)

    def learning_rate_at(self, epoch: int) -> float:
        """Learning rate of 0-based ``epoch``: the base rate times the factor of the last boundary passed."""
        factor = 1.0
        for boundary, boundary_factor in zip(self.lr_boundaries, self.lr_factors):
            if epoch >= boundary:
                factor = boundary_factor
        return self.learning_rate * factor

    def landscape_settings(self):
        """Return the landscape part of the configuration as ``biaslab.landscape.LandscapeSettings``."""
        from biaslab.landscape.settings import LandscapeSettings

        return LandscapeSettings(
            direction=self.landscape_direction,
            seed=self.landscape_seed,
            n_directions=self.landscape_n_directions,
            points_1d=self.landscape_points,
            n_candidates=self.landscape_candidates,
            resolution=self.landscape_resolution,
            lo=self.landscape_lo,
            hi=self.landscape_hi,
        )

    def params(self) -> dict[str, str]:
        """Return the whole configuration as flat MLflow params, with bias options as ``bias.<name>``."""
        params = {
            "model": self.model,
            "dataset": self.dataset,
            "data_dir": self.data_dir,
            "bias": self.bias,
            "cls": self.cls,
            "pct": format_number(self.pct),
            "seed": str(self.seed),
            "preset": self.preset,
            "demean": self.demean,
            "epochs": str(self.epochs),
            "batch_size": str(self.batch_size),
            "learning_rate": format_number(self.learning_rate),
            "lr_boundaries": ",".join(str(b) for b in self.lr_boundaries),
            "lr_factors": ",".join(format_number(f) for f in self.lr_factors),
            "landscape": str(self.landscape).lower(),
            "flatness": ",".join(self.flatness),
        }
        for field in dataclasses.fields(self):
            if field.name.startswith("landscape_"):
                value = getattr(self, field.name)
                params[f"landscape.{field.name[len('landscape_'):]}"] = (
                    format_number(value) if isinstance(value, float) else str(value)
                )
        for name, value in self.bias_options:
            params[f"bias.{name}"] = format_option(value)
        return params


def format_option(value: Any) -> str:
    """Format a bias option value for a param: empty when unset, numbers and booleans canonical."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return format_number(value)
    return str(value)


def format_number(value: float) -> str:
    """Format a number the same way whether it was given as 90, 90.0 or 9e1."""
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _as_int(name: str, value: Any, minimum: int) -> int:
    try:
        number = float(value)
        if not number.is_integer():
            raise ValueError
        result = int(number)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r} is not a whole number; give an integer >= {minimum}") from None
    if result < minimum:
        raise ConfigError(f"{name}={value!r} is too small; give an integer >= {minimum}")
    return result


def _as_float(name: str, value: Any, positive: bool = False) -> float:
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r} is not a number") from None
    if not math.isfinite(result) or (positive and result <= 0):
        raise ConfigError(f"{name}={value!r} is invalid; give a finite {'positive ' if positive else ''}number")
    return result


def _as_list(name: str, value: Any, convert) -> tuple:
    if isinstance(value, str):
        items = [item for item in value.replace(" ", "").split(",") if item]
    else:
        items = list(value)
    return tuple(convert(f"{name}[{i}]", item) for i, item in enumerate(items))


def _given(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and value.strip() == "")


def build_config(plugins: Plugins, bias_options: Mapping[str, Any] | None = None, **given: Any) -> RunConfig:
    """Validate user settings over a preset and return the resolved RunConfig.

    ``given`` takes the field names of RunConfig; None or an empty string means "not given", so
    the preset's value applies. ``bias_options`` are the bias-specific options (``--var 0.02``).
    """
    known = {field.name for field in dataclasses.fields(RunConfig)} - {"bias_options"}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; valid settings: {', '.join(sorted(known))}")
    value = {name: given.get(name) for name in known}

    preset_name = value["preset"] if _given(value["preset"]) else "paper"
    if preset_name not in PRESETS:
        raise ConfigError(f"unknown preset {preset_name!r}; choose one of: {', '.join(PRESETS)}")
    preset = PRESETS[preset_name]

    def pick(name: str, default: Any = None) -> Any:
        if _given(value.get(name)):
            return value[name]
        return preset.get(name, default)

    model = pick("model", "resnet20")
    if model not in MODELS:
        raise ConfigError(f"unknown model {model!r}; choose one of: {', '.join(MODELS)}")
    dataset = pick("dataset")
    if dataset == "auto":
        dataset = preset["dataset"]
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r}; choose one of: {', '.join(DATASETS)} (or auto)")
    data_dir = str(value["data_dir"] or "")
    if dataset == "digits" and data_dir:
        raise ConfigError(f"dataset=digits ships with scikit-learn and takes no data_dir (got {data_dir!r}); "
                          f"use dataset=cifar10 for a CIFAR-10 folder")

    # the bias, its class, pct and options
    bias = pick("bias", "none")
    spec: BiasSpec = plugins.get("bias", bias)
    class_names = CIFAR10_CLASSES if dataset == "cifar10" else DIGITS_CLASSES
    cls = ""
    if _given(value["cls"]):
        if not spec.needs_class:
            raise ConfigError(f"bias {bias!r} takes no class, but cls={value['cls']!r} was given; drop cls")
        cls = class_names[resolve_class(value["cls"], class_names)]
    elif spec.needs_class:
        valid = ", ".join(class_names)
        raise ConfigError(f"bias {bias!r} needs a class; give cls with one of: {valid}")
    pct = parse_pct(value["pct"])
    if spec.takes_pct and pct is None:
        raise ConfigError(f"bias {bias!r} needs pct, a percentage from 0 to 100, such as pct=30")
    if not spec.takes_pct:
        if pct not in (None, 0.0):
            raise ConfigError(f"bias {bias!r} takes no pct, but pct={value['pct']!r} was given; drop pct")
        pct = 0.0
    options = resolve_options(spec, dict(bias_options or {}))

    demean = pick("demean", "pixel")
    if demean not in DEMEAN_MODES:
        raise ConfigError(f"unknown demean mode {demean!r}; choose one of: {', '.join(DEMEAN_MODES)}")
    seed = _as_int("seed", pick("seed", 0), 0)

    # training settings
    boundaries = _as_list("lr_boundaries", pick("lr_boundaries"), lambda n, v: _as_int(n, v, 0))
    factors = _as_list("lr_factors", pick("lr_factors"), lambda n, v: _as_float(n, v, positive=True))
    if len(boundaries) != len(factors):
        raise ConfigError(
            f"lr_boundaries has {len(boundaries)} epochs but lr_factors has {len(factors)} factors; give one factor per boundary"
        )
    if list(boundaries) != sorted(boundaries):
        raise ConfigError(f"lr_boundaries {','.join(map(str, boundaries))} must be in increasing order")

    # landscape settings; the landscape module checks them again against its own rules
    split = pick("landscape_split", "test")
    if split not in SPLITS:
        raise ConfigError(f"unknown landscape_split {split!r}; choose test (the unbiased test split) or train (the biased training split)")
    direction = pick("landscape_direction", "filter")
    flatness = _as_list("flatness", pick("flatness", ""), lambda n, v: str(v))
    for measure in flatness:
        if measure != "default":
            plugins.get("measure", measure)

    landscape_flag = pick("landscape", True)
    if isinstance(landscape_flag, str):
        if landscape_flag.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"landscape={landscape_flag!r} is not true or false")
        landscape_flag = landscape_flag.lower() in ("true", "1", "yes")
    if landscape_flag:
        plugins.get("direction", direction)

    config = RunConfig(
        model=model,
        dataset=dataset,
        data_dir=data_dir,
        bias=bias,
        cls=cls,
        pct=pct,
        bias_options=tuple(sorted(options.items())),
        seed=seed,
        preset=preset_name,
        demean=demean,
        epochs=_as_int("epochs", pick("epochs"), 1),
        batch_size=_as_int("batch_size", pick("batch_size"), 1),
        learning_rate=_as_float("learning_rate", pick("learning_rate"), positive=True),
        lr_boundaries=boundaries,
        lr_factors=factors,
        landscape=bool(landscape_flag),
        landscape_direction=direction,
        landscape_seed=_as_int("landscape_seed", pick("landscape_seed", seed), 0),
        landscape_split=split,
        landscape_samples=_as_int("landscape_samples", pick("landscape_samples", 0), 0),
        landscape_n_directions=_as_int("landscape_n_directions", pick("landscape_n_directions"), 1),
        landscape_points=_as_int("landscape_points", pick("landscape_points"), 3),
        landscape_candidates=_as_int("landscape_candidates", pick("landscape_candidates"), 2),
        landscape_resolution=_as_int("landscape_resolution", pick("landscape_resolution"), 3),
        landscape_lo=_as_float("landscape_lo", pick("landscape_lo", -1.0)),
        landscape_hi=_as_float("landscape_hi", pick("landscape_hi", 1.0)),
        flatness=flatness,
        experiment=str(pick("experiment", "") or ""),
        run_name=str(pick("run_name", "") or ""),
    )
    for name in ("landscape_points", "landscape_resolution"):
        if getattr(config, name) % 2 == 0:
            raise ConfigError(f"{name}={getattr(config, name)} is even; give an odd number so the grid contains 0")
    if config.landscape_lo >= config.landscape_hi:
        raise ConfigError(
            f"landscape range [{config.landscape_lo}, {config.landscape_hi}] is empty or reversed; give landscape_lo < landscape_hi"
        )
    if config.landscape:
        config.landscape_settings().validate(plugins)
    return config
