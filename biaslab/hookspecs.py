"""Hook specifications: the whole interface between biaslab and its plugins.

A plugin is a module or object with functions marked by ``biaslab.hookimpl`` whose names match
the specs below. Built-in biases, directions and flatness measures are registered through these
same hooks (see ``biaslab.default_plugins``), so a third-party plugin has exactly the powers of a
built-in one. Third-party plugins are found through the ``biaslab`` entry-point group.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

hookspec = pluggy.HookspecMarker("biaslab")
hookimpl = pluggy.HookimplMarker("biaslab")


@hookspec
def biaslab_register_biases(register: Callable[[Any], None]) -> None:
    """Register dataset biases.

    :param register: call it once per bias with a ``biaslab.biases.BiasSpec``. The host checks
        each spec and rejects a name that another plugin has registered already.
    :return: nothing; the return value is ignored.
    """


@hookspec
def biaslab_register_directions(register: Callable[[Any], None]) -> None:
    """Register direction generators for loss-landscape probes.

    :param register: call it once per generator with a
        ``biaslab.landscape.directions.DirectionSpec``. Names must be unique across plugins.
    :return: nothing; the return value is ignored.
    """


@hookspec
def biaslab_register_measures(register: Callable[[Any], None]) -> None:
    """Register flatness or sharpness measures computed around trained weights.

    :param register: call it once per measure with a ``biaslab.flatness.MeasureSpec``.
        Names must be unique across plugins.
    :return: nothing; the return value is ignored.
    """
