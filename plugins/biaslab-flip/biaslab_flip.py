"""An example third-party biaslab plugin: the asymmetric label flip ``flip``.

``flip`` relabels exactly round(pct%) of the samples of class ``cls`` as class ``to``, the
structured label noise of, for example, cats that annotators call dogs. Copy this package to
start a plugin of your own: one module, and one entry point in the ``biaslab`` group.
"""

import numpy as np

from biaslab import hookimpl
from biaslab.biases import BiasInput, BiasOption, BiasResult, BiasSpec, count_for_pct
from biaslab.data import resolve_class
from biaslab.errors import ConfigError


def apply_flip(data: BiasInput) -> BiasResult:
    if data.options["to"] is None:
        raise ConfigError("bias 'flip' needs option to, the class that labels are flipped to (for example --to dog)")
    target = resolve_class(data.options["to"], data.class_names)
    if target == data.cls:
        raise ConfigError(f"bias 'flip' got to={data.options['to']!r}, the same class as cls; choose another class")

    members = np.flatnonzero(data.y == data.cls)
    count = count_for_pct(data.pct, len(members))
    flipped = np.sort(data.rng().choice(members, size=count, replace=False))
    y = data.y.copy()
    y[flipped] = target
    manifest = [(int(i), "relabel", int(data.y[i]), target) for i in flipped]
    realized = 100.0 * count / len(members) if len(members) else 0.0
    return BiasResult(data.x, y, np.arange(len(y)), manifest, {"bias_realized_pct": realized})


@hookimpl
def biaslab_register_biases(register):
    register(
        BiasSpec(
            name="flip",
            description="relabel exactly round(pct%) of class cls as class 'to' (asymmetric flip)",
            apply=apply_flip,
            needs_class=True,
            options=(BiasOption("to", str, None, "the class that labels are flipped to, a name or an index"),),
        )
    )
