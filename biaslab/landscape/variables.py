"""The model variables a landscape probe perturbs, keyed by ``variable.path``, and their kinds.

A kind describes what a variable is, for direction generators. It follows from the type of the
layer that owns the variable and from the variable's name:

- ``conv_kernel``: the ``kernel`` of Conv1D, Conv2D or Conv3D, laid out (..., in, out).
- ``dense_kernel``: the ``kernel`` of Dense, laid out (in, out).
- ``bias``: a variable called ``bias`` in any layer other than BatchNormalization.
- ``batchnorm``: every variable of BatchNormalization, moving statistics included.
- ``other``: everything else (for example transposed or depthwise convolution kernels,
  LayerNormalization scales, kernels of layers nested inside a custom layer).

Only floating-point variables are collected. Integer state such as a dropout layer's seed
generator cannot be perturbed and is left out.
"""

from __future__ import annotations

import hashlib

import keras
import numpy as np

from biaslab.errors import ConfigError

KINDS = ("conv_kernel", "dense_kernel", "bias", "batchnorm", "other")

_CONV_TYPES = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)


def collect_variables(model: keras.Model) -> dict[str, keras.Variable]:
    """Map each floating-point variable's path to the variable, each variable once, sorted by path.

    A layer called twice (a shared kernel) owns one variable, so it appears once here and a probe
    perturbs it once. Two distinct variables with the same path raise ConfigError, because
    directions are matched to variables by path.
    """
    by_path: dict[str, keras.Variable] = {}
    for variable in model.variables:
        if not _is_floating(variable):
            continue
        path = variable.path
        known = by_path.get(path)
        if known is None:
            by_path[path] = variable
        elif known is not variable:
            raise ConfigError(
                f"two different variables of model {model.name!r} share the path {path!r}. Give the layers "
                f"that own them distinct names, because directions are matched to variables by path."
            )
    return {path: by_path[path] for path in sorted(by_path)}


def classify_variables(model: keras.Model, variables: dict[str, keras.Variable]) -> dict[str, str]:
    """Return the kind (one of ``KINDS``) of each variable in ``variables``, keyed by path."""
    owners = _owning_layers(model)
    kinds = {}
    for path, variable in variables.items():
        kinds[path] = _kind_of(owners.get(id(variable)), variable)
    return kinds


def weights_digest(variables: dict[str, keras.Variable]) -> str:
    """Return a SHA-256 hex digest of the variables' paths, shapes, dtypes and values."""
    digest = hashlib.sha256()
    for path, variable in variables.items():
        value = np.ascontiguousarray(variable.numpy())
        digest.update(f"{path}|{value.shape}|{value.dtype}\n".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _is_floating(variable: keras.Variable) -> bool:
    return np.issubdtype(np.dtype(keras.backend.standardize_dtype(variable.dtype)), np.floating)


def _owning_layers(model: keras.Model) -> dict[int, keras.layers.Layer]:
    """Map id(variable) to the innermost layer reachable through ``.layers`` that contains it."""
    owners: dict[int, keras.layers.Layer] = {}
    pending = list(model.layers)
    while pending:
        layer = pending.pop(0)
        for variable in layer.variables:
            owners[id(variable)] = layer
        # nested models come after their parent, so an inner layer overrides the model holding it
        pending.extend(getattr(layer, "layers", []))
    return owners


def _kind_of(layer: keras.layers.Layer | None, variable: keras.Variable) -> str:
    if isinstance(layer, keras.layers.BatchNormalization):
        return "batchnorm"
    if variable.name == "bias":
        return "bias"
    if variable.name == "kernel" and isinstance(layer, _CONV_TYPES):
        return "conv_kernel"
    if variable.name == "kernel" and isinstance(layer, keras.layers.Dense):
        return "dense_kernel"
    return "other"
