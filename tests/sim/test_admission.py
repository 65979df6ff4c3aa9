"""Concurrency limits and cancel in every phase: queued migrations wait, visibly and in
order; a cancel ends each phase cleanly; destination memory is held for what comes in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry.domain.models import MigrationState, VmState
from ferry.domain.vocab import EventKind as K
from ferry.errors import Conflict, MigrationRefused
from tests.sim.conftest import DeferredExecutor, SimEnv, make_env


@pytest.fixture
def deferred(tmp_path: Path) -> Iterator[tuple[SimEnv, DeferredExecutor]]:
    executor = DeferredExecutor()
    env = make_env(tmp_path, executor=executor)
    yield env, executor
    env.svc.shutdown()


def _states(env: SimEnv, mids: list[int]) -> list[str]:
    return [env.svc.store.get(m).state.value for m in mids]


def test_a_full_source_queues_the_rest_in_order_and_admits_them_as_slots_free(
        deferred: tuple[SimEnv, DeferredExecutor]) -> None:
    env, workers = deferred
    vms = [env.vm(f"v{i}") for i in range(4)]
    mids = [env.svc.migrations.start(vm, to).id
            for vm, to in zip(vms, ["node2", "node3", "node2", "node3"], strict=True)]
    assert _states(env, mids) == ["running", "running", "queued", "queued"]
    why = [e.message for e in env.svc.store.get(mids[2]).events if e.kind == K.QUEUED]
    assert why == ["waiting: node1 has 2 outbound migrations (limit 2)"]
    workers.run_next()  # the first finishes: the oldest waiting one starts
    assert _states(env, mids) == ["completed", "running", "running", "queued"]
    while workers.waiting:
        workers.run_next()
    assert _states(env, mids) == ["completed"] * 4
    assert all(env.cluster.where(v) == {h: "running"} for v, h in
               zip(vms, ["node2", "node3", "node2", "node3"], strict=True))


def test_a_job_whose_source_has_sent_everything_frees_its_slot_before_libvirt_finishes(
        deferred: tuple[SimEnv, DeferredExecutor]) -> None:
    """libvirt's finish after QEMU's last byte (lab: ~1.7 s, statistics failing
    meanwhile) leaves the link free: the job says `sent`, and the oldest waiting
    migration is admitted then, before the first one is resolved (fails when a slot
    frees only once the migration has its final state)."""
    env, workers = deferred
    env.cluster.finish_s = 1.5
    vms = [env.vm(f"v{i}", dirty=2) for i in range(3)]
    mids = [env.svc.migrations.start(vm, to).id
            for vm, to in zip(vms, ["node2", "node3", "node2"], strict=True)]
    assert _states(env, mids) == ["running", "running", "queued"]
    workers.run_next()
    first = env.svc.store.get(mids[0])
    assert first.state.value == "completed"
    sent = next(e.at for e in first.events if e.kind == K.SENT)
    resolved = next(e.at for e in first.events if e.kind == K.RESOLVED)
    admitted = next(e.at for e in env.svc.store.get(mids[2]).events if e.kind == K.ADMITTED)
    assert sent <= admitted < resolved
    assert (resolved - sent).total_seconds() >= 1.4  # libvirt's finish
    while workers.waiting:
        workers.run_next()
    assert _states(env, mids) == ["completed"] * 3


def test_a_busy_source_does_not_hold_up_moves_between_other_hosts(
        deferred: tuple[SimEnv, DeferredExecutor]) -> None:
    env, _workers = deferred
    a, b, c = env.vm("a"), env.vm("b"), env.vm("c")
    d = env.vm("d", host="node2")
    mids = [env.svc.migrations.start(a, "node2").id, env.svc.migrations.start(b, "node3").id,
            env.svc.migrations.start(c, "node3").id, env.svc.migrations.start(d, "node3").id]
    assert _states(env, mids) == ["running", "running", "queued", "running"]


def test_cancelling_a_queued_migration_starts_nothing(
        deferred: tuple[SimEnv, DeferredExecutor]) -> None:
    env, workers = deferred
    vms = [env.vm(f"v{i}") for i in range(3)]
    mids = [env.svc.migrations.start(vm, "node2").id for vm in vms]
    assert _states(env, mids)[2] == "queued"
    m = env.svc.migrations.cancel(mids[2])
    assert m.state == MigrationState.CANCELLED and "nothing was started" in m.error
    assert env.svc.vms.get(vms[2]).state == VmState.RUNNING
    with pytest.raises(Conflict):
        env.svc.migrations.cancel(mids[2])
    while workers.waiting:
        workers.run_next()
    assert env.cluster.where(vms[2]) == {"node1": "running"}
    assert len(env.cluster.jobs) == 2


def test_cancel_during_prechecks_starts_no_job_and_during_the_plan_aborts_the_staged_one(
        tmp_path: Path) -> None:
    """The job starts (staged) before the guest is measured: a cancel while it is
    measured aborts that job, and the guest stays."""
    env = make_env(tmp_path, call_latency_s=0.05)  # every host call takes 50 ms
    vm = env.vm()

    def cancel_when(state: MigrationState, after: int) -> None:
        """Cancel the VM's next migration once it is in `state` (checked every 10 ms)."""
        ms = env.svc.store.list_migrations(vm)
        if ms and ms[0].id > after and ms[0].state == state:
            env.svc.migrations.cancel(ms[0].id)
        else:
            env.at(env.clock.monotonic() + 0.01, lambda: cancel_when(state, after))

    cancel_when(MigrationState.PRECHECKING, 0)
    m = env.migrate(vm, "node2")
    assert m.state == MigrationState.CANCELLED and "prechecks" in m.error
    env.at(env.clock.monotonic() + 0.01, lambda: cancel_when(MigrationState.RUNNING, m.id))
    m = env.migrate(vm, "node2")
    assert m.state == MigrationState.CANCELLED, m.error
    kinds = env.kinds(m)
    assert kinds.index(K.STAGED) < kinds.index(K.MEASURED) < kinds.index(K.CANCEL)
    assert K.RELEASED not in kinds and len(env.cluster.jobs) == 1
    assert env.cluster.where(vm) == {"node1": "running"}
    assert env.migrate(vm, "node2").state == MigrationState.COMPLETED
    env.svc.shutdown()


def test_a_cancel_before_libvirt_has_begun_the_job_still_aborts_it(tmp_path: Path) -> None:
    """libvirt's migration call runs in its own thread: a cancel just after it was
    made finds no job yet and libvirt refuses the abort.  The abort is sent again
    once the job runs (before: the job ran on to completion, and a drain's staged
    job trickled forever)."""
    env = make_env(tmp_path)
    env.cluster.begin_s = 2.0  # the job is libvirt's only 2 s after the call
    vm = env.vm(memory=512, dirty=20, wss=128)
    env.in_job(0.1, lambda: env.svc.migrations.cancel(env.svc.store.list_migrations(vm)[0].id))
    # precopy: started at once (another policy's job is staged while the guest is
    # measured, and the cancel is acted on after that, when libvirt has begun it)
    m = env.migrate(vm, "node2", policy="precopy")
    kinds = env.kinds(m)
    assert m.state == MigrationState.CANCELLED, (m.error, kinds)
    assert K.ABORT_FAILED in kinds
    assert kinds.index(K.ABORT_FAILED) < len(kinds) - 1 - kinds[::-1].index(
        K.CANCEL)  # aborted again after the refusal
    assert env.cluster.where(vm) == {"node1": "running"}
    env.svc.shutdown()


def test_memory_promised_to_an_incoming_migration_is_held(tmp_path: Path) -> None:
    executor = DeferredExecutor()
    env = make_env(tmp_path, executor=executor)
    small = env.cluster.host("node3")
    small.memory_mib = 1400  # room for one 1 GiB guest, not two
    a, b = env.vm("a", memory=1024), env.vm("b", host="node2", memory=1024)
    assert env.svc.migrations.start(a, "node3").state == MigrationState.RUNNING
    with pytest.raises(MigrationRefused) as err:
        env.svc.migrations.start(b, "node3")
    assert err.value.reason == "insufficient_memory"
    assert err.value.details["reserved_mib"] == 1024
    env.svc.shutdown()


def test_a_vm_being_migrated_cannot_be_deleted_and_one_being_deleted_not_migrated(
        deferred: tuple[SimEnv, DeferredExecutor]) -> None:
    env, _workers = deferred
    vm = env.vm()
    env.svc.migrations.start(vm, "node2")
    with pytest.raises(Conflict, match="migrating"):
        env.svc.vms.delete(vm, "delete")
    other = env.vm("other")
    env.svc.vms._mark_deleting(other)  # a delete in flight
    with pytest.raises(Conflict):
        env.svc.migrations.start(other, "node2")
