"""The drain's link gate: who may transfer beside whom, and which moves had their
link alone (only those say what one stream reaches)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from ferry.clock import SystemClock
from ferry.domain.models import Event, Migration, MigrationState, Sample
from ferry.domain.vocab import EventKind
from ferry.service.drain_gate import LinkGate
from ferry.service.drain_store import DrainStore
from ferry.service.migration_store import MigrationStore

MIB = 1 << 20
IDLE = {"link_bytes_s": 48 * MIB, "stream_bytes_s": None, "memory_mib": 256,
        "nonzero_bytes": 100 * MIB, "dirty_bytes_s": 0, "wss_bytes": MIB, "limit_s": 0.3,
        "cpu_bound": 0.0, "overhead_s": 1.5, "setup_s": 1.0, "finish_s": 1.0}


class _Drains:
    """One drain's stored moves, as DrainStore.get returns them."""

    def __init__(self, moves: list[dict[str, Any]], request: dict[str, Any]) -> None:
        self.moves, self.request = moves, request

    def get(self, did: int) -> dict[str, Any]:
        return {"id": did, "host": "a", "request": self.request, "moves": self.moves}


class _Jobs:
    """One running migration's record and newest sample, as MigrationStore gives them."""

    def __init__(self, sample: Sample) -> None:
        self.mig = Migration(7, "h", "a", "b", MigrationState.RUNNING)
        self.sample = sample

    def get(self, mid: int) -> Migration:
        return self.mig

    def last_sample(self, mid: int, pending: bool = False) -> Sample:
        return self.sample


def _gate(moves: list[dict[str, Any]], jobs: _Jobs | None = None, **request: Any
          ) -> LinkGate:
    req = {"link_mib_s": 48, "transfers": None, **request}
    return LinkGate(cast(DrainStore, _Drains(moves, req)), cast(MigrationStore, jobs),
                    SystemClock())


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


def test_a_dirtier_between_rounds_keeps_the_link_until_it_has_sent_all() -> None:
    """Each pre-copy round ends with nothing remaining until the bitmap sync: such a
    sample is not the job leaving; its `sent` event is."""
    heavy = {**IDLE, "dirty_bytes_s": 40 * MIB, "wss_bytes": 128 * MIB,
             "nonzero_bytes": 200 * MIB}
    round_end = Sample(t_ms=9000, iteration=2, memory_total_bytes=256 * MIB,
                       memory_processed_bytes=300 * MIB, memory_remaining_bytes=0,
                       dirty_rate_bytes_s=40 * MIB, bandwidth_bytes_s=48 * MIB)
    jobs = _Jobs(round_end)
    moves = [{"vm": "h", "to": "b", "state": "running", "migration": 7, "model": heavy},
             {"vm": "i", "to": "c", "state": "running", "migration": None, "model": IDLE}]
    gate = _gate(moves, jobs)
    assert gate.ready(1, "h", "a")()
    ask = gate.ready(1, "i", "a")
    assert not ask()
    jobs.mig.events.append(Event(datetime.now(UTC), EventKind.SENT, "memory sent"))
    assert ask()


def test_the_plans_transfers_per_link_hold_and_one_while_planning_where_a_stream_fills_it(
        ) -> None:
    """Two idle guests that may share: not when the plan chose one transfer at a time,
    nor while the drain is still planning (no choice stored yet) where one stream
    fills the link; they do where one stream reaches only half of it."""
    def moves(stream: float | None) -> list[dict[str, Any]]:
        return [{"vm": v, "to": "b", "state": "running", "migration": None,
                 "model": {**IDLE, "stream_bytes_s": stream}} for v in ("x", "y")]
    one = _gate(moves(None), transfers=1)
    assert one.ready(1, "x", "a")() and not one.ready(1, "y", "a")()
    planning = _gate(moves(None))
    del cast(_Drains, planning.drains).request["transfers"]
    assert planning.ready(1, "x", "a")() and not planning.ready(1, "y", "a")()
    slow = _gate(moves(24 * MIB))
    del cast(_Drains, slow.drains).request["transfers"]
    assert slow.ready(1, "x", "a")() and slow.ready(1, "y", "a")()


def test_a_busy_source_whose_streams_do_not_add_up_moves_one_at_a_time_while_planning(
        ) -> None:
    """One stream reaches half the link, but the host's CPUs are busy: two streams
    would reach together what one does (the plan stored it), so a second early move
    waits for the first."""
    moves = [{"vm": v, "to": "b", "state": "running", "migration": None,
              "model": {**IDLE, "stream_bytes_s": 24 * MIB, "together_bytes_s": 25 * MIB}}
             for v in ("x", "y")]
    busy = _gate(moves)
    del cast(_Drains, busy.drains).request["transfers"]
    assert busy.ready(1, "x", "a")() and not busy.ready(1, "y", "a")()


def test_a_move_ready_first_does_not_pass_an_earlier_one_waiting_for_the_link() -> None:
    """One transfer at a time: x transfers; y (earlier in the plan) and z both wait.
    When x leaves, z asks first but y may go: z waits, y takes the link, then z."""
    moves = [{"vm": v, "to": "b", "state": "running", "migration": None, "model": IDLE,
              "order": i} for i, v in enumerate(("x", "y", "z"))]
    gate = _gate(moves, transfers=1)
    assert gate.ready(1, "x", "a")()
    y, z = gate.ready(1, "y", "a"), gate.ready(1, "z", "a")
    assert not y() and not z()  # both wait behind x
    gate.release("x", "a")
    assert not z()  # y is earlier and may go now
    assert y() and not z()
    gate.release("y", "a")
    assert z()
