"""Built-in directions."""

from biaslab.hookspecs import hookimpl


@hookimpl
def biaslab_register_directions(register):
    pass
