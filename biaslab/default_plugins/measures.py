"""Built-in measures."""

from biaslab.hookspecs import hookimpl


@hookimpl
def biaslab_register_measures(register):
    pass
