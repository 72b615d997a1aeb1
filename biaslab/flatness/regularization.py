"""The regularization term of the training objective, reported apart from the data loss.

Flatness measures use the data loss only. The penalty that Keras adds through ``model.losses``
(weight regularizers such as L2 on conv kernels) is reported as separate numbers. These are its
value, and the exact trace of its Hessian where the regularizer's config determines it.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np


def regularization_loss(model: keras.Model) -> float:
    """Return the sum of ``model.losses`` at the current weights (0.0 when there are none)."""
    losses = model.losses
    if not losses:
        return 0.0
    return float(sum(float(np.asarray(loss)) for loss in losses))


def l2_hessian_trace(variables: list[Any]) -> tuple[float | None, dict[str, float], list[str]]:
    """Return the exact trace of the Hessian of the weight regularizers on ``variables``.

    An L2 penalty ``l2 * sum(w**2)`` has the Hessian ``2 * l2 * I``, so each regularized weight
    adds ``2 * l2``. The L1 part of ``L1L2`` has a zero second derivative away from w = 0 and adds
    nothing. Returns ``(total, by_variable_path, notes)``; ``total`` is None when a variable has a
    regularizer whose config has no ``l2`` entry, because its Hessian cannot be read off.
    """
    by_variable: dict[str, float] = {}
    notes: list[str] = []
    readable = True
    for variable in variables:
        regularizer = getattr(variable, "regularizer", None)
        if regularizer is None:
            continue
        config = regularizer.get_config() if hasattr(regularizer, "get_config") else {}
        if "l2" not in config:
            readable = False
            notes.append(
                f"the Hessian of regularizer {type(regularizer).__name__} on {variable.path} cannot be read "
                f"from its config, so no regularization Hessian trace is reported"
            )
            continue
        size = int(np.prod(variable.shape, dtype=np.int64))
        by_variable[variable.path] = 2.0 * float(config["l2"]) * size
        if float(config.get("l1", 0.0)) != 0.0:
            notes.append(f"the L1 part of the regularizer on {variable.path} adds nothing to the Hessian trace away from w = 0")
    total = float(sum(by_variable.values())) if readable else None
    return total, by_variable, notes


def unexplained_regularization(model: keras.Model, variables: list[Any]) -> float:
    """Return the part of ``model.losses`` that the weight regularizers on ``variables`` do not explain.

    A non-zero value means the model adds losses of its own (activity regularizers, ``add_loss``
    terms, or regularized variables outside the measured set) whose Hessian is not in the
    regularization trace.
    """
    explained = 0.0
    for variable in variables:
        regularizer = getattr(variable, "regularizer", None)
        if regularizer is not None:
            explained += float(np.asarray(regularizer(variable.value)))
    return regularization_loss(model) - explained
