"""biaslab: train on biased datasets, probe loss landscapes and track everything in MLflow."""

from biaslab.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
