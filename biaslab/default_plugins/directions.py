"""Built-in directions: ``random`` (Gaussian) and ``filter`` (filter-normalized, Li et al. 2018)."""

from biaslab.hookspecs import hookimpl
from biaslab.landscape.directions import DirectionSpec, filter_normalized_direction, random_direction


@hookimpl
def biaslab_register_directions(register):
    register(
        DirectionSpec(
            name="random",
            description="Gaussian direction with no normalization, zero for biases and BatchNormalization",
            generate=random_direction,
        )
    )
    register(
        DirectionSpec(
            name="filter",
            description=(
                "Gaussian direction rescaled per filter to the norm of the weights' filter (Li et al. 2018), "
                "zero for biases and BatchNormalization"
            ),
            generate=filter_normalized_direction,
        )
    )
