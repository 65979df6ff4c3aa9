"""Time, passed in rather than read from a global.

The migration engine waits between samples, measures timeouts and stamps
records through a `Clock`.  `SystemClock` is the real one; the simulated
cluster (`ferry.simulated`) brings a virtual clock that advances only when
someone sleeps on it, so a 60 s migration is tested in milliseconds and
always the same way.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for durations and deadlines)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Let `seconds` pass."""
        ...

    def now(self) -> datetime:
        """The wall-clock time, timezone-aware (for records people read)."""
        ...


class SystemClock:
    """The machine's clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def now(self) -> datetime:
        return datetime.now(UTC)
