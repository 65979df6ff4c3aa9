"""The drain's link gate: who may transfer beside whom, and which moves had their
link alone (only those say what one stream reaches)."""

from __future__ import annotations

from typing import Any, cast

from ferry.clock import SystemClock
from ferry.service.drain_gate import LinkGate
from ferry.service.drain_store import DrainStore
from ferry.service.migration_store import MigrationStore

MIB = 1 << 20
IDLE = {"link_bytes_s": 48 * MIB, "stream_bytes_s": None, "memory_mib": 256,
        "nonzero_bytes": 100 * MIB, "dirty_bytes_s": 0, "wss_bytes": MIB, "limit_s": 0.3,
        "cpu_bound": 0.0, "overhead_s": 1.5, "setup_s": 1.0, "finish_s": 1.0}


class _Drains:
    """One drain's stored moves, as DrainStore.get returns them."""

    def __init__(self, moves: list[dict[str, Any]]) -> None:
        self.moves = moves

    def get(self, did: int) -> dict[str, Any]:
        return {"id": did, "host": "a", "request": {"link_mib_s": 48}, "moves": self.moves}


def _gate(moves: list[dict[str, Any]]) -> LinkGate:
    return LinkGate(cast(DrainStore, _Drains(moves)), cast(MigrationStore, None), SystemClock())


def test_a_move_alone_on_its_link_says_so_and_two_sharing_do_not() -> None:
    moves = [{"vm": v, "to": "b", "state": "running", "migration": None, "model": IDLE}
             for v in ("x", "y", "z")]
    gate = _gate(moves)
    assert gate.ready(1, "x", "a")()  # alone: let through at once
    assert gate.release("x", "a") is True
    assert gate.ready(1, "x", "a")() and gate.ready(1, "y", "a")()  # two idle guests share
    assert gate.release("x", "a") is False and gate.release("y", "a") is False
    assert gate.ready(1, "z", "a")()
    assert gate.release("z", "a") is True  # a later move alone again
    assert gate.release("w", "a") is False  # never let through here (a restart)


def test_a_heavy_dirtier_holds_the_link_until_it_leaves() -> None:
    heavy = {**IDLE, "dirty_bytes_s": 40 * MIB, "wss_bytes": 128 * MIB,
             "nonzero_bytes": 200 * MIB}
    moves = [{"vm": "h", "to": "b", "state": "running", "migration": None, "model": heavy},
             {"vm": "i", "to": "c", "state": "running", "migration": None, "model": IDLE}]
    gate = _gate(moves)
    ask = gate.ready(1, "i", "a")
    assert gate.ready(1, "h", "a")()
    assert not ask() and not ask()  # staged meanwhile
    gate.release("h", "a")
    assert ask() and ask()  # on the link now; asking again changes nothing
    assert gate.release("i", "a") is True
