"""A plain-text progress line on stderr: points done out of total, elapsed time and time left."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_duration(seconds: float) -> str:
    """Format seconds as H:MM:SS."""
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


class Progress:
    """Report progress of ``total`` points, of which ``done`` are finished before the first update.

    The estimate of time left uses only the points computed since this object was made, so
    points reused from a resumed file do not make it optimistic. On a terminal the line is
    rewritten in place at most every ``interval`` seconds. Otherwise, as in a log file, one line
    is written at most every ``10 * interval`` seconds. ``enabled=False`` writes nothing.
    """

    def __init__(
        self,
        label: str,
        total: int,
        done: int = 0,
        enabled: bool = True,
        stream: TextIO | None = None,
        interval: float = 1.0,
    ) -> None:
        self.label = label
        self.total = total
        self.done = done
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self._skipped = done
        self._start = time.monotonic()
        self._last_write = float("-inf")
        self._written_width = 0
        self._is_terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self._interval = interval if self._is_terminal else 10 * interval

    def advance(self, count: int = 1) -> None:
        self.done += count
        if time.monotonic() - self._last_write >= self._interval:
            self._write()

    def close(self) -> None:
        """Write the final line."""
        self._write(final=True)

    def line(self) -> str:
        elapsed = time.monotonic() - self._start
        computed = self.done - self._skipped
        if computed > 0 and self.done < self.total:
            left = format_duration(elapsed / computed * (self.total - self.done))
        elif self.done >= self.total:
            left = format_duration(0)
        else:
            left = "unknown"
        return f"{self.label}: {self.done}/{self.total} points, elapsed {format_duration(elapsed)}, ETA {left}"

    def _write(self, final: bool = False) -> None:
        if not self.enabled:
            return
        self._last_write = time.monotonic()
        if self._is_terminal:
            # pad with spaces so a shorter line fully covers the previous one
            text = self.line()
            self.stream.write("\r" + text.ljust(self._written_width) + ("\n" if final else ""))
            self._written_width = len(text)
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()
