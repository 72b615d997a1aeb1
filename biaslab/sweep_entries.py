"""Sweep entries: the built-in grids, sweep files in YAML or TOML, and their validation.

A sweep is a list of entries. Each entry is a mapping of RunConfig fields (``bias``, ``cls``,
``pct``, ``epochs``, ...) plus the options of its bias (``var`` for gaussian). A sweep file contains
shared settings at the top level and the entries under ``runs``::

    preset: quick
    epochs: 2
    runs:
      - bias: none
      - {bias: mislabel, pct: 30}
      - {bias: gaussian, cls: cat, pct: 60, var: 0.02}

Settings apply in this order, later ones winning: the preset, the shared settings of the file,
the entry, the command-line overrides. Every entry is validated before any child run starts, and
an error names the file, the line (YAML) or key path (TOML) and the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from biaslab.config import RunConfig, build_config
from biaslab.data import CIFAR10_CLASSES
from biaslab.errors import ConfigError
from biaslab.plugins import Plugins

RUNS_KEY = "runs"
CONFIG_FIELDS = tuple(field.name for field in dataclasses.fields(RunConfig) if field.name != "bias_options")
# ``experiment`` is one setting of the whole sweep, because all children share the parent's experiment
ENTRY_FIELDS = tuple(name for name in CONFIG_FIELDS if name != "experiment")
# ``run_name`` names a single child, so it belongs in an entry
SHARED_FIELDS = tuple(name for name in CONFIG_FIELDS if name != "run_name")

# The nine configurations of the 2021 study "How does training deep neural networks on a biased
# dataset affect the loss landscape of the network?" (Mohammadi and Rana, University of Bonn),
# with classes named as in CIFAR-10.
STUDY_GRID: tuple[dict[str, Any], ...] = (
    {"bias": "none"},
    {"bias": "mislabel", "pct": 30},
    {"bias": "mislabel", "pct": 60},
    {"bias": "mislabel", "pct": 80},
    {"bias": "size", "cls": "cat", "pct": 30},
    {"bias": "size", "cls": "cat", "pct": 60},
    {"bias": "size", "cls": "cat", "pct": 90},
    {"bias": "size", "cls": "ship", "pct": 60},
    {"bias": "gaussian", "cls": "cat", "pct": 60},
)
GRIDS: dict[str, tuple[dict[str, Any], ...]] = {"study": STUDY_GRID}


@dataclasses.dataclass(frozen=True)
class Setting:
    """One key of a sweep entry or of the shared settings, with where it was written."""

    value: Any
    where: str


@dataclasses.dataclass(frozen=True)
class SweepEntry:
    """The settings of one child run as written, keyed by name, and where the entry starts."""

    settings: dict[str, Setting]
    where: str


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """Shared settings and entries of a sweep, from a grid or a file."""

    name: str
    shared: dict[str, Setting]
    entries: list[SweepEntry]
    # grids name classes as in CIFAR-10; on digits they stand for the digit of the same index
    cifar_class_names: bool = False


def grid_spec(name: str) -> SweepSpec:
    """Return the built-in grid ``name`` as a sweep spec, or raise ConfigError listing the grids."""
    if name not in GRIDS:
        raise ConfigError(f"unknown grid {name!r}; available grids: {', '.join(sorted(GRIDS))}. "
                          f"Or write a YAML or TOML sweep file and pass it with --config.")
    entries = []
    for number, entry in enumerate(GRIDS[name], start=1):
        where = f"grid {name} entry {number}"
        entries.append(SweepEntry({key: Setting(value, where) for key, value in entry.items()}, where))
    return SweepSpec(name=name, shared={}, entries=entries, cifar_class_names=True)


def read_sweep_file(path: str | Path) -> SweepSpec:
    """Parse a YAML (.yaml, .yml) or TOML (.toml) sweep file, keeping the location of every key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep file {str(path)!r} was not found; give the path of a .yaml, .yml or .toml file")
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        shared, entries = _read_yaml(path)
    elif suffix == ".toml":
        shared, entries = _read_toml(path)
    else:
        raise ConfigError(f"sweep file {str(path)!r} has an unknown extension {suffix!r}; use .yaml, .yml or .toml")
    return SweepSpec(name=path.stem, shared=shared, entries=entries)


def _read_yaml(path: Path) -> tuple[dict[str, Setting], list[SweepEntry]]:
    loader = yaml.SafeLoader(path.read_text())
    try:
        try:
            root = loader.get_single_node()
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: invalid YAML: {error}") from None
        if root is None:
            raise ConfigError(f"{path} is empty; list the runs under '{RUNS_KEY}:'")

        def line(node: yaml.Node) -> str:
            return f"{path} line {node.start_mark.line + 1}"

        def mapping(node: yaml.Node, what: str) -> dict[str, Setting]:
            if not isinstance(node, yaml.MappingNode):
                raise ConfigError(f"{line(node)}: {what} must be a mapping of settings such as 'bias: mislabel'")
            settings: dict[str, Setting] = {}
            for key_node, value_node in node.value:
                key = loader.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    raise ConfigError(f"{line(key_node)}: key {key!r} is not a name; keys are setting names such as pct")
                if key in settings:
                    raise ConfigError(f"{line(key_node)}: key {key!r} appears twice in {what} "
                                      f"(first at {settings[key].where}); keep one")
                try:
                    value = loader.construct_object(value_node, deep=True)
                except yaml.YAMLError as error:
                    raise ConfigError(f"{line(value_node)}: invalid value of {key!r}: {error}") from None
                settings[key] = Setting(value, line(key_node))
            return settings

        if isinstance(root, yaml.SequenceNode):
            shared: dict[str, Setting] = {}
            entry_nodes = root.value
        else:
            top = mapping(root, "the top level")
            runs_node = next((value for key, value in root.value if key.value == RUNS_KEY), None)
            if runs_node is None:
                raise ConfigError(f"{path} has no '{RUNS_KEY}:' list; list one mapping of settings per child run under it")
            if not isinstance(runs_node, yaml.SequenceNode):
                raise ConfigError(f"{line(runs_node)}: '{RUNS_KEY}' must be a list of mappings, one per child run")
            shared = {key: setting for key, setting in top.items() if key != RUNS_KEY}
            entry_nodes = runs_node.value
        entries = [SweepEntry(mapping(node, f"entry {number} of {RUNS_KEY}"), line(node))
                   for number, node in enumerate(entry_nodes, start=1)]
    finally:
        loader.dispose()
    return shared, entries


def _read_toml(path: Path) -> tuple[dict[str, Setting], list[SweepEntry]]:
    try:
        document = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from None
    if RUNS_KEY not in document:
        raise ConfigError(f"{path} has no '{RUNS_KEY}' array; add one [[{RUNS_KEY}]] table per child run")
    runs = document[RUNS_KEY]
    if not isinstance(runs, list) or not all(isinstance(entry, dict) for entry in runs):
        raise ConfigError(f"{path}: key '{RUNS_KEY}' must be an array of tables, written as [[{RUNS_KEY}]] sections")
    shared = {key: Setting(value, f"{path} key {key}") for key, value in document.items() if key != RUNS_KEY}
    entries = []
    for index, entry in enumerate(runs):
        prefix = f"{RUNS_KEY}[{index}]"
        settings = {key: Setting(value, f"{path} key {prefix}.{key}") for key, value in entry.items()}
        entries.append(SweepEntry(settings, f"{path} table {prefix}"))
    return shared, entries


def build_sweep_configs(
    plugins: Plugins,
    spec: SweepSpec,
    overrides: Mapping[str, Any] | None = None,
    models: Sequence[str] = (),
) -> list[RunConfig]:
    """Validate every entry of ``spec`` and return one RunConfig per entry and model.

    ``overrides`` are settings from the command line that apply to every entry (None or "" means
    not given). A non-empty ``models`` runs each entry once per model. Raises ConfigError naming
    the location of the first invalid entry; nothing is run.
    """
    overrides = {key: value for key, value in (overrides or {}).items() if value is not None and value != ""}
    for key in overrides:
        if key not in SHARED_FIELDS:
            raise ConfigError(f"setting {key!r} cannot be set for a whole sweep; valid settings: {', '.join(SHARED_FIELDS)}")
    if not spec.entries:
        raise ConfigError(f"sweep {spec.name!r} has no entries; list at least one run under '{RUNS_KEY}'")
    for key, setting in spec.shared.items():
        if key not in SHARED_FIELDS:
            raise ConfigError(f"{setting.where}: unknown shared setting {key!r}{_suggest(key, SHARED_FIELDS)}. "
                              f"Shared settings are RunConfig fields: {', '.join(SHARED_FIELDS)}. "
                              f"Bias options and run_name go in an entry.")

    configs: list[RunConfig] = []
    origins: dict[str, str] = {}
    for model in models or (None,):
        for entry in spec.entries:
            config = _build_entry(plugins, spec, entry, overrides, model)
            key = repr(sorted(config.params().items()))
            if key in origins:
                raise ConfigError(f"{entry.where} gives the same configuration as {origins[key]}"
                                  f"{f' for model {model}' if model else ''}; remove one of the two")
            origins[key] = entry.where
            configs.append(config)
    return configs


def _build_entry(plugins: Plugins, spec: SweepSpec, entry: SweepEntry, overrides: Mapping[str, Any],
                 model: str | None) -> RunConfig:
    merged: dict[str, Setting] = dict(spec.shared)
    for key, setting in entry.settings.items():
        if key == "experiment":
            raise ConfigError(f"{setting.where}: an entry cannot set 'experiment', because all child runs share "
                              f"the experiment of the parent run; set it at the top level or with --experiment")
        merged[key] = setting
    for key, value in overrides.items():
        merged[key] = Setting(value, f"command-line option {key}")
    if model:
        merged["model"] = Setting(model, "command-line option models")

    # the bias decides which extra keys are valid, so look it up first
    bias_setting = merged.get("bias", Setting("none", entry.where))
    try:
        bias_spec = plugins.get("bias", str(bias_setting.value))
    except ConfigError as error:
        raise ConfigError(f"{bias_setting.where}: {error}") from None
    option_names = tuple(option.name for option in bias_spec.options)
    fields: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for key, setting in merged.items():
        if key in CONFIG_FIELDS:
            fields[key] = setting.value
        elif key in option_names and key in entry.settings:
            options[key] = setting.value
        else:
            takes = ", ".join(option_names) or "none"
            raise ConfigError(
                f"{setting.where}: unknown key {key!r}{_suggest(key, CONFIG_FIELDS + option_names)}. "
                f"An entry takes RunConfig fields ({', '.join(ENTRY_FIELDS)}) and the options of its bias "
                f"{bias_spec.name!r}: {takes}."
            )

    try:
        if spec.cifar_class_names and fields.get("cls"):
            fields["cls"] = _grid_class(plugins, fields)
        return build_config(plugins, bias_options=options, **fields)
    except ConfigError as error:
        raise ConfigError(f"{_blame(error, merged, entry)}: {error}") from None


def _grid_class(plugins: Plugins, fields: Mapping[str, Any]) -> str:
    """Map a CIFAR-10 class name of a grid to the class of the same index in the run's dataset.

    On digits, cat (index 3) becomes 3 and ship (index 8) becomes 8, so the study's grid runs
    offline on the small dataset.
    """
    name = str(fields["cls"])
    probe = {key: value for key, value in fields.items() if key not in ("bias", "cls", "pct", "run_name")}
    dataset = build_config(plugins, bias="none", landscape=False, **probe).dataset
    if dataset == "cifar10":
        return name
    return str(CIFAR10_CLASSES.index(name))


def _blame(error: ConfigError, merged: Mapping[str, Setting], entry: SweepEntry) -> str:
    """Return the location of the key that an error of build_config names, or of the whole entry."""
    message = str(error)
    # build_config names a bad value as ``key=value`` ("pct=120 is outside [0, 100]") or, for names
    # looked up in a registry, as ``unknown key 'value'`` ("unknown class 'dog'")
    for key in re.findall(r"\b(\w+)=", message):
        if key in merged:
            return merged[key].where
    aliases = {"class": "cls"}
    match = re.match(r"unknown (\w+) ", message)
    if match:
        key = aliases.get(match.group(1), match.group(1))
        if key in merged:
            return merged[key].where
    return entry.where


def _suggest(key: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
