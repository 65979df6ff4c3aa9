"""The migration stream is encrypted between the lab's hosts (each has QEMU
migration certificates of the lab's CA): a capture of everything the source host
sends holds none of the guest's known memory contents, while the same move with
`--no-tls` shows them in clear (the control that proves the capture would see
them)."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tests.lab.conftest import Lab, ferry_json

MASK = (1 << 64) - 1


def pattern(page: int, gen: int, word: int) -> int:
    """What guest/workload.c writes in word `word` of working-set page `page`."""
    return ((page * 0x9E3779B97F4A7C15) ^ ((gen + 1) * 0xC2B2AE3D27D4EB4F)
            ^ (word * 0x165667B19E3779F9)) & MASK


# word 1 of 32 pages of the working set, never rewritten by an idle workload (gen 0)
MARKERS = [struct.pack("<Q", pattern(p, 0, 1)) for p in range(0, 4096, 128)]


@contextmanager
def capture(dev: str) -> Iterator[bytearray]:
    """Every frame through `dev` (a lab host's veth in the root namespace), raw."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    sock.bind((dev, 0))
    sock.settimeout(0.2)
    data = bytearray()
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                data.extend(sock.recv(262144))
            except TimeoutError:
                continue

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield data
    finally:
        stop.set()
        t.join()
        sock.close()


def _seen(data: bytearray) -> int:
    return sum(1 for m in MARKERS if m in data)


def test_the_stream_is_encrypted_and_in_clear_only_when_asked(
        lab: Lab, make_vm: Callable[..., str]) -> None:
    vm = make_vm("node1", memory=128, dirty=0, wss=16)
    with capture("fveth1") as sent:
        m = ferry_json("migrate", vm, "--to", "node2", "--wait")
    assert m["state"] == "completed" and m["encrypted"] is True, m
    assert len(sent) > 8 << 20  # the guest's memory went through: ~10+ MiB
    assert _seen(sent) == 0
    with capture("fveth2") as clear:
        back = ferry_json("migrate", vm, "--to", "node1", "--wait", "--no-tls")
    assert back["state"] == "completed" and back["encrypted"] is False, back
    assert _seen(clear) >= len(MARKERS) // 4  # in clear, the pattern is right there
    shown = ferry_json("migration", "show", str(m["id"]))
    assert shown["encrypted"] is True
    assert any("encrypted (TLS" in e["message"] for e in shown["events"])
    check = ferry_json("lab", "check", vm)
    assert check["boots"] == 1 and check["memory_errors"] == 0, check
