"""Dataset biases: the plugin interface, option parsing, and applying a bias to a training split.

A bias is a pure function of the clean training split, a seed, a class, a percentage and its
options. It returns the biased split, a manifest of what changed (logged as ``bias/manifest.csv``)
and realized statistics (logged as metrics). The test split is never passed to a bias.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from biaslab.errors import ConfigError

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


@dataclasses.dataclass(frozen=True)
class BiasOption:
    """An option that a bias takes, given on the command line as ``--NAME VALUE``."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] = ()

    def parse(self, value: Any, bias: str) -> Any:
        """Convert ``value`` (often a string from the command line) to the option's type."""
        if value is None:
            return None
        try:
            if self.type is bool:
                if isinstance(value, bool):
                    return value
                text = str(value).strip().lower()
                if text in TRUE_WORDS:
                    return True
                if text in FALSE_WORDS:
                    return False
                raise ValueError(value)
            parsed = self.type(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"option {self.name}={value!r} of bias {bias!r} is not a valid {self.type.__name__}: {self.help}"
            ) from None
        if self.type is float and not math.isfinite(parsed):
            raise ConfigError(f"option {self.name}={value!r} of bias {bias!r} must be a finite number")
        if self.choices and parsed not in self.choices:
            raise ConfigError(
                f"option {self.name}={value!r} of bias {bias!r} is invalid; choose one of: {', '.join(self.choices)}"
            )
        return parsed


@dataclasses.dataclass(frozen=True)
class BiasInput:
    """Input of a bias: the clean training split in both scales, and the resolved settings."""

    x: np.ndarray  # preprocessed model input, NHWC float32
    x_pixels: np.ndarray  # the same images in the [0, 1] pixel scale
    y: np.ndarray  # int64 labels
    preprocess: Callable[[np.ndarray], np.ndarray]  # pixels -> model input, fitted on the clean split
    class_names: tuple[str, ...]
    cls: int | None
    pct: float
    options: Mapping[str, Any]
    seed: int

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)


@dataclasses.dataclass
class BiasResult:
    """A biased training split, the manifest of changes, and realized statistics.

    ``indices[i]`` is the position in the clean split of biased sample ``i``; the manifest rows
    are (index into the clean split, change, label before, label after).
    """

    x: np.ndarray
    y: np.ndarray
    indices: np.ndarray
    manifest: list[tuple[int, str, int, int]]
    stats: dict[str, float]


@dataclasses.dataclass(frozen=True)
class BiasSpec:
    """A registered bias: its name, what it needs, its options and the function that applies it."""

    name: str
    description: str
    apply: Callable[[BiasInput], BiasResult]
    needs_class: bool = False
    takes_pct: bool = True
    options: tuple[BiasOption, ...] = ()
    # checks the parsed options together (e.g. two options that exclude each other) and may
    # return them with defaults that depend on each other filled in
    check: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None

    def option(self, name: str) -> BiasOption | None:
        return next((option for option in self.options if option.name == name), None)


def count_for_pct(pct: float, total: int) -> int:
    """Return round(pct% of total), rounding halves up so that 50% of 5 is 3."""
    return int(math.floor(pct / 100.0 * total + 0.5))


def parse_pct(value: Any) -> float | None:
    """Parse a percentage given as 90, 90.0, "9e1" or similar; empty means not given."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    if isinstance(value, bool):
        raise ConfigError(f"pct={value!r} is not a number; give a percentage from 0 to 100, such as 30")
    try:
        pct = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"pct={value!r} is not a number; give a percentage from 0 to 100, such as 30") from None
    if not math.isfinite(pct) or not 0.0 <= pct <= 100.0:
        raise ConfigError(f"pct={value!r} is outside [0, 100]; give a percentage from 0 to 100, such as 30")
    return pct


def resolve_options(spec: BiasSpec, given: Mapping[str, Any]) -> dict[str, Any]:
    """Check the option names against the bias, parse the values and fill in defaults."""
    known = {option.name for option in spec.options}
    unknown = sorted(set(given) - known)
    if unknown:
        takes = ", ".join(sorted(known)) if known else "no options"
        raise ConfigError(
            f"bias {spec.name!r} does not take option(s) {', '.join(unknown)}; it takes: {takes}"
        )
    resolved = {}
    for option in spec.options:
        value = given.get(option.name, option.default)
        resolved[option.name] = option.parse(value, spec.name)
    if spec.check is not None:
        checked = spec.check(resolved)
        if checked is not None:
            resolved = checked
    return resolved


def class_counts(y: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(np.asarray(y, dtype=np.int64), minlength=num_classes)


def count_stats(before: np.ndarray, after: np.ndarray, class_names: tuple[str, ...]) -> dict[str, float]:
    """Class counts before and after as metrics, plus the largest relative change of a class in percent."""
    stats: dict[str, float] = {}
    for index, name in enumerate(class_names):
        stats[f"bias_count_before_{name}"] = float(before[index])
        stats[f"bias_count_after_{name}"] = float(after[index])
    nonzero = before > 0
    deviation = np.abs(after[nonzero] - before[nonzero]) / before[nonzero] * 100.0
    stats["bias_max_class_deviation_pct"] = float(deviation.max()) if deviation.size else 0.0
    stats["bias_train_size_before"] = float(before.sum())
    stats["bias_train_size_after"] = float(after.sum())
    return stats


def write_manifest(result: BiasResult, folder: Path, summary: Mapping[str, Any]) -> list[Path]:
    """Write ``manifest.csv`` (one row per changed sample) and ``summary.json`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / "manifest.csv"
    with manifest_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "change", "label_before", "label_after"])
        writer.writerows(result.manifest)
    digest = hashlib.sha256(manifest_path.read_bytes()).hexdigest()
    summary_path = folder / "summary.json"
    content = {**summary, "manifest_sha256": digest, "changed": len(result.manifest), "stats": result.stats}
    summary_path.write_text(json.dumps(content, indent=2, sort_keys=True, default=str) + "\n")
    return [manifest_path, summary_path]
