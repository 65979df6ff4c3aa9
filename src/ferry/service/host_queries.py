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

from collections.abc import Callable
from typing import Protocol, TypeVar

from ferry.hypervisor.answers import Answers
from ferry.hypervisor.errors import HypervisorError

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


class ThreadedQueries:
    def __init__(self) -> None:
        self._answers = Answers()

    def ask(self, calls: dict[str, Callable[[], T]], timeout_s: float = ANSWER_WITHIN_S
            ) -> dict[str, T | HypervisorError]:
        return self._answers.ask_all(calls, timeout_s)
