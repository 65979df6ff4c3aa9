"""Questions to a host that may never answer, waited for a bounded time.

libvirt's keepalive is meant to end every call on a daemon that stopped
answering, but it does not always (measured: with the destination's libvirtd
SIGSTOPped, a `virDomainLookupByName` on the controller's connection waited
in poll() without a timeout until the daemon came back, minutes later).  So
the questions whose answers decide what happens next (the host's figures,
where is the domain, how is its job doing) run in a thread of their own and the asker stops
waiting at a deadline: the host is then `HostUnreachable`.  A question still
outstanding (same key) is not asked again but waited on and its answer
shared, so a hung daemon never piles up threads and concurrent askers agree.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from ferry.hypervisor.errors import HostUnreachable, HypervisorError

T = TypeVar("T")


class Pending(Generic[T]):
    """One question on its way, in a daemon thread."""

    def __init__(self, key: str, call: Callable[[], T]) -> None:
        self.key = key
        self.done = threading.Event()
        self._result: T | None = None
        self._error: HypervisorError | None = None
        self._call = call
        threading.Thread(target=self._run, daemon=True, name=f"ferry-ask-{key}").start()

    def _run(self) -> None:
        try:
            self._result = self._call()
        except HypervisorError as exc:
            self._error = exc
        except Exception as exc:  # a bug: reported like a failed host, not lost
            self._error = HypervisorError(f"{type(exc).__name__}: {exc}")
        finally:
            self.done.set()

    def result(self, wait_s: float, said_s: float | None = None) -> T:
        """The answer, or HostUnreachable if none came within `wait_s` (the message
        names `said_s`, the asker's whole deadline, when it differs)."""
        if not self.done.wait(max(0.0, wait_s)):
            raise HostUnreachable(f"{self.key}: no answer within "
                                  f"{said_s if said_s is not None else wait_s:.0f} s")
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]


class Answers:
    """Questions by key; one outstanding per key."""

    def __init__(self) -> None:
        self._pending: dict[str, Pending[object]] = {}
        self._lock = threading.Lock()

    def start(self, key: str, call: Callable[[], T]) -> Pending[T]:
        with self._lock:
            prev = self._pending.get(key)
            if prev is not None and not prev.done.is_set():
                return prev  # type: ignore[return-value]  # the same question, on its way
            p: Pending[T] = Pending(key, call)
            self._pending[key] = p  # type: ignore[assignment]
            return p

    def ask(self, key: str, call: Callable[[], T], within_s: float) -> T:
        return self.start(key, call).result(within_s)

    def ask_all(self, calls: dict[str, Callable[[], T]], within_s: float
                ) -> dict[str, T | HypervisorError]:
        """Every question at once; each answer or its error, all within `within_s`."""
        asked = {key: self.start(key, call) for key, call in calls.items()}
        deadline = time.monotonic() + within_s
        out: dict[str, T | HypervisorError] = {}
        for key, p in asked.items():
            try:
                out[key] = p.result(deadline - time.monotonic(), within_s)
            except HypervisorError as exc:
                out[key] = exc
        return out
