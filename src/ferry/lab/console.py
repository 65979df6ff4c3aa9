"""The lab's console logger: reads every guest's heartbeat port, timestamps lines.

Each guest's ttyS1 is a unix socket that its QEMU creates on the host it runs
on.  This process (one per lab, in the root namespace) watches every host's
console directory, connects to each new socket within ~20 ms (including the
one a destination QEMU creates for an incoming migration, before the guest
resumes there) and appends `<arrival unix ns> <line>` to `<vm>.hb` beside it.
Arrival times on the host are the only honest measure of the pause a guest
went through: the guest's own clock stops while it is paused.
"""

from __future__ import annotations

import selectors
import socket
import sys
import time
from pathlib import Path
from typing import BinaryIO

from ferry.lab.procs import StopFlag

SCAN_INTERVAL_S = 0.02


class _Stream:
    def __init__(self, sock: socket.socket, out: BinaryIO) -> None:
        self.sock = sock
        self.out = out
        self.partial = b""


def _scan(lab: Path) -> list[Path]:
    return sorted(lab.glob("hosts/*/var-lib-libvirt/ferry-console/*.sock"))


def serve(lab: Path) -> None:
    sel = selectors.DefaultSelector()
    streams: dict[Path, _Stream] = {}
    stop = StopFlag()
    next_scan = 0.0
    while not stop.set:
        now = time.monotonic()
        if now >= next_scan:
            next_scan = now + SCAN_INTERVAL_S
            for path in _scan(lab):
                if path in streams:
                    continue
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(str(path))
                except OSError:
                    s.close()
                    continue
                s.setblocking(False)
                out = open(path.with_suffix(".hb"), "ab", buffering=0)  # noqa: SIM115
                streams[path] = _Stream(s, out)
                sel.register(s, selectors.EVENT_READ, path)
        for key, _ in sel.select(timeout=SCAN_INTERVAL_S):
            path = key.data
            st = streams[path]
            try:
                data = st.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(st.sock)
                st.sock.close()
                st.out.close()
                del streams[path]
                continue
            stamp = str(time.time_ns()).encode()
            chunk = st.partial + data
            *lines, st.partial = chunk.split(b"\n")
            if lines:
                st.out.write(b"".join(stamp + b" " + ln.rstrip(b"\r") + b"\n" for ln in lines))
    for st in streams.values():
        st.sock.close()
        st.out.close()


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
