"""The drain's schedule (pure): who shares a link, who goes alone, overlap, ETA."""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

import pytest

from ferry.drain.model import DEFAULT_FINISH_S, Model, MoveSpec, quiet
from ferry.drain.schedule import (
    HANDOFF_S,
    SIDE_BY_SIDE_MARGIN_S,
    Active,
    Limits,
    best_plan,
    may_share,
    order,
    plan,
)
from ferry.predict.dirty import MIB, DirtyCurve
from ferry.predict.precopy import Guest
from ferry.service.drain_plan import model_of, streams_seen

LINK = 48 * MIB
LINKS = {"a": LINK, "b": LINK, "c": LINK}


def mv(vm: str, mem: int, nonzero: int, dirty: float = 0.0, wss: int = 1, to: str = "b",
       overhead: float = 3.0, finish: float = 0.0) -> MoveSpec:
    return MoveSpec(vm, "a", to, mem, Guest(mem * MIB, nonzero * MIB,
                                            DirtyCurve(dirty * MIB, wss * MIB)), 0.3,
                    overhead_s=overhead, finish_s=finish)


def _overlap(x: tuple[float, float], y: tuple[float, float]) -> float:
    return max(0.0, min(x[1], y[1]) - max(x[0], y[0]))


def test_quiet_guests_share_the_link_and_their_fixed_costs_overlap() -> None:
    moves = [mv(f"v{i}", 256, 128, to="bc"[i % 2], finish=1.0) for i in range(4)]
    model = Model(LINKS)
    s = plan(order(moves, model), LINKS, Limits(), 2, model=model)
    assert s.max_parallel["a"] == 2  # both converge at half the link
    # 512 MiB leave at 48 MiB/s; beyond that, with two under way at most (preparing
    # and settling included), each pair's preparation and finish
    physical = sum(x.prediction.transferred_bytes for x in s.slots) / LINK
    assert physical <= s.eta_s <= physical + 2 * (3.0 + 0.1 + 1.0) + 0.1


def test_one_migrations_own_rate_bounds_it_when_below_the_link() -> None:
    one = mv("v0", 256, 128)
    s = plan([one], LINKS, Limits(), 2, streams={"a": LINK / 2})
    slot = s.slots[0]
    assert abs((slot.end_s - slot.transfer_s) - 128 * MIB / (LINK / 2)) < 0.05


def test_a_heavy_dirtier_transfers_alone() -> None:
    heavy = mv("heavy", 256, 200, dirty=40, wss=128)
    idle = [mv(f"i{i}", 256, 100) for i in range(3)]
    model = Model(LINKS)
    assert not model.fits(heavy, LINK / 2) and model.fits(heavy, LINK)
    s = plan(order([*idle, heavy], model), LINKS, Limits(), 2, model=model)
    slots = {x.vm: x for x in s.slots}
    h = slots["heavy"]
    assert s.slots[0].vm == "heavy"  # longest first
    for x in s.slots:
        if x.vm != "heavy":
            assert _overlap((h.transfer_s, h.end_s), (x.transfer_s, x.end_s)) < 1e-6
    # the next one prepared during the heavy transfer, so the link did not idle
    nxt = min((x for x in s.slots if x.vm != "heavy"), key=lambda x: x.start_s)
    assert nxt.start_s < h.end_s and nxt.transfer_s >= h.end_s - 1e-6


def test_a_guest_that_never_converges_in_precopy_goes_alone_with_postcopy() -> None:
    wild = mv("wild", 256, 200, dirty=80, wss=200)
    model = Model(LINKS)
    assert model.alone(wild)
    s = plan(order([mv("x", 128, 64), wild], model), LINKS, Limits(), 2, model=model)
    w = next(x for x in s.slots if x.vm == "wild")
    assert w.alone and w.prediction.converges and "post-copy" in w.prediction.note


def test_limits_and_max_parallel_bound_what_runs_at_once() -> None:
    moves = [mv(f"v{i}", 128, 32, to="bc"[i % 2]) for i in range(6)]
    s = plan(moves, LINKS, Limits(per_source=4, per_destination=4, cluster=8), 1)
    spans = [(x.start_s, x.end_s) for x in s.slots]
    for i, a in enumerate(spans):
        for b in spans[i + 1:]:
            assert _overlap(a, b) < 1e-6  # one at a time from the source


def test_replanning_mid_drain_keeps_active_moves_and_starts_the_next_ahead() -> None:
    a, b = mv("a1", 256, 200), mv("b1", 256, 200)
    # a1 has 48 MiB left at 48 MiB/s: 1 s; b1 prepares 3 s, so it starts now
    active = [Active(a, 0.0, 3.0, 48 * MIB)]
    s = plan([b], LINKS, Limits(), 2, active, now=10.0)
    slot = {x.vm: x for x in s.slots}
    assert slot["b1"].start_s == 10.0
    assert abs(slot["a1"].end_s - 11.0) < 0.05
    assert s.eta_s > 3.0


def test_moves_that_have_sent_everything_never_hide_the_ones_still_to_start() -> None:
    """Lab: two quiet guests moved while the others were measured and had sent all
    (nothing left) when the plan was made; the schedule stopped there and the drain
    planned 2 moves of 6 (the other four were never moved)."""
    done = [Active(mv("q1", 320, 100), 0.0, 3.0, 0.0), Active(mv("q2", 128, 100, to="c"),
                                                                 0.5, 3.5, 0.0)]
    rest = [mv(f"m{i}", 256, 150, to="bc"[i % 2]) for i in range(4)]
    for k in (None, 1):
        s = plan(rest, LINKS, Limits(), 2, done, now=12.0, transfers=k)
        assert {x.vm for x in s.slots} == {"q1", "q2", "m0", "m1", "m2", "m3"}
        assert s.eta_s > 4 * 150 / 48  # the four transfers, one link
    _, best = best_plan(rest, Model(LINKS), Limits(), 2, done, now=12.0)
    assert len(best.slots) == 6


def test_a_move_frees_its_slot_at_its_last_byte_and_the_eta_counts_its_finish() -> None:
    """libvirt's finish and settling (`finish_s`) leave the link free and no longer
    count against the limits (the migration's `sent` event): with one slot the next
    move prepares from the previous one's last byte, and the ETA counts the last
    one's finish."""
    moves = [mv(f"v{i}", 256, 128, finish=1.0) for i in range(2)]
    s = plan(moves, LINKS, Limits(), 1)
    first, second = s.slots
    assert abs(second.start_s - (first.end_s - 1.0)) < 1e-6
    assert abs(s.eta_s - second.end_s) < 1e-6
    assert second.end_s - second.transfer_s > 128 * MIB / LINK + 0.99


def test_moves_from_several_sources_to_one_host() -> None:
    """A return: VMs on b and c all go back to a; a's inbound limit paces them."""
    moves = [MoveSpec(f"v{i}", "bc"[i % 2], "a", 256, Guest(256 * MIB, 128 * MIB,
                                                          DirtyCurve(0.0, MIB)), 0.3)
             for i in range(5)]
    s = plan(moves, LINKS, Limits(), 2)
    assert len(s.slots) == 5
    for t in [x.start_s for x in s.slots]:  # per destination, until each one's last byte
        assert sum(x.start_s <= t < x.end_s - DEFAULT_FINISH_S for x in s.slots) <= 2


def test_a_stream_measured_just_below_the_link_fills_it_at_the_rate_it_reached() -> None:
    """One stream seen at 93 % of the link: more at once would only split it (it fills
    the link), and a move alone goes at what it reached, not at the link's rate (lab:
    44-47 of 48 MiB/s, the shaper counting TCP/IP headers too)."""
    model = Model(LINKS, {"a": 0.93 * LINK})
    assert model.stream("a") == 0.93 * LINK and model.fills("a")
    assert model.share("a", 2) == LINK / 2
    half = Model(LINKS, {"a": 0.5 * LINK})
    assert half.stream("a") == 0.5 * LINK and not half.fills("a")


def test_alone_is_judged_at_what_one_stream_reaches_not_the_link() -> None:
    """A dirtier that would converge on the whole link, but not at the rate one
    migration from its host reaches, needs the link to itself; two idle guests then
    transfer side by side (one stream alone would leave half the link idle)."""
    heavy = mv("heavy", 256, 200, dirty=30, wss=128)
    idle = [mv(f"i{i}", 256, 100, to="bc"[i % 2]) for i in range(2)]
    full, half = Model(LINKS), Model(LINKS, {"a": LINK / 2})
    assert full.fits(heavy, LINK) and not full.alone(heavy)
    assert half.alone(heavy)
    s = plan(order(idle, half), LINKS, Limits(), 2, model=half)
    assert s.max_parallel["a"] == 2
    a, b = s.slots
    assert _overlap((a.transfer_s, a.end_s), (b.transfer_s, b.end_s)) > 1.0


def test_streams_that_do_not_add_up_are_not_planned_as_filling_the_link() -> None:
    """One stream reaches half the link.  On a host with CPUs to spare two streams
    fill it, and two idle guests transfer side by side; on a busy host (what the
    streams reach together is what one does) two at once each get a quarter: the
    plan and its ETA count that; side by side there gains only the fixed costs'
    overlap, under the margin it must win by, so one at a time is chosen."""
    idle = [mv(f"i{i}", 256, 100, to="bc"[i % 2], overhead=0.5) for i in range(4)]
    spare = Model(LINKS, {"a": LINK / 2})
    busy = Model(LINKS, {"a": LINK / 2}, {"a": LINK / 2})
    assert not spare.fills("a") and busy.fills("a")
    assert spare.share("a", 2) == LINK / 2 and busy.share("a", 2) == LINK / 4
    fast = best_plan(idle, spare, Limits(), 2)[1]
    slow = best_plan(idle, busy, Limits(), 2)[1]
    sent = sum(busy.predict(m, LINK / 2).transferred_bytes for m in idle)
    assert slow.eta_s >= sent / (LINK / 2)  # no faster than one stream's rate
    assert fast.eta_s < sent / (LINK / 2)  # two streams side by side beat it
    assert fast.transfers is None and slow.transfers == 1
    shared = plan(order(idle, busy), LINKS, Limits(), 2, model=busy)
    assert shared.eta_s < slow.eta_s < shared.eta_s + SIDE_BY_SIDE_MARGIN_S
    assert all(s.share_bytes_s <= LINK / 2 + 1 for s in shared.slots)
    assert any(s.share_bytes_s < LINK / 2 - 1 for s in shared.slots)  # two at once split
    # a stream near the link fills it: two at once split what the host's streams
    # reach together (lab, encrypted on busy CPUs: one at 40 of 48 MiB/s, two planned
    # at 24 each reached ~31 together); one alone goes at what it reached
    near = Model(LINKS, {"a": 0.83 * LINK}, {"a": 0.85 * LINK})
    assert near.stream("a") == 0.83 * LINK and near.together("a") == 0.85 * LINK
    assert near.share("a", 2) == 0.425 * LINK and near.fills("a")
    spare = Model(LINKS, {"a": 0.83 * LINK})  # CPUs to spare: two fill the link
    assert spare.stream("a") == 0.83 * LINK and spare.share("a", 2) == LINK / 2


def test_streams_seen_are_the_best_of_a_drains_completed_moves() -> None:
    moves = [{"vm": "x", "state": "completed", "reached_bytes_s": 20 * MIB},
             {"vm": "y", "state": "completed", "reached_bytes_s": 25 * MIB},
             {"vm": "z", "state": "running", "reached_bytes_s": None},
             {"vm": "w", "state": "failed", "reached_bytes_s": 100 * MIB, "source": "b"}]
    assert streams_seen(moves, "a") == {"a": 25 * MIB}
    moves[0]["reached_bytes_s"] = 50 * MIB
    assert streams_seen(moves, "a") == {"a": 50 * MIB}


def test_the_order_is_the_one_whose_simulated_drain_ends_soonest() -> None:
    """Two big and two small quiet guests, each move with seconds of fixed costs (the
    destination QEMU's start, libvirt's finish): longest-first starts the two big
    ones together, and both pairs' fixed costs leave the link idle; a big move
    beside a small one overlaps them.  The choice is never worse than longest-first."""
    def fixed(vm: str, nonzero: int, to: str) -> MoveSpec:
        return replace(mv(vm, 256, nonzero, to=to, overhead=0.3), setup_s=2.5, finish_s=2.0)

    for sizes in ([200, 200, 50, 50], [180, 225, 100, 110, 103, 97], [300, 60, 60, 60]):
        moves = [fixed(f"v{i}", n, "bc"[i % 2]) for i, n in enumerate(sizes)]
        for model in (Model(LINKS), Model(LINKS, {"a": LINK / 2})):
            lpt = plan(order(moves, model), LINKS, Limits(), 2, model=model).eta_s
            best, sched = best_plan(moves, model, Limits(), 2)
            assert sched.eta_s <= lpt + 1e-9
            assert plan(best, LINKS, Limits(), 2, model=model,
                        transfers=sched.transfers).eta_s == sched.eta_s
    moves = [fixed(f"v{i}", n, "bc"[i % 2]) for i, n in enumerate([200, 200, 50, 50])]
    model = Model(LINKS)
    best, sched = best_plan(moves, model, Limits(), 2, transfers=(None,))  # orders only
    assert [m.vm for m in best][:2] == ["v0", "v3"]  # a big one beside a small one
    assert sched.eta_s == plan(best, LINKS, Limits(), 2, model=model).eta_s
    assert plan(best, LINKS, Limits(), 2, model=model).eta_s < \
        plan(order(moves, model), LINKS, Limits(), 2, model=model).eta_s - 2.0


def test_one_transfer_at_a_time_when_the_next_ones_set_up_then_overlaps_it() -> None:
    """The lab's case: one stream fills the link, each move spends ~1 s in libvirt's
    set-up and ~1.2 s settling.  Two sharing the link hold both slots until both
    settle, so the next pair's set-up leaves the link idle; one at a time, the
    other slot prepares the next (its job staged) and the link hardly idles.  The
    plan picks that, and keeps to it: never two on the link at once.  Where one
    stream reaches half the link, two at once stay the choice."""
    moves = [replace(mv(f"v{i}", 256, 110, to="bc"[i % 2], overhead=0.3), setup_s=1.0,
                     finish_s=1.2) for i in range(6)]
    model = Model(LINKS)
    shared = best_plan(moves, model, Limits(), 2, transfers=(None,))[1]
    _, sched = best_plan(moves, model, Limits(), 2)
    assert sched.transfers == 1 and sched.eta_s < shared.eta_s
    spans = [(x.transfer_s, x.end_s - 1.2) for x in sched.slots]
    assert all(_overlap(a, b) < 1e-6 for i, a in enumerate(spans) for b in spans[i + 1:])
    starts = sorted(x.start_s for x in sched.slots)
    assert starts[1] < sched.slots[0].end_s  # the second prepared during the first
    half = Model(LINKS, {"a": LINK / 2})
    assert best_plan(moves, half, Limits(), 2)[1].transfers is None


def test_an_idle_guest_whose_kernel_rewrites_a_few_pages_is_quiet() -> None:
    """Measured on the lab: idle guests show 10-18 MB/s over a working set under 1 MB;
    the curve, not its first slope, says what round 2 will be (fails when quiet is
    judged on the rate)."""
    idle = Guest(192 * MIB, 98e6, DirtyCurve(10.9e6, 0.4e6))
    steady = Guest(256 * MIB, 94e6, DirtyCurve(5e6, 11.4e6))  # ~10 % of round 1 again
    assert quiet(idle, LINK / 2)
    assert not quiet(steady, LINK / 2)
    assert not quiet(Guest(256 * MIB, 94e6, DirtyCurve(3 * MIB)), LINK / 2)


def test_a_dirtier_near_its_convergence_edge_at_its_share_goes_alone() -> None:
    """The lab case: a 25 MB/s dirtier over 78 MB, at half of 48 MiB/s, took 1.5x as
    long and sent 2.5x its memory sharing: its rounds shrink too slowly (the model
    ends it in post-copy), so it does not fit at its share.  A 20 MB/s one over
    100 MB converges there in pre-copy, but the bytes it would add take the link far
    longer than the fixed costs sharing overlaps (fails when only convergence
    decides).  A moderate dirtier, whose extra bytes take under a second, shares;
    idle guests share."""
    def spec(vm: str, mem: int, nonzero: float, rate: float, wss: float) -> MoveSpec:
        return MoveSpec(vm, "a", "b", mem, Guest(mem * MIB, nonzero, DirtyCurve(rate, wss)),
                        0.3, setup_s=1.2, finish_s=1.5)
    lab = spec("dr4", 192, 172e6, 25.7e6, 78e6)
    dirtier = spec("dr7", 192, 172e6, 20e6, 100e6)
    moderate = spec("dr2", 256, 150e6, 12 * MIB, 64 * MIB)
    idle = spec("dr6", 192, 98e6, 0.0, 1e6)
    model = Model(LINKS)
    assert not model.fits(lab, LINK / 2) and model.fits(lab, LINK)
    assert not may_share(lab, [idle], model)
    assert model.fits(dirtier, LINK / 2) and not model.costs_little(dirtier, LINK / 2)
    assert not may_share(dirtier, [idle], model)
    assert may_share(moderate, [idle], model)
    assert may_share(mv("i1", 256, 100), [mv("i2", 256, 100)], model)


def test_the_live_model_skips_moves_still_being_measured() -> None:
    """Two quiet guests move while a third is measured: the gate reads the drain's
    model with one move that has none yet (lab: the second early move failed with
    KeyError 'model' before this)."""
    planned = {"link_bytes_s": LINK, "stream_bytes_s": LINK / 2}
    moves = [{"vm": "q1", "to": "b", "state": "running", "model": planned},
             {"vm": "q2", "to": "c", "state": "pending", "model": planned},
             {"vm": "d1", "to": "b", "state": "measuring"}]
    model = model_of(moves, "a", None)
    assert model.links == {"a": LINK, "b": LINK, "c": LINK}
    assert model.stream("a") == LINK / 2


def test_a_move_held_at_its_gate_transfers_a_handoff_after_the_one_before() -> None:
    """One transfer at a time: the next move's job, staged, goes HANDOFF_S after the
    one before leaves its link (the runner sees `sent` at a sample, the gate releases
    at the next: lab, 0.4-0.7 s each time); the ETA counts it (fails without)."""
    moves = [replace(mv(f"v{i}", 256, 110, to="bc"[i % 2], overhead=0.3), setup_s=1.0,
                     finish_s=1.2) for i in range(3)]
    sched = plan(moves, LINKS, Limits(), 2, model=Model(LINKS), transfers=1)
    spans = sorted((x.transfer_s, x.end_s - 1.2) for x in sched.slots)
    for (_, end), (nxt, _) in pairwise(spans):
        assert nxt == pytest.approx(end + HANDOFF_S) and nxt > end + 0.1
    first = sched.slots[0]
    assert first.transfer_s == pytest.approx(first.start_s + 0.3 + 1.0)  # none before it


def test_a_tiny_working_set_dirtied_fast_converges_at_its_share_once_auto_raises_its_limit(
        ) -> None:
    """24 MiB/s over 1 MiB at a quarter of the link: ~0.8 MiB stays pending, over
    auto's 50 ms start but well under the 1 s allowed, so `auto` raises the limit and
    it converges.  The model chose that schedule on finer steps than it simulated
    (an hour's horizon), where the start limit seemed to do: it then called the move
    stuck (converging neither in pre-copy nor by post-copy)."""
    m = replace(mv("tiny", 512, 300, dirty=24, wss=1), limit_s=1.0)
    model = Model(LINKS)
    p = model.predict(m, LINK / 4)
    assert p.converges and not p.postcopy, p.note
    assert model.fits(m, LINK / 4)


def test_a_staged_move_under_way_waits_for_the_transfer_the_gate_lets_through_first() -> None:
    """Replanning with one transfer per link: a move already started (staged, libvirt
    setting it up) joins the link only once the transfer on it has left, as the
    drain's gate lets it (lab: an early move was planned beside the first at half
    the link, waited for it instead, and the ETA came out ~3 s short).  Without the
    limit it may share."""
    a, b = mv("a1", 256, 200), mv("b1", 256, 100)
    active = [Active(a, 0.0, 3.0, 96 * MIB), Active(b, 9.0, 10.0)]  # a1: 2 s left alone
    s = plan([], LINKS, Limits(), 2, active, now=10.0, transfers=1)
    slot = {x.vm: x for x in s.slots}
    assert slot["b1"].transfer_s >= slot["a1"].end_s + HANDOFF_S - 1e-6
    assert slot["b1"].share_bytes_s == pytest.approx(LINK)
    assert s.eta_s >= 2.0 + HANDOFF_S + 100 / 48 - 0.05
    shared = plan([], LINKS, Limits(), 2, active, now=10.0)
    assert {x.vm: x for x in shared.slots}["b1"].transfer_s == pytest.approx(10.0)
