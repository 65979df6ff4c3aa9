"""Asking every host at once, waiting a bounded time: one host that does not answer
delays nothing by more than the deadline and blocks nobody.

`ThreadedQueries` asks each host in a thread of its own and stops waiting at
the deadline; a question still outstanding from an earlier caller (same key:
the same question) is not asked again but waited on and its answer shared, so
a hung daemon never piles up threads and concurrent requests agree.
`InlineQueries` asks one after another in the caller's thread: what the
simulated cluster's deterministic tests use (its hung hosts cost virtual time).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from ferry.hypervisor.errors import HostUnreachable, HypervisorError

T = TypeVar("T")
ANSWER_WITHIN_S = 12.0  # above the connect timeout (10 s): a slow open still counts


class HostQueries(Protocol):
    def ask(self, calls: dict[str, Callable[[], T]], timeout_s: float = ANSWER_WITHIN_S
            ) -> dict[str, T | HypervisorError]: ...


class InlineQueries:
    def ask(self, calls: dict[str, Callable[[], T]], timeout_s: float = ANSWER_WITHIN_S
            ) -> dict[str, T | HypervisorError]:
        out: dict[str, T | HypervisorError] = {}
        for name, call in calls.items():
            try:
                out[name] = call()
            except HypervisorError as exc:
                out[name] = exc
        return out


class _Pending:
    def __init__(self, call: Callable[[], object]) -> None:
        self.done = threading.Event()
        self.result: object = None
        self.error: HypervisorError | None = None
        self._call = call
        threading.Thread(target=self._run, daemon=True, name="ferry-host-query").start()

    def _run(self) -> None:
        try:
            self.result = self._call()
        except HypervisorError as exc:
            self.error = exc
        except Exception as exc:  # a bug: reported like a failed host, not lost
            self.error = HypervisorError(f"{type(exc).__name__}: {exc}")
        finally:
            self.done.set()


class ThreadedQueries:
    def __init__(self) -> None:
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()

    def ask(self, calls: dict[str, Callable[[], T]], timeout_s: float = ANSWER_WITHIN_S
            ) -> dict[str, T | HypervisorError]:
        asked: dict[str, _Pending] = {}
        out: dict[str, T | HypervisorError] = {}
        with self._lock:
            for name, call in calls.items():
                prev = self._pending.get(name)
                if prev is not None and not prev.done.is_set():
                    asked[name] = prev  # the same question, already on its way
                    continue
                asked[name] = self._pending[name] = _Pending(call)
        deadline = time.monotonic() + timeout_s
        for name, p in asked.items():
            if not p.done.wait(max(0.0, deadline - time.monotonic())):
                out[name] = HostUnreachable(f"{name}: no answer within {timeout_s:.0f} s")
            elif p.error is not None:
                out[name] = p.error
            else:
                out[name] = p.result  # type: ignore[assignment]
        return out
