"""The generic connection layer: one libvirt connection per host URI.

Opened lazily, reopened when dead.  No host can hold a caller for long:
- opening runs in a thread of its own and is waited for at most
  CONNECT_TIMEOUT_S (`libvirt.open` has no timeout: a daemon that accepts TCP
  and never answers would block forever); one attempt per host at a time, so
  a hung host never piles up threads, and a late success is picked up;
- an open connection is kept alive with libvirt's keepalive (which needs the
  event loop started here): a daemon that stops answering is declared dead
  after about KEEPALIVE_INTERVAL_S x (KEEPALIVE_COUNT + 1) and every call
  waiting on it fails instead of hanging;
- keepalive does not always end a call (see answers.py): the questions that
  decide what happens next (`ask`) are also waited for at most READ_WITHIN_S.
libvirt errors are translated once, here, into `ferry.hypervisor.errors`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import libvirt

from ferry.hypervisor.answers import Answers
from ferry.hypervisor.errors import DomainNotFound, HostUnreachable, HypervisorError

T = TypeVar("T")
_event_loop_lock = threading.Lock()
_event_loop_started = False
CONNECT_TIMEOUT_S = 10.0
KEEPALIVE_INTERVAL_S = 3
KEEPALIVE_COUNT = 3
# keepalive's bound (3 s x (3 + 1)) and an open's (10 s) with room to spare
READ_WITHIN_S = 20.0


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


class _Opening:
    """One `libvirt.open` in a thread of its own; whoever waits may give up."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.done = threading.Event()
        self.conn: libvirt.virConnect | None = None
        self.error = ""
        threading.Thread(target=self._run, name=f"libvirt-open-{uri}", daemon=True).start()

    def _run(self) -> None:
        try:
            self.conn = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            self.error = exc.get_error_message()
        finally:
            self.done.set()


class LibvirtConnection:
    """A connection to one host's libvirtd.  Safe to share between threads."""

    def __init__(self, uri: str, *, keepalive_interval_s: int = KEEPALIVE_INTERVAL_S,
                 keepalive_count: int = KEEPALIVE_COUNT,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S):
        self.uri = uri
        self._conn: libvirt.virConnect | None = None
        self._opening: _Opening | None = None
        self._lock = threading.Lock()
        self._keepalive = (keepalive_interval_s, keepalive_count)
        self._connect_timeout_s = connect_timeout_s
        self._answers = Answers()

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
            if self._opening is None:
                self._opening = _Opening(self.uri)
            opening = self._opening
        # waited for outside the lock: other callers of this host wait on the same attempt
        if not opening.done.wait(self._connect_timeout_s):
            raise HostUnreachable(f"{self.uri}: no answer within "
                                  f"{self._connect_timeout_s:.0f} s")
        with self._lock:
            if self._opening is opening:
                self._opening = None
            if opening.conn is None:
                raise HostUnreachable(f"{self.uri}: {opening.error}")
            if self._conn is None:
                with contextlib.suppress(libvirt.libvirtError):
                    opening.conn.setKeepAlive(*self._keepalive)
                self._conn = opening.conn
            elif opening.conn is not self._conn:
                with contextlib.suppress(libvirt.libvirtError):
                    opening.conn.close()
            return self._conn

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

    def _ask(self, key: str, call: Callable[[], T]) -> T:
        """`call` (which uses this connection), waited for at most READ_WITHIN_S."""
        return self._answers.ask(f"{self.uri} {key}", call, READ_WITHIN_S)

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
