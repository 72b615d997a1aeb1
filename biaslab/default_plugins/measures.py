"""Built-in flatness measures: Hessian eigenvalues and trace, epsilon-sharpness, relative flatness,
and the landscape curvature."""

from biaslab.flatness.measures import BUILTIN_MEASURES
from biaslab.hookspecs import hookimpl


@hookimpl
def biaslab_register_measures(register):
    for spec in BUILTIN_MEASURES:
        register(spec)
