"""The generic connection layer: one libvirt connection per host URI.

Opened lazily, reopened when dead, kept alive with libvirt's keepalive
(which needs the event loop started here), so a host that vanishes
mid-migration fails the job instead of hanging it.  libvirt errors are
translated once, here, into `ferry.hypervisor.errors`.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import libvirt

from ferry.hypervisor.errors import DomainNotFound, HostUnreachable, HypervisorError

_event_loop_lock = threading.Lock()
_event_loop_started = False


def _start_event_loop() -> None:
    """libvirt's keepalive only works with a running event loop; start one, once."""
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        libvirt.virEventRegisterDefaultImpl()

        def loop() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=loop, name="libvirt-events", daemon=True).start()
        _event_loop_started = True


class LibvirtConnection:
    """A connection to one host's libvirtd.  Safe to share between threads."""

    def __init__(self, uri: str, *, keepalive_interval_s: int = 5, keepalive_count: int = 3):
        self.uri = uri
        self._conn: libvirt.virConnect | None = None
        self._lock = threading.Lock()
        self._keepalive = (keepalive_interval_s, keepalive_count)

    def conn(self) -> libvirt.virConnect:
        _start_event_loop()
        with self._lock:
            if self._conn is not None:
                try:
                    if self._conn.isAlive():
                        return self._conn
                except libvirt.libvirtError:
                    pass
                self._close_locked()
            try:
                c = libvirt.open(self.uri)
            except libvirt.libvirtError as exc:
                raise HostUnreachable(f"{self.uri}: {exc.get_error_message()}") from exc
            with contextlib.suppress(libvirt.libvirtError):
                c.setKeepAlive(*self._keepalive)
            self._conn = c
            return c

    def _close_locked(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except libvirt.libvirtError as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: libvirt.libvirtError) -> HypervisorError:
        code = exc.get_error_code()
        if code == libvirt.VIR_ERR_NO_DOMAIN:
            return DomainNotFound(exc.get_error_message())
        if code in (libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_RPC,
                    libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_ERR_INVALID_CONN):
            self.close()
            return HostUnreachable(f"{self.uri}: {exc.get_error_message()}")
        return HypervisorError(exc.get_error_message())

    def _dom(self, name: str) -> libvirt.virDomain:
        return self._call(self.conn().lookupByName, name)
