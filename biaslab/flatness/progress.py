"""Progress lines on stderr for long measures."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Print ``<label>: done/total <unit>, elapsed, estimated time left`` on stderr.

    Prints after the first step, then at most one line every ``interval`` seconds, and one
    final line from ``finish``. Prints nothing when ``enabled`` is False. The time left is an
    estimate from the mean time per step so far. Set ``total_is_max`` when the work may stop
    before ``total`` steps, so the line marks the estimate as an upper bound.
    """

    def __init__(self, label: str, total: int, unit: str, enabled: bool = True, *,
                 interval: float = 5.0, stream: TextIO | None = None, total_is_max: bool = False):
        self.label = label
        self.total = int(total)
        self.unit = unit
        self.enabled = enabled
        self.interval = interval
        self.stream = stream if stream is not None else sys.stderr
        self.total_is_max = total_is_max
        self.start = time.perf_counter()
        self._last_print = -float("inf")

    def update(self, done: int) -> None:
        """Report that ``done`` of ``total`` steps are finished."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if done >= self.total or (done > 1 and now - self._last_print < self.interval):
            return
        self._last_print = now
        elapsed = now - self.start
        left = elapsed / done * (self.total - done)
        line = f"{self.label}: {done}/{self.total} {self.unit}, {elapsed:.1f} s elapsed, about {left:.0f} s left"
        if self.total_is_max:
            line += " at most"
        print(line, file=self.stream, flush=True)

    def finish(self, done: int) -> None:
        """Print the final line, also when the work stopped before ``total`` steps."""
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        print(f"{self.label}: finished after {done} {self.unit}, {elapsed:.1f} s", file=self.stream, flush=True)
