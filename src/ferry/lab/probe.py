"""The lab's network probe: a client outside every host that talks to each guest.

Runs (one per lab) in its own namespace on the guests' segment, like a client
of the guest would.  Every lab guest whose kernel command line carries
`ferry.net=ADDR/PREFIX` (the lab gave its NIC that address) gets, every
10 ms, a numbered UDP datagram that the guest echoes, and a numbered 8-byte
record on one TCP connection the probe keeps open, echoed back in order.
Arrival times go to `net/<vm>.net` in the lab directory, one line each:

    <ns> U <seq>          a UDP echo came back
    <ns> S <seq>          every 100th UDP datagram sent (the probe was sending)
    <ns> C                the TCP connection is up (its records count from 0)
    <ns> T <seq>          a TCP record came back
    <ns> X <want> <got>   a TCP record came back out of order or damaged
    <ns> R <why>          an established TCP connection broke (reset, eof)
    <ns> N <addr>         the probe started talking to this guest (a new one of
                          that name, or one whose address changed)

Guests are found the way the console logger finds them: from the status XML
of the domains every lab host's libvirtd runs (`run-libvirt/qemu/*.xml`).
"""

from __future__ import annotations

import contextlib
import errno
import re
import selectors
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from ferry.lab.procs import StopFlag

TICK_NS = 10_000_000
ECHO_PORT = 7
SCAN_EVERY_NS = 500_000_000
GONE_AFTER_NS = 5_000_000_000  # a guest on no host for this long is dropped
RECONNECT_NS = 500_000_000
CONNECT_TIMEOUT_NS = 2_000_000_000
_NET = re.compile(rb"ferry\.net=([0-9.]+)/[0-9]+")
_REC = struct.Struct("!Q")


def net_dir(lab: Path) -> Path:
    return lab / "net"


def scan(lab: Path) -> dict[str, str]:
    """vm -> address for every running lab guest that has one."""
    found: dict[str, str] = {}
    for xml in lab.glob("hosts/*/run-libvirt/qemu/*.xml"):
        try:
            m = _NET.search(xml.read_bytes())
        except OSError:
            continue  # removed while we looked
        if m:
            found[xml.stem] = m.group(1).decode()
    return found


class Target:
    """One guest: its UDP socket, its TCP connection and its log."""

    def __init__(self, vm: str, addr: str, out: Path, sel: selectors.BaseSelector) -> None:
        self.vm, self.addr, self.sel = vm, addr, sel
        self.log = open(out, "ab", buffering=0)  # noqa: SIM115 - closed in close()
        self.lines: list[bytes] = []
        self.note(f"N {addr}")
        # a guest that reuses a deleted guest's address has another MAC: forget the old
        # one rather than wait for the neighbour entry to go stale
        subprocess.run(["ip", "neigh", "flush", "to", addr], check=False,
                       capture_output=True)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.setblocking(False)
        self.udp.connect((addr, ECHO_PORT))
        sel.register(self.udp, selectors.EVENT_READ, (self, "udp"))
        self.udp_seq = 0
        self.tcp: socket.socket | None = None
        self.connected = False
        self.connect_at = 0  # when the next attempt may start
        self.connect_started = 0
        self.tcp_seq = self.tcp_want = 0
        self.outbuf = b""
        self.inbuf = b""
        self.last_seen = time.monotonic_ns()

    def note(self, text: str) -> None:
        self.lines.append(f"{time.time_ns()} {text}\n".encode())

    def flush(self) -> None:
        if self.lines:
            self.log.write(b"".join(self.lines))
            self.lines.clear()

    # -- every tick ----------------------------------------------------------------
    def tick(self, now: int) -> None:
        with contextlib.suppress(OSError):  # ICMP unreachable: it shows as no reply
            self.udp.send(_REC.pack(self.udp_seq))
        if self.udp_seq % 100 == 0:
            self.note(f"S {self.udp_seq}")
        self.udp_seq += 1
        if self.tcp is None and now >= self.connect_at:
            self._connect(now)
        elif self.tcp is not None and not self.connected:
            if now - self.connect_started > CONNECT_TIMEOUT_NS:
                self._drop(now, None)
        elif self.tcp is not None:
            self.outbuf += _REC.pack(self.tcp_seq)
            self.tcp_seq += 1
            self._send(now)

    def _connect(self, now: int) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rc = s.connect_ex((self.addr, ECHO_PORT))
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            self.connect_at = now + RECONNECT_NS
            return
        self.tcp, self.connected, self.connect_started = s, False, now
        self.sel.register(s, selectors.EVENT_WRITE, (self, "tcp"))

    def _send(self, now: int) -> None:
        assert self.tcp is not None
        try:
            sent = self.tcp.send(self.outbuf)
            self.outbuf = self.outbuf[sent:]
        except BlockingIOError:
            pass  # the socket buffer is full (guest paused): TCP keeps it
        except OSError as exc:
            self._drop(now, f"send {errno.errorcode.get(exc.errno or 0, exc)}")

    def _drop(self, now: int, why: str | None) -> None:
        """Close the TCP connection; `why` is logged when an established one broke."""
        if self.tcp is not None:
            self.sel.unregister(self.tcp)
            self.tcp.close()
        if why is not None and self.connected:
            self.note(f"R {why}")
        self.tcp, self.connected, self.outbuf, self.inbuf = None, False, b"", b""
        self.connect_at = now + RECONNECT_NS

    # -- when a socket is ready ------------------------------------------------------
    def ready(self, which: str, sock: object, now: int) -> None:
        if which == "tcp" and sock is not self.tcp:
            return  # closed earlier in this round
        if which == "udp":
            self._read_udp()
        elif self.tcp is not None and not self.connected:
            err = self.tcp.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._drop(now, None)  # refused / unreachable: not a broken connection
                return
            self.connected, self.tcp_seq, self.tcp_want = True, 0, 0
            self.sel.modify(self.tcp, selectors.EVENT_READ, (self, "tcp"))
            self.note("C")
        else:
            self._read_tcp(now)

    def _read_udp(self) -> None:
        while True:
            try:
                data = self.udp.recv(64)
            except (BlockingIOError, ConnectionRefusedError):
                return
            except OSError:
                return
            if len(data) == _REC.size:
                self.note(f"U {_REC.unpack(data)[0]}")

    def _read_tcp(self, now: int) -> None:
        assert self.tcp is not None
        try:
            data = self.tcp.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            self._drop(now, errno.errorcode.get(exc.errno or 0, "error").lower())
            return
        if not data:
            self._drop(now, "eof")
            return
        self.inbuf += data
        n = len(self.inbuf) // _REC.size
        for i in range(n):
            got = _REC.unpack_from(self.inbuf, i * _REC.size)[0]
            self.note(f"T {got}" if got == self.tcp_want else f"X {self.tcp_want} {got}")
            self.tcp_want = got + 1
        self.inbuf = self.inbuf[n * _REC.size:]

    def close(self) -> None:
        self.sel.unregister(self.udp)
        self.udp.close()
        if self.tcp is not None:
            self.sel.unregister(self.tcp)
            self.tcp.close()
        self.flush()
        self.log.close()


def serve(lab: Path) -> None:
    sel = selectors.DefaultSelector()
    targets: dict[str, Target] = {}
    stop = StopFlag()
    out = net_dir(lab)
    out.mkdir(exist_ok=True)
    next_tick = next_scan = time.monotonic_ns()
    while not stop.set:
        now = time.monotonic_ns()
        if now >= next_scan:
            next_scan = now + SCAN_EVERY_NS
            found = scan(lab)
            for vm, addr in found.items():
                t = targets.get(vm)
                if t is not None and t.addr != addr:
                    t.close()
                    t = None
                if t is None:
                    targets[vm] = t = Target(vm, addr, out / f"{vm}.net", sel)
                t.last_seen = now
            for vm in [v for v, t in targets.items() if now - t.last_seen > GONE_AFTER_NS]:
                targets.pop(vm).close()
        if now >= next_tick:
            next_tick += TICK_NS
            if next_tick < now:  # fell behind (the machine is busy): no burst
                next_tick = now + TICK_NS
            for t in list(targets.values()):
                t.tick(now)
        timeout = max(0.0, (next_tick - time.monotonic_ns()) / 1e9)
        for key, _ev in sel.select(timeout=timeout):
            target, which = key.data
            target.ready(which, key.fileobj, time.monotonic_ns())
        for t in targets.values():
            t.flush()
    for t in targets.values():
        t.close()


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
