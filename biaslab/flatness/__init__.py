"""Flatness measures around trained weights: Hessian eigenvalues and trace, epsilon-sharpness,
relative flatness and the landscape curvature, each a plugin registered through
``biaslab_register_measures``.

Importing this package does not import TensorFlow; the measures import it when they run.
"""

from biaslab.flatness.compute import compute_measures
from biaslab.flatness.context import FlatnessResult, MeasureContext
from biaslab.flatness.measures import MeasureSpec

__all__ = ["FlatnessResult", "MeasureContext", "MeasureSpec", "compute_measures"]
