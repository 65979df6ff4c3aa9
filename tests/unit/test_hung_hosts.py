"""A daemon that accepts the connection and never answers cannot hold a caller.

Against a real listening socket on loopback that never replies (what a
SIGSTOPped libvirtd looks like from outside), with libvirt's own client."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from ferry.hypervisor.connection import LibvirtConnection
from ferry.hypervisor.errors import HostUnreachable
from ferry.service.host_queries import ThreadedQueries


@pytest.fixture
def silent_port() -> Iterator[int]:
    """Accepts TCP connections, reads nothing, answers nothing."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield int(srv.getsockname()[1])
    stop.set()
    t.join()
    for c in held:
        c.close()
    srv.close()


def test_connecting_to_a_silent_daemon_gives_up_and_never_piles_up(silent_port: int) -> None:
    conn = LibvirtConnection(f"qemu+tcp://127.0.0.1:{silent_port}/system",
                             connect_timeout_s=0.5)
    with pytest.raises(HostUnreachable, match="no answer within"):
        conn.conn()
    first = conn._opening
    with pytest.raises(HostUnreachable):
        conn.conn()
    assert conn._opening is first  # the same attempt is waited on, not a second one
    names = [t.name for t in threading.enumerate() if t.name.startswith("libvirt-open")]
    assert len(names) == 1


def test_parallel_queries_report_a_hung_host_and_do_not_ask_it_twice() -> None:
    release = threading.Event()
    q = ThreadedQueries()
    answers = q.ask({"ok": lambda: 1, "hung": lambda: release.wait(30)}, timeout_s=0.2)
    assert answers["ok"] == 1
    assert isinstance(answers["hung"], HostUnreachable)
    first = q._answers._pending["hung"]
    again = q.ask({"hung": lambda: 2}, timeout_s=0.2)  # the first call is still out
    assert isinstance(again["hung"], HostUnreachable)
    assert q._answers._pending["hung"] is first  # waited on, not asked a second time
    release.set()
    assert q.ask({"hung": lambda: 3}, timeout_s=5) == {"hung": True}  # its answer, shared
    assert q.ask({"hung": lambda: 3}, timeout_s=5) == {"hung": 3}  # then a fresh question


def test_a_read_that_never_returns_is_given_up_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keepalive does not always end a call on a stopped daemon (answers.py): the
    reads that decide what happens next stop waiting anyway, and are asked once."""
    monkeypatch.setattr("ferry.hypervisor.connection.READ_WITHIN_S", 0.2)
    conn = LibvirtConnection("qemu+tcp://127.0.0.1:1/system")
    release, calls = threading.Event(), []

    def hung() -> int:
        calls.append(1)
        release.wait(30)
        return 7

    for _ in range(2):
        with pytest.raises(HostUnreachable, match="domain vm1: no answer within"):
            conn._ask("domain vm1", hung)
    assert len(calls) == 1
    release.set()
    assert conn._ask("domain vm1", hung) == 7
