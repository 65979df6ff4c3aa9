"""Draining a host on the simulated cluster: plan, run, blocked VMs, retries,
cancel, maintenance, return (the real services and database, virtual time)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from ferry.domain.models import HostState, MigrationState
from ferry.domain.vocab import EventKind
from ferry.drain.model import DEFAULT_FINISH_S
from ferry.errors import Conflict, InvalidRequest, MigrationRefused
from ferry.migration.requests import Hooks
from ferry.service.drain_plan import DrainRequest
from ferry.service.drains import TICK_S
from tests.sim.conftest import ControllerCrash, SimEnv, crash


def _guests(env: SimEnv) -> list[str]:
    return [env.vm("a1", memory=512, dirty=0), env.vm("b1", memory=256, dirty=8, wss=64),
            env.vm("c1", memory=384, dirty=2, wss=32)]


def test_dry_run_plans_every_vm_and_moves_nothing(env: SimEnv) -> None:
    vms = _guests(env)
    plan = env.svc.drains.plan(DrainRequest("node1", link_mib_s=64))
    assert sorted(m["vm"] for m in plan["moves"]) == sorted(vms)
    assert {m["to"] for m in plan["moves"]} <= {"node2", "node3"}
    assert len({m["to"] for m in plan["moves"]}) == 2  # spread over both
    assert all(m["predicted_total_ms"] > 0 and m["predicted_converges"]
               for m in plan["moves"])
    assert plan["eta_ms"] >= max(m["end_ms"] for m in plan["moves"]) - 1
    assert plan["blocked"] == []
    assert all(env.cluster.where(v) == {"node1": "running"} for v in vms)
    assert env.svc.hosts.get("node1").state == HostState.UP  # a dry run changes nothing


def test_every_guests_pages_are_read_before_any_dirty_window(
        env: SimEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """The drain measures its guests at once: their pages are read first, then the
    dirty windows run, none of them beside a page read (lab: reads meanwhile took the
    CPU a TCG guest dirties with, and one dirtying 24 MiB/s read at 13 instead of 20).
    Each guest's measurement still counts its pages (fails when the windows of one
    guest run before another's pages are read)."""
    vms = _guests(env)
    host = env.cluster.host("node1")
    calls: list[tuple[str, str]] = []
    read, window = host.sample_pages, host.dirty_rate_mib_s

    def sample_pages(name: str, pages: int, budget_s: float) -> Any:
        calls.append(("pages", name))
        return read(name, pages, budget_s)

    def dirty_rate_mib_s(name: str, window_ms: int, sample_pages: int = 4096) -> float:
        calls.append(("window", name))
        return window(name, window_ms, sample_pages)

    monkeypatch.setattr(host, "sample_pages", sample_pages)
    monkeypatch.setattr(host, "dirty_rate_mib_s", dirty_rate_mib_s)
    plan = env.svc.drains.plan(DrainRequest("node1", link_mib_s=64))
    kinds = [k for k, _ in calls]
    assert sorted(v for k, v in calls if k == "pages") == sorted(vms)
    assert "window" in kinds and kinds.index("window") == len(vms)  # every read first
    assert all(m["model"]["nonzero_bytes"] < m["model"]["memory_mib"] * 2**20
               for m in plan["moves"])


def test_to_restricts_the_destinations(env: SimEnv) -> None:
    _guests(env)
    plan = env.svc.drains.plan(DrainRequest("node1", to=("node3",)))
    assert {m["to"] for m in plan["moves"]} == {"node3"}


def test_drain_moves_every_vm_and_leaves_the_host_in_maintenance(env: SimEnv) -> None:
    vms = _guests(env)
    d = env.svc.drains.start(DrainRequest("node1", link_mib_s=64))
    d = env.svc.drains.drains.get(d["id"])
    assert d["state"] == "completed", d
    for m in d["moves"]:
        assert m["state"] == "completed" and m["migration"] is not None
        assert env.cluster.where(m["vm"]) == {m["to"]: "running"}
        assert env.svc.store.get(m["migration"]).state == MigrationState.COMPLETED
    assert sorted(m["vm"] for m in d["moves"]) == sorted(vms)
    assert env.svc.hosts.get("node1").state == HostState.MAINTENANCE
    # maintenance: no new VMs, no incoming migrations
    with pytest.raises(Conflict, match="maintenance"):
        env.vm("late", host="node1")
    with pytest.raises(MigrationRefused) as err:
        env.migrate(vms[0], "node1")
    assert err.value.reason == "destination_maintenance"
    # placement for a plain migration never picks it either
    m = env.svc.drains.migrate(vms[1], None)
    assert m.destination not in ("node1",)


def test_activate_back_returns_the_drained_vms(env: SimEnv) -> None:
    vms = _guests(env)
    env.svc.drains.start(DrainRequest("node1"))
    out = env.svc.drains.activate("node1", back=True)
    assert out["state"] == "up"
    ret = env.svc.drains.drains.get(out["return"]["id"])
    assert ret["state"] == "completed", ret
    assert all(env.cluster.where(v) == {"node1": "running"} for v in vms)


def test_a_vm_that_cannot_move_is_reported_and_the_others_move(env: SimEnv) -> None:
    vms = _guests(env)
    env.vm("fill2", host="node2", memory=8000)
    env.vm("fill3", host="node3", memory=8000)
    env.vm("huge", memory=60000)  # no other host has that much free now
    d = env.svc.drains.start(DrainRequest("node1"))
    d = env.svc.drains.drains.get(d["id"])
    assert [b["vm"] for b in d["blocked"]] == ["huge"]
    assert "MiB free" in d["blocked"][0]["reason"]
    assert d["state"] == "completed"
    assert sorted(m["vm"] for m in d["moves"]) == sorted(vms)
    assert env.cluster.where("huge") == {"node1": "running"}


def test_a_failed_move_is_retried_on_another_destination(env: SimEnv) -> None:
    _guests(env)
    to = {m["vm"]: m["to"] for m in env.svc.drains.plan(DrainRequest("node1"))["moves"]}
    # the first job is the idle a1's (measured quiet first, it starts while the others
    # are measured); its incoming QEMU dies one second into it
    env.in_job(1.0, lambda: env.cluster.kill_domain(to["a1"], "a1"))
    d = env.svc.drains.start(DrainRequest("node1"))
    d = env.svc.drains.drains.get(d["id"])
    assert d["state"] == "completed", d
    retried = next(m for m in d["moves"] if m["vm"] == "a1")
    assert retried["tried"] == [to["a1"], retried["to"]] and retried["to"] != to["a1"]
    assert len(retried["migrations"]) == 2
    kinds = [e["kind"] for e in d["events"]]
    assert kinds[:3] == ["planning", "early", "started"], kinds
    assert "planned" in kinds and "retry" in kinds and kinds[-1] == "ended"
    assert env.svc.store.get(retried["migrations"][0]).state == MigrationState.FAILED
    for m in d["moves"]:
        assert env.cluster.where(m["vm"]) == {m["to"]: "running"}


@pytest.mark.parametrize("max_parallel", [1, 2])
def test_quiet_guests_start_while_the_others_are_measured_up_to_the_slots(
        env: SimEnv, max_parallel: int) -> None:
    """Every quiet guest may start before the plan is made, as many at once as the
    drain's slots from its source allow, and more as early ones end (fails when only
    the first quiet one starts early; the simulated moves end as they start, so the
    bound holds here by construction)."""
    _guests(env)
    env.vm("d1", memory=256, dirty=0)
    env.vm("e1", memory=320, dirty=0)
    d = env.svc.drains.start(DrainRequest("node1", link_mib_s=64, max_parallel=max_parallel))
    d = env.svc.drains.drains.get(d["id"])
    assert d["state"] == "completed", d
    kinds = [e["kind"] for e in d["events"]]
    before_plan = kinds[:kinds.index("planned")]
    assert before_plan.count("early") >= max_parallel, kinds
    for i, k in enumerate(before_plan):  # (simulated moves end as they start)
        if k == "early":
            earlier = before_plan[:i].count("early")
            assert earlier - before_plan[:i].count("completed") < max_parallel, kinds
    assert "retry" not in kinds and all(m["tried"] == [m["to"]] for m in d["moves"]), d
    early = [e["message"].split()[0] for e in d["events"] if e["kind"] == "early"]
    assert "b1" not in early  # 8 MiB/s of 64: not quiet (c1's 2 MiB/s is)


def test_a_vm_that_fails_everywhere_is_reported_with_its_reason(env: SimEnv) -> None:
    _guests(env)
    env.cluster.host("node2").unreachable = True
    env.cluster.host("node3").unreachable = True
    d = env.svc.drains.start(DrainRequest("node1"))
    d = env.svc.drains.drains.get(d["id"])
    assert d["moves"] == [] and len(d["blocked"]) == 3
    assert all("unreachable" in b["reason"] for b in d["blocked"])


def test_a_second_drain_of_the_same_host_is_refused_while_one_runs(env: SimEnv) -> None:
    _guests(env)
    env.svc.drains.drains.create("node1", {"to": [], "max_parallel": 2}, [], [], 0)
    with pytest.raises(Conflict, match="already being drained"):
        env.svc.drains.start(DrainRequest("node1"))


def test_bad_requests_are_refused(env: SimEnv) -> None:
    from ferry.errors import InvalidRequest, NotFound
    with pytest.raises(InvalidRequest):
        env.svc.drains.plan(DrainRequest("node1", max_parallel=0))
    with pytest.raises(InvalidRequest):
        env.svc.drains.plan(DrainRequest("../etc"))
    with pytest.raises(NotFound):
        env.svc.drains.plan(DrainRequest("node9"))


def test_cancel_mid_drain_stops_the_rest_and_leaves_each_vm_whole(env: SimEnv) -> None:
    vms = _guests(env)
    env.in_job(1.0, lambda: env.svc.drains.cancel(1))  # the first drain of this database
    d = env.svc.drains.start(DrainRequest("node1"))
    assert d["id"] == 1
    d = env.svc.drains.drains.get(1)
    assert d["state"] == "cancelled", d
    states = sorted(m["state"] for m in d["moves"])
    assert states == ["cancelled"] * 3, d["moves"]
    for v in vms:  # each VM runs on exactly one host: the source
        assert env.cluster.where(v) == {"node1": "running"}
    with pytest.raises(Conflict, match="already cancelled"):
        env.svc.drains.cancel(1)
    assert env.svc.hosts.get("node1").state == HostState.MAINTENANCE
    env.svc.drains.activate("node1")
    assert env.svc.hosts.get("node1").state == HostState.UP


@pytest.mark.parametrize("job,state", [(1, "planning"), (3, "running")])
def test_controller_restart_mid_drain_resumes_it(env: SimEnv, job: int, state: str) -> None:
    """Killed in the first job (a1 and c1 are quiet: both move while b1 is measured;
    the plan is not made yet) or in the third (the plan runs)."""
    vms = _guests(env)

    def in_job(n: int) -> None:
        env.in_job(1.0, crash if n == 1 else lambda: in_job(n - 1))
    in_job(job)
    with pytest.raises(ControllerCrash):
        env.svc.drains.start(DrainRequest("node1"))
    assert env.svc.drains.drains.get(1)["state"] == state
    svc = env.restart()
    svc.migrations.recover()
    svc.drains.recover()
    d = svc.drains.drains.get(1)
    assert d["state"] == "completed", d
    for m in d["moves"]:
        assert env.cluster.where(m["vm"]) == {m["to"]: "running"}
    assert sorted(m["vm"] for m in d["moves"]) == sorted(vms)


def test_a_stopped_vm_is_listed_with_its_state(env: SimEnv) -> None:
    _guests(env)
    env.cluster.host("node1").destroy("c1")
    plan = env.svc.drains.plan(DrainRequest("node1"))
    assert {b["vm"]: b["reason"] for b in plan["blocked"]} == {
        "c1": "not running (shutoff): only a running VM moves live"}
    assert sorted(m["vm"] for m in plan["moves"]) == ["a1", "b1"]


def test_the_plan_learns_what_one_stream_reaches_from_earlier_moves(env: SimEnv) -> None:
    """A host's latest uncapped migrations say what one stream reaches; a capped one
    (it shows the cap, not the stream) is not read."""
    _guests(env)
    env.vm("probe", memory=256, dirty=0)
    plan = env.svc.drains.plan(DrainRequest("node1", link_mib_s=64))
    assert all(m["model"]["stream_bytes_s"] is None for m in plan["moves"])  # no history
    capped = env.migrate("probe", "node2", bandwidth_mib_s=8)
    env.migrate("probe", "node1", bandwidth_mib_s=8)
    assert capped.state == MigrationState.COMPLETED
    plan = env.svc.drains.plan(DrainRequest("node1", link_mib_s=64))
    assert all(m["model"]["stream_bytes_s"] is None for m in plan["moves"])
    plain = env.migrate("probe", "node2", tls=False)
    env.migrate("probe", "node1", tls=False)
    assert plain.transferred_bytes and plain.total_ms
    first = next(x for x in env.svc.store.samples(plain.id)
                 if x.memory_processed_bytes > 0 and x.bandwidth_bytes_s > 0)
    # (~0: the job was staged while the guest was measured, its samples begin at its
    # release, set up)
    setup = max(0.0, first.t_ms / 1000 - first.memory_processed_bytes / first.bandwidth_bytes_s)
    assert 0 <= setup < plain.total_ms / 1000
    rate = plain.transferred_bytes / (plain.total_ms / 1000 - setup)  # after its set-up
    assert env.svc.store.reached_bytes_s(plain.id) == pytest.approx(rate)  # a drain's move
    plan = env.svc.drains.plan(DrainRequest("node1", link_mib_s=64, tls=False))
    assert {m["model"]["stream_bytes_s"] for m in plan["moves"]} == {round(rate)}


def test_the_plan_learns_each_moves_time_after_its_job(env: SimEnv) -> None:
    """libvirt's finish and settling hold a move's slot after QEMU's job time: the plan
    uses what the pair's latest migrations took (a default before any)."""
    _guests(env)
    plan = env.svc.drains.plan(DrainRequest("node1", to=("node2",), link_mib_s=64))
    assert {m["model"]["finish_s"] for m in plan["moves"]} == {DEFAULT_FINISH_S}
    env.vm("probe", memory=256, dirty=0)
    m = env.migrate("probe", "node2")
    # its job was staged while the guest was measured: its time counts from the release
    started = next(e.at for e in m.events if e.kind == EventKind.RELEASED)
    assert m.finished_at is not None and m.total_ms is not None
    after = (m.finished_at - started).total_seconds() - m.total_ms / 1000
    plan = env.svc.drains.plan(DrainRequest("node1", to=("node2",), link_mib_s=64))
    assert {m["model"]["finish_s"] for m in plan["moves"]} == {round(after, 3)}


def test_a_drain_hears_at_once_that_one_of_its_migrations_ended(env: SimEnv) -> None:
    """A migration's end reaches its drain's runner (Hooks.ended), which then looks
    again within a nap instead of a whole tick."""
    vm = env.vm("a1")
    heard: list[int] = []
    m = env.svc.migrations.start(vm, "node2", hooks=Hooks(ended=lambda: heard.append(1)))
    assert env.svc.store.get(m.id).state.finished and heard == [1]
    drains = env.svc.drains
    t0 = env.clock.monotonic()
    drains._nap(7)  # nobody woke it: a whole tick
    assert env.clock.monotonic() - t0 >= TICK_S - 1e-9
    drains._woken.add(7)
    t0 = env.clock.monotonic()
    drains._nap(7)
    assert env.clock.monotonic() - t0 < TICK_S / 2 and 7 not in drains._woken


def test_a_move_whose_link_is_busy_is_staged_and_released(env: SimEnv) -> None:
    """A drain's move that may not transfer yet starts its job at a trickle (libvirt's
    set-up overlaps the link's transfers) and goes at full speed when its gate says
    so; its time counts from then, and it teaches neither the pair's set-up (it
    overlapped) nor a finish that includes the wait (fails when the job waits before
    starting, or when the staged time is counted as job time)."""
    env.vm("plain", memory=256, dirty=2)
    env.vm("held", memory=256, dirty=2)
    alone = env.migrate("plain", "node2")
    setup = env.svc.store._setup_s("node1", "node2")[0]
    assert setup is not None and setup > 0.25
    asked: list[float] = []

    def may_transfer() -> bool:
        asked.append(env.clock.monotonic())
        return len(asked) > 12  # the link frees ~3 s (12 samples) in

    m = env.svc.migrations.start("held", "node2", hooks=Hooks(may_transfer=may_transfer))
    m = env.svc.store.get(m.id)
    assert m.state == MigrationState.COMPLETED, m.error
    kinds = [e.kind for e in m.events]
    assert kinds.index(EventKind.STARTED) < kinds.index(EventKind.STAGED) \
        < kinds.index(EventKind.RELEASED) < kinds.index(EventKind.RESOLVED)
    assert "full speed" in next(e.message for e in m.events if e.kind == EventKind.RELEASED)
    staged_s = asked[-1] - asked[0]
    assert staged_s >= 2.5
    # the same guest's job alone vs staged: its time counts from the release (the
    # staged job's set-up was over by then, so it is shorter by about the set-up)
    assert alone.total_ms is not None and m.total_ms is not None
    assert m.total_ms <= alone.total_ms
    assert m.total_ms >= alone.total_ms - 1500
    samples = env.svc.store.samples(m.id)
    assert samples and samples[0].t_ms < 1000  # on the clock of the release
    # the pair's set-up is still the unstaged job's; the finish excludes the wait
    assert env.svc.store._setup_s("node1", "node2")[0] == pytest.approx(setup)
    assert (env.svc.store.finish_s("node1", "node2") or 0) < staged_s


def test_a_staged_job_is_released_only_once_qemus_migration_runs(env: SimEnv) -> None:
    """The gate frees the link while libvirt still sets the job up: the rate is raised
    only once QEMU's migration runs, else libvirt's start would put the trickle back
    (lab: a job released 0.3 s in stayed at 1 MiB/s until its timeout)."""
    env.vm("held", memory=256, dirty=2)
    asked: list[int] = []

    def may_transfer() -> bool:
        asked.append(1)
        return len(asked) > 1  # staged at the start, free from the next look

    m = env.svc.migrations.start("held", "node2", hooks=Hooks(may_transfer=may_transfer))
    m = env.svc.store.get(m.id)
    assert m.state == MigrationState.COMPLETED, m.error
    started = next(e.at for e in m.events if e.kind == EventKind.STARTED)
    released = next(e.at for e in m.events if e.kind == EventKind.RELEASED)
    assert (released - started).total_seconds() >= env.cluster.setup_s


def test_a_job_staged_when_the_controller_died_goes_at_full_speed_once_followed(
        env: SimEnv) -> None:
    """The gate that would have released a staged job went with the controller: the
    restarted one, following the job, raises its rate itself (fails when a followed
    job trickles on until its timeout)."""
    env.vm("held", memory=256, dirty=2)
    env.in_job(3, crash, staged=True)
    with pytest.raises(ControllerCrash):
        env.svc.migrations.start("held", "node2", hooks=Hooks(may_transfer=lambda: False))
    mid = env.svc.store.list_migrations("held")[0].id
    svc = env.restart()
    svc.migrations.recover()
    m = svc.store.get(mid)
    assert m.state == MigrationState.COMPLETED, m.error
    released = [e for e in m.events if e.kind == EventKind.RELEASED]
    assert len(released) == 1 and "after a restart" in released[0].message
    assert env.cluster.where("held") == {"node2": "running"}


def test_a_job_whose_link_never_frees_does_not_trickle_forever(env: SimEnv) -> None:
    """A gate that never says yes (a bug, or a move elsewhere that never leaves) holds
    a staged job at most its timeout: then it goes at full speed and completes."""
    env.vm("held", memory=256, dirty=2)
    m = env.svc.migrations.start("held", "node2", hooks=Hooks(may_transfer=lambda: False))
    m = env.svc.store.get(m.id)
    assert m.state == MigrationState.COMPLETED, m.error
    assert any(e.kind == EventKind.RELEASED for e in m.events)


def test_a_move_that_copies_disks_waits_for_its_link_instead_of_being_staged(
        env: SimEnv) -> None:
    """libvirt's rate change reaches the memory migration, not its disk mirror: a move
    with a local disk to copy is not staged but waits for its link before its job
    starts (fails when it bypasses the gate, or is staged and copies at a trickle)."""
    env.vm("disky", memory=256, dirty=2, disks=[("local", 0.25)])
    asked: list[float] = []

    def may_transfer() -> bool:
        asked.append(env.clock.monotonic())
        return len(asked) > 5

    m = env.svc.migrations.start("disky", "node2", hooks=Hooks(may_transfer=may_transfer))
    m = env.svc.store.get(m.id)
    assert m.state == MigrationState.COMPLETED, m.error
    assert EventKind.STAGED not in [e.kind for e in m.events]
    assert len(asked) == 6 and env.cluster.jobs[-1].started_at >= asked[-1]


def test_a_move_that_copies_disks_cancelled_while_waiting_never_starts_its_job(
        env: SimEnv) -> None:
    """Cancelled while it waits for its link, a disk-copying move ends cancelled before
    any libvirt job (fails when the wait sits inside the job's start, which then
    starts a job only to abort it)."""
    env.vm("disky", memory=256, dirty=2, disks=[("local", 0.25)])
    asked: list[int] = []

    def may_transfer() -> bool:
        asked.append(1)
        if len(asked) == 3:
            env.svc.migrations.cancel(env.svc.store.list_migrations("disky")[0].id)
        return False

    m = env.svc.migrations.start("disky", "node2", hooks=Hooks(may_transfer=may_transfer))
    m = env.svc.store.get(m.id)
    assert m.state == MigrationState.CANCELLED, m
    assert env.cluster.jobs == [] and env.cluster.where("disky") == {"node1": "running"}



def test_a_move_in_round_one_counts_only_its_non_zero_bytes_as_left(env: SimEnv) -> None:
    """QEMU's "remaining" in round 1 counts the zero pages still ahead too: the runner
    read a 320 MiB lab guest, ~100 MiB of it non-zero, as 300 MiB still to send and
    held the next move back ~6 s with the link nearly free.  What the schedule is fed
    is the non-zero part (fails when the remaining is taken as it is)."""
    env.vm("big", memory=1024, dirty=0, wss=16)
    plan = env.svc.drains.plan(DrainRequest("node1", to=("node2",), link_mib_s=64))
    move = {**plan["moves"][0], "started_at": env.clock.now().timestamp()}
    nonzero = move["model"]["nonzero_bytes"]
    assert nonzero < 0.3 * 1024 * 2**20
    seen: list[tuple[float, float]] = []

    def look() -> None:
        mid = env.svc.store.list_migrations("big", 1)[0].id
        last = env.svc.store.last_sample(mid)
        assert last is not None and last.iteration <= 1
        a = env.svc.drains.moves.active({**move, "migration": mid}, "node1",
                                       env.clock.monotonic())
        assert a.bytes_left is not None
        seen.append((a.bytes_left, last.memory_remaining_bytes))

    env.in_job(1.0, look)
    m = env.migrate("big", "node2", bandwidth_mib_s=16)
    assert m.state == MigrationState.COMPLETED, m.error
    [(left, remaining)] = seen
    assert remaining > 2 * nonzero  # QEMU's figure: the RAM still ahead, zero pages too
    assert 0 < left < nonzero  # what is still to send


def test_quiet_guests_whose_pages_compress_move_compressed(env: SimEnv) -> None:
    """A guest whose sampled pages compress (lab: a fresh guest's to ~57 %) and whose
    pre-copy finishes at `auto`'s first limit moves over a compressed stream: fewer
    bytes on the drain's link, as planned.  A heavy dirtier keeps post-copy armed
    instead (QEMU cannot have both), and so does a guest whose pages do not compress.
    Round 1 of a compressed move says nothing of the guest's pages: history skips it.
    The setting turns it off."""
    for name, dirty, wss, share in (("q1", 2, 16, 0.5), ("q2", 2, 16, 1.0),
                                    ("hot", 80, 160, 0.5)):
        env.vm(name, memory=256, dirty=dirty, wss=wss)
        env.cluster.host("node1").domains[name].workload.wire_share = share
    for h in ("node2", "node3"):  # (round 1 long enough to be sampled)
        env.cluster.set_link("node1", h, 16)
    for _ in range(2):  # the source's load: known (two readings) and light
        env.svc.hosts.refresh("node1")
        env.clock.sleep(1.0)
    plan = env.svc.drains.plan(DrainRequest("node1", link_mib_s=16))
    squeezed = {m["vm"]: m["model"]["compressed"] for m in plan["moves"]}
    assert squeezed == {"q1": True, "q2": False, "hot": False}
    d = env.svc.drains.drains.get(env.svc.drains.start(DrainRequest("node1",
                                                                   link_mib_s=16))["id"])
    assert d["state"] == "completed", d
    got = {m["vm"]: env.svc.store.get(m["migration"]) for m in d["moves"]}
    assert {v: m.compressed for v, m in got.items()} == squeezed
    q1, q2 = got["q1"], got["q2"]
    assert q1.transferred_bytes is not None and q2.transferred_bytes is not None
    assert q1.transferred_bytes < 0.6 * q2.transferred_bytes  # same pages, half on the link
    assert EventKind.GAVE_UP not in env.kinds(q1)
    hist = env.svc.store.history("q1", q1.destination, "node1")
    assert hist.nonzero_bytes is None  # its only move went compressed
    assert env.svc.store.history("q2", q2.destination, "node1").nonzero_bytes is not None
    env.svc.migrations.pipeline.timeouts = dataclasses.replace(
        env.svc.migrations.pipeline.timeouts, compress=False)
    env.svc.drains.planner.compress = False
    back = env.svc.drains.plan(DrainRequest(q1.destination, to=("node3", "node2"),
                                            link_mib_s=16))
    assert all(not m["model"]["compressed"] for m in back["moves"])


def test_the_operator_asks_for_compression_or_forbids_it(env: SimEnv) -> None:
    """--compress: compressed whatever the source's load (unknown here: never read),
    measured before its job starts (a lone migration is otherwise staged first, its
    flags set before Ferry knows whether its pages compress); where it cannot (pages
    that do not compress) it goes in clear and says why.  --no-compress: never, even
    where it would pay.  Only `auto` chooses it."""
    for name, share in (("q1", 0.5), ("q2", 1.0), ("q3", 0.5)):
        env.vm(name, memory=256, dirty=2, wss=16)
        env.cluster.host("node1").domains[name].workload.wire_share = share
    m = env.migrate("q1", "node2", compress=True)
    assert m.state == MigrationState.COMPLETED and m.compressed is True, m.error
    assert EventKind.STAGED not in env.kinds(m)
    m = env.migrate("q2", "node2", compress=True)
    assert m.state == MigrationState.COMPLETED and m.compressed is False
    said = [e.message for e in env.svc.store.get(m.id).events if e.kind == EventKind.PLAN]
    assert "asked to compress, in clear: its pages compress to 100% (no gain over 80%)" \
        in said
    with pytest.raises(InvalidRequest, match="policy auto"):
        env.migrate("q3", "node2", compress=True, policy="stepped")
    for _ in range(2):  # a light source: compressed unless forbidden
        env.svc.hosts.refresh("node1")
        env.clock.sleep(1.0)
    plan = env.svc.drains.plan(DrainRequest("node1", to=("node3",), link_mib_s=16))
    assert [m["model"]["compressed"] for m in plan["moves"]] == [True]
    d = env.svc.drains.start(DrainRequest("node1", to=("node3",), link_mib_s=16,
                                          compress=False))
    d = env.svc.drains.drains.get(d["id"])
    assert d["state"] == "completed" and d["request"]["compress"] is False
    assert env.svc.store.get(d["moves"][0]["migration"]).compressed is False
