"""Virtual time: it passes only when someone sleeps, and runs what was scheduled.

`call_at(t, fn)` is how a test makes something happen mid-migration (cancel
at 3 s, kill the destination at 5 s): when a sleep crosses `t`, the clock
stops there, runs `fn`, then goes on.  With `InlineExecutor`, a whole
migration runs in the caller's thread, so the same inputs always give the
same events at the same virtual times.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from datetime import UTC, datetime, timedelta
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class SimClock:
    def __init__(self, start: datetime = EPOCH) -> None:
        self.t = 0.0
        self._start = start
        self._due: list[tuple[float, int, Callable[[], object]]] = []
        self._seq = itertools.count()
        self._lock = threading.RLock()

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self.t)

    def call_at(self, t: float, fn: Callable[[], object]) -> None:
        """Run `fn` when virtual time reaches `t` (at once if it has)."""
        with self._lock:
            heapq.heappush(self._due, (t, next(self._seq), fn))
        if t <= self.t:
            self._run_due(self.t)

    def call_later(self, delay_s: float, fn: Callable[[], object]) -> None:
        self.call_at(self.t + delay_s, fn)

    def sleep(self, seconds: float) -> None:
        self.advance(max(seconds, 0.0))

    def advance(self, seconds: float) -> None:
        """Let time pass, stopping at each scheduled call on the way."""
        end = self.t + seconds
        self._run_due(end)
        self.t = max(self.t, end)

    def _run_due(self, until: float) -> None:
        while True:
            with self._lock:
                if not self._due or self._due[0][0] > until:
                    return
                t, _seq, fn = heapq.heappop(self._due)
                self.t = max(self.t, t)
            fn()


class InlineExecutor(Executor):
    """Runs each submitted call at once, in the caller's thread (deterministic)."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        f: Future[T] = Future()
        try:
            f.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            f.set_exception(exc)
            raise
        return f

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        return None
