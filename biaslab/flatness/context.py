"""The input of a flatness measure (MeasureContext) and the output of compute_measures (FlatnessResult)."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class MeasureContext:
    """The trained model, the evaluation set and the settings of one measure.

    ``options`` are the measure's settings, already merged over its defaults. A measure writes
    JSON-serializable extras to ``details`` and human-readable remarks to ``notes``; both end up
    in ``FlatnessResult.details``. Measures that need Hessian-vector products share one operator
    through ``hessian_operator()``, so its compiled steps are traced once per call of
    ``compute_measures``.
    """

    model: Any
    x: Any
    y: Any
    batch_size: int
    seed: int
    options: dict
    progress: bool
    landscape_metrics: dict[str, float] | None
    details: dict = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    shared: dict = dataclasses.field(default_factory=dict)

    def hessian_operator(self):
        """Return the HessianOperator of the data loss over (x, y), built on first use."""
        operator = self.shared.get("hessian_operator")
        if operator is None:
            # imported here so that loading the plugins does not import TensorFlow
            from biaslab.flatness.hvp import HessianOperator

            operator = HessianOperator(self.model, self.x, self.y, self.batch_size)
            self.shared["hessian_operator"] = operator
        return operator


@dataclasses.dataclass
class FlatnessResult:
    """Metrics, flat settings and JSON-serializable details of one ``compute_measures`` call.

    ``metrics`` are ready for ``mlflow.log_metrics`` and ``settings`` for ``mlflow.log_params``
    (keys ``flatness.<measure>.<option>`` plus ``flatness.measures``, ``flatness.seed``,
    ``flatness.batch_size`` and ``flatness.samples``). ``details`` contains what is too large for
    metrics: the trace split by variable, HVP counts, seconds per measure and notes.
    """

    metrics: dict[str, float]
    settings: dict[str, str]
    details: dict
