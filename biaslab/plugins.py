"""The plugin manager: built-in plugins, installed third-party plugins, and their registries.

Nothing is loaded when this module is imported. ``load_plugins()`` builds a fresh manager, and
callers pass the result to whatever needs biases, directions or measures.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import warnings
from typing import Any, Iterable

import pluggy

from biaslab import hookspecs
from biaslab.errors import ConfigError, PluginError

ENTRY_POINT_GROUP = "biaslab"
BUILTIN_PACKAGE = "biaslab"
BUILTIN_MODULES = (
    "biaslab.default_plugins.biases",
    "biaslab.default_plugins.directions",
    "biaslab.default_plugins.measures",
)

# Registry kinds: the hook that fills each one and the word used in messages.
KINDS = {
    "bias": "biaslab_register_biases",
    "direction": "biaslab_register_directions",
    "measure": "biaslab_register_measures",
}


class PluginLoadWarning(UserWarning):
    """A third-party plugin could not be loaded; the host carries on without it."""


@dataclasses.dataclass(frozen=True)
class Registered:
    """One registered item with the plugin and the distribution package that provide it."""

    name: str
    item: Any
    plugin: str
    package: str


@dataclasses.dataclass(frozen=True)
class FailedPlugin:
    """A plugin that could not be loaded or registered, and why."""

    name: str
    package: str
    error: str

    def __str__(self) -> str:
        return f"{self.name} ({self.package}): {self.error}"


@dataclasses.dataclass
class Plugins:
    """The loaded plugin manager and the items each registry kind holds."""

    manager: pluggy.PluginManager
    registries: dict[str, dict[str, Registered]]
    failed: list[FailedPlugin]

    def get(self, kind: str, name: str) -> Any:
        """Return the registered item of ``kind`` called ``name``, or raise ConfigError listing the choices."""
        registry = self.registries[kind]
        if name not in registry:
            choices = ", ".join(sorted(registry)) or "none"
            raise ConfigError(
                f"unknown {kind} {name!r}; available: {choices}. "
                f"Run 'biaslab plugins' to see every {kind} and the package that provides it."
            )
        return registry[name].item

    def names(self, kind: str) -> list[str]:
        return sorted(self.registries[kind])

    def failed_tag(self) -> str:
        """Text for the MLflow tag that lists plugins that failed to load (empty when none did)."""
        return "; ".join(str(failure) for failure in self.failed)


def make_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager("biaslab")
    manager.add_hookspecs(hookspecs)
    return manager


def _register_plugin(
    manager: pluggy.PluginManager,
    plugin: Any,
    name: str,
    package: str,
    packages: dict[str, str],
    failed: list[FailedPlugin],
) -> None:
    try:
        manager.register(plugin, name=name)
    except (pluggy.PluginValidationError, ValueError) as error:
        failed.append(FailedPlugin(name, package, f"{type(error).__name__}: {error}"))
        warnings.warn(
            f"biaslab plugin {name!r} from package {package!r} was not registered: {error}",
            PluginLoadWarning,
            stacklevel=3,
        )
        return
    packages[name] = package


def _installed_entry_points() -> Iterable[importlib.metadata.EntryPoint]:
    return importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)


def load_plugins(extra: Iterable[tuple[str, Any]] = (), entry_points: bool = True) -> Plugins:
    """Build a plugin manager with the built-ins, installed plugins and ``extra`` (name, plugin) pairs.

    A third-party plugin whose import fails, whose hooks do not match the specs, or whose hook
    raises is skipped with a PluginLoadWarning and listed in ``Plugins.failed``. Two plugins that
    register the same name raise PluginError naming both packages.
    """
    manager = make_manager()
    packages: dict[str, str] = {}
    failed: list[FailedPlugin] = []

    # built-ins go through the same registration path as third-party plugins
    for module_name in BUILTIN_MODULES:
        module = importlib.import_module(module_name)
        _register_plugin(manager, module, module_name, BUILTIN_PACKAGE, packages, failed)

    if entry_points:
        for entry_point in _installed_entry_points():
            package = entry_point.dist.name if entry_point.dist is not None else entry_point.value
            try:
                plugin = entry_point.load()
            except Exception as error:  # noqa: BLE001 - any import error of a plugin must not stop the host
                failed.append(FailedPlugin(entry_point.name, package, f"{type(error).__name__}: {error}"))
                warnings.warn(
                    f"biaslab plugin {entry_point.name!r} from package {package!r} failed to load: "
                    f"{type(error).__name__}: {error}",
                    PluginLoadWarning,
                    stacklevel=2,
                )
                continue
            _register_plugin(manager, plugin, entry_point.name, package, packages, failed)

    for name, plugin in extra:
        _register_plugin(manager, plugin, name, packages.get(name, name), packages, failed)

    registries = {kind: _collect(manager, kind, packages, failed) for kind in KINDS}
    return Plugins(manager=manager, registries=registries, failed=failed)


def _collect(
    manager: pluggy.PluginManager,
    kind: str,
    packages: dict[str, str],
    failed: list[FailedPlugin],
) -> dict[str, Registered]:
    """Call each implementation of the kind's hook on its own, so that one faulty plugin is isolated."""
    registry: dict[str, Registered] = {}
    hook = getattr(manager.hook, KINDS[kind])

    # get_hookimpls() lists implementations in registration order, so built-ins come first
    for implementation in hook.get_hookimpls():
        plugin_name = implementation.plugin_name
        package = packages.get(plugin_name, plugin_name)
        collected: list[Registered] = []

        def register(item: Any, _collected: list[Registered] = collected, _plugin: str = plugin_name,
                     _package: str = package) -> None:
            name = getattr(item, "name", None)
            if not isinstance(name, str) or not name:
                raise PluginError(
                    f"plugin {_plugin!r} ({_package}) registered a {kind} without a string 'name': {item!r}"
                )
            _collected.append(Registered(name, item, _plugin, _package))

        try:
            implementation.function(register=register)
        except PluginError:
            raise
        except Exception as error:  # noqa: BLE001 - a faulty hook of one plugin must not stop the host
            if package == BUILTIN_PACKAGE:
                raise
            failed.append(FailedPlugin(plugin_name, package, f"{KINDS[kind]} raised {type(error).__name__}: {error}"))
            warnings.warn(
                f"biaslab plugin {plugin_name!r} from package {package!r} failed in {KINDS[kind]}: "
                f"{type(error).__name__}: {error}",
                PluginLoadWarning,
                stacklevel=2,
            )
            continue

        for entry in collected:
            if entry.name in registry:
                first = registry[entry.name]
                raise PluginError(
                    f"{kind} {entry.name!r} is registered twice: by plugin {first.plugin!r} "
                    f"(package {first.package!r}) and by plugin {entry.plugin!r} (package {entry.package!r}). "
                    f"Uninstall one of the two packages."
                )
            registry[entry.name] = entry
    return registry
