"""A libvirt migrate call in a thread of its own, and the domain events it hears
while it runs (job completed; the source guest stopped for the switchover).
Split from libvirt_driver.py."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

import libvirt

from ferry.hypervisor.errors import HypervisorError, MigrationJobError

# the figures libvirt's job-completed event carried, by (source URI, domain): after
# post-copy the domain is gone from the source and the destination keeps none
COMPLETED: dict[tuple[str, str], dict[str, Any]] = {}
EVENT_WAIT_S = 2.0


class Once:
    """Something that happens once, heard from the event loop's thread; the callback
    may be given before or after it does."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._happened = False
        self._fn: Callable[[], None] | None = None

    def happened(self) -> None:
        with self._lock:
            if self._happened:
                return
            self._happened, fn = True, self._fn
        if fn is not None:
            fn()

    def then(self, fn: Callable[[], None]) -> None:
        with self._lock:
            self._fn, now = fn, self._happened
        if now:
            fn()


class CompletedEvent:
    """libvirt's job-completed event for one domain while its migrate call runs (the
    event loop thread delivers it, possibly just after the call returns), and its
    suspended-for-migration event (`stopped`: pre-copy's switchover begins)."""

    def __init__(self, conn: libvirt.virConnect, dom: libvirt.virDomain,
                 stopped: Once | None = None) -> None:
        self.conn, self.params = conn, dict[str, Any]()
        self.arrived = threading.Event()
        self.stopped = stopped
        self.cbs: list[int] = []
        with contextlib.suppress(libvirt.libvirtError):
            self.cbs.append(conn.domainEventRegisterAny(
                dom, libvirt.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED, self._on, None))
        if stopped is not None:
            with contextlib.suppress(libvirt.libvirtError):
                self.cbs.append(conn.domainEventRegisterAny(
                    dom, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._lifecycle, None))

    def _on(self, _conn: Any, _dom: Any, params: dict[str, Any], _opaque: Any) -> None:
        self.params = dict(params)
        self.arrived.set()

    def _lifecycle(self, _conn: Any, _dom: Any, event: int, detail: int, _opaque: Any) -> None:
        if self.stopped is not None and event == libvirt.VIR_DOMAIN_EVENT_SUSPENDED \
                and detail == libvirt.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED:
            self.stopped.happened()

    def close(self, *, wait: bool) -> dict[str, Any]:
        """Stop listening (after waiting a little for the event, if the job completed)."""
        if not self.cbs:
            return {}
        if wait:
            self.arrived.wait(EVENT_WAIT_S)
        for cb in self.cbs:
            with contextlib.suppress(libvirt.libvirtError):
                self.conn.domainEventDeregisterAny(cb)
        return self.params


class ThreadJob:
    """A blocking libvirt migrate call running in a thread of its own."""

    def __init__(self, call: Callable[[], None], name: str, stopped: Once) -> None:
        self._error: MigrationJobError | None = None
        self._call, self._stopped = call, stopped
        self._thread = threading.Thread(target=self._run, name=f"migrate-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._call()
        except MigrationJobError as exc:
            self._error = exc
        except HypervisorError as exc:
            self._error = MigrationJobError(str(exc))

    def wait(self, timeout_s: float) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    @property
    def error(self) -> MigrationJobError | None:
        return self._error

    def when_stopped(self, fn: Callable[[], None]) -> None:
        self._stopped.then(fn)
