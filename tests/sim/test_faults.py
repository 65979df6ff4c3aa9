"""Hosts that stop answering at each phase, and a controller that restarts mid-job:
every migration still ends in a final state, and the VM is where the hosts say."""

from __future__ import annotations

import pytest

from ferry.db.models import MigrationRow
from ferry.domain.models import HostState, MigrationState, VmState
from ferry.domain.vocab import EventKind as K
from ferry.errors import Conflict, MigrationRefused, Unavailable
from ferry.hypervisor.errors import HypervisorError
from tests.sim.conftest import ControllerCrash, SimEnv, crash


def test_source_unreachable_at_precheck_is_503_and_leaves_nothing_stuck(env: SimEnv) -> None:
    vm = env.vm()
    env.cluster.host("node1").unreachable = True
    with pytest.raises(Unavailable, match="does not answer"):
        env.migrate(vm, "node2")
    m = env.svc.store.list_migrations(vm)[0]
    assert m.state == MigrationState.FAILED
    assert env.svc.vms.get(vm).state != VmState.MIGRATING
    assert env.svc.hosts.get("node1").state == HostState.UNREACHABLE
    # the host comes back: the same VM migrates (no 409 from a stuck record)
    env.cluster.host("node1").unreachable = False
    assert env.migrate(vm, "node2").state == MigrationState.COMPLETED


def test_destination_unreachable_at_precheck_is_refused(env: SimEnv) -> None:
    vm = env.vm()
    env.cluster.host("node2").unreachable = True
    with pytest.raises(MigrationRefused) as err:
        env.migrate(vm, "node2")
    assert err.value.reason == "destination_unreachable"
    assert env.cluster.where(vm) == {"node1": "running"}


def test_destination_that_hangs_costs_the_call_timeout_then_is_refused(env: SimEnv) -> None:
    vm = env.vm()
    env.cluster.host("node2").hangs = True
    t0 = env.clock.monotonic()
    with pytest.raises(MigrationRefused):
        env.migrate(vm, "node2")
    assert env.clock.monotonic() - t0 >= env.cluster.call_timeout_s
    assert env.cluster.where(vm) == {"node1": "running"}


def test_source_unreachable_while_running_then_back_records_the_true_outcome(
        env: SimEnv) -> None:
    """The job goes on between the hosts while Ferry cannot see the source; once it
    answers again, settling reads where the guest went."""
    vm = env.vm(memory=256, dirty=4, wss=32)
    src = env.cluster.host("node1")

    def lose() -> None:
        src.unreachable = True

    def back() -> None:
        src.unreachable = False

    env.in_job(1.5, lose)
    env.in_job(19, back)
    m = env.migrate(vm, "node2", bandwidth_mib_s=16)
    assert m.state == MigrationState.COMPLETED, m.error
    kinds = env.kinds(m)
    assert K.JOB_FAILED in kinds and K.UNREACHABLE in kinds  # the call was lost, not the job
    assert env.cluster.where(vm) == {"node2": "running"}
    assert env.svc.vms.get(vm).host == "node2"


def test_a_lost_call_is_followed_and_its_policy_still_applies(env: SimEnv) -> None:
    """The source's daemon stops answering for 20 s: the migrate call dies with its
    connection, the job does not.  Ferry follows the job once the source answers and
    its policy still switches the non-converging guest to post-copy."""
    vm = env.vm(memory=512, dirty=24, wss=256)
    src = env.cluster.host("node1")
    env.in_job(2, lambda: setattr(src, "hangs", True))
    env.in_job(22, lambda: setattr(src, "hangs", False))
    m = env.migrate(vm, "node2", bandwidth_mib_s=16)
    assert m.state == MigrationState.COMPLETED, m.error
    kinds = env.kinds(m)
    assert kinds.index(K.JOB_FAILED) < kinds.index(K.REATTACHED)
    assert K.START_POSTCOPY in kinds, kinds
    assert env.cluster.where(vm) == {"node2": "running"}


def test_no_switch_to_postcopy_while_the_destination_does_not_answer(env: SimEnv) -> None:
    """Post-copy hands the guest to the destination for good: while its daemon does
    not answer, pre-copy goes on; the switch comes once it answers again."""
    vm = env.vm(memory=512, dirty=24, wss=256)
    dst = env.cluster.host("node2")
    env.in_job(2, lambda: setattr(dst, "hangs", True))
    env.in_job(59, lambda: setattr(dst, "hangs", False))
    m = env.migrate(vm, "node2", bandwidth_mib_s=16, policy="postcopy")
    assert m.state == MigrationState.COMPLETED, m.error
    events = env.svc.store.get(m.id).events
    kinds = [e.kind for e in events]
    assert kinds.count(K.START_POSTCOPY_FAILED) == 1  # said once, not every sample
    switched = next(e for e in events if e.kind == K.START_POSTCOPY)
    assert (switched.at - m.created_at).total_seconds() >= 60  # not before it answered
    assert env.cluster.where(vm) == {"node2": "running"}


def test_destination_unreachable_at_settle_is_unknown_and_touches_nothing(
        env: SimEnv) -> None:
    vm = env.vm(memory=256, dirty=4, wss=32)
    env.in_job(0.5, lambda: setattr(env.cluster.host("node2"), "unreachable", True))
    m = env.migrate(vm, "node2")
    assert m.state == MigrationState.FAILED
    assert "unknown" in m.error
    kinds = env.kinds(m)
    assert K.UNREACHABLE in kinds and K.CLEANED not in kinds and K.RESUMED not in kinds
    # the job itself finished between the hosts: nothing was undone
    env.cluster.host("node2").unreachable = False
    assert env.cluster.where(vm) == {"node2": "running"}
    env.svc.inventory.reconcile()
    assert env.svc.vms.get(vm).host == "node2"


def test_destination_back_during_settle_gives_the_verdict(env: SimEnv) -> None:
    vm = env.vm(memory=256, dirty=4, wss=32)
    dst = env.cluster.host("node2")
    env.in_job(0.5, lambda: setattr(dst, "unreachable", True))
    env.in_job(39, lambda: setattr(dst, "unreachable", False))
    m = env.migrate(vm, "node2")
    assert m.state == MigrationState.COMPLETED, m.error
    assert env.cluster.where(vm) == {"node2": "running"}


def test_controller_crash_mid_job_is_followed_after_restart_and_the_copy_tidied(
        env: SimEnv) -> None:
    vm = env.vm(memory=256, dirty=4, wss=32, disks=[("local", 0.5)])
    env.in_job(7, crash)  # during the block copy (0.5 GiB at 32 MiB/s)
    with pytest.raises(ControllerCrash):
        env.migrate(vm, "node2", bandwidth_mib_s=32)
    mid = env.svc.store.list_migrations(vm)[0].id
    assert env.svc.store.get(mid).state == MigrationState.RUNNING
    assert env.cluster.jobs[-1].active  # the hosts carry on without the controller
    svc = env.restart()
    svc.migrations.recover()
    m = svc.store.get(mid)
    assert m.state == MigrationState.COMPLETED, m.error
    kinds = [e.kind for e in m.events]
    assert K.RECOVERING in kinds and K.REATTACHED in kinds
    assert env.cluster.where(vm) == {"node2": "running"}
    # the block-migrated disk: the source's copy deleted, the record follows the VM
    assert K.STORAGE in kinds
    vol = next(v for v in svc.volumes.list_volumes() if v.pool == "local")
    assert vol.host == "node2"
    assert env.cluster.files.dir("node1", "/srv/local") == {}
    assert vol.name in env.cluster.files.dir("node2", "/srv/local")
    assert svc.vms.get(vm).state == VmState.RUNNING


def test_controller_crash_while_the_guest_is_measured_follows_its_staged_job(
        env: SimEnv) -> None:
    """The job starts staged before the guest is measured; a controller that dies
    meanwhile leaves no plan: the restarted one follows the job at its own rate
    (libvirt's defaults, no adapter) to its end, and frees the VM."""
    vm = env.vm(memory=256, dirty=4, wss=32)
    env.at(0.5, crash)  # while the guest is measured, its job staged
    with pytest.raises(ControllerCrash):
        env.migrate(vm, "node2")
    assert len(env.cluster.jobs) == 1 and env.cluster.jobs[0].staged
    svc = env.restart()
    svc.migrations.recover()
    m = svc.store.get(svc.store.list_migrations(vm)[0].id)
    assert m.state == MigrationState.COMPLETED, m.error
    released = [e for e in m.events if e.kind == K.RELEASED]
    assert len(released) == 1 and "after a restart" in released[0].message
    assert K.MEASURED not in [e.kind for e in m.events]
    assert env.cluster.where(vm) == {"node2": "running"}
    assert svc.vms.get(vm).state == VmState.RUNNING
    assert svc.migrations.start(vm, "node1").state == MigrationState.COMPLETED


def test_the_database_holds_one_unfinished_migration_per_vm(env: SimEnv) -> None:
    """Two controllers on one database both passing their own checks: the second
    insert is refused by the database (a partial unique index)."""
    vm = env.vm()
    with env.svc.db.session() as s:
        s.add(MigrationRow(vm=vm, source="node1", destination="node2", state="running"))
    with pytest.raises(Conflict), env.svc.db.session() as s:
        s.add(MigrationRow(vm=vm, source="node1", destination="node3", state="queued"))
    with env.svc.db.session() as s:  # finished ones do not count
        s.add(MigrationRow(vm=vm, source="node1", destination="node3", state="failed"))


def test_the_policy_is_resumed_after_a_restart(env: SimEnv) -> None:
    """auto, interrupted by a crash before it could act: the restarted controller
    raises the limit and switches to post-copy as the first one would have."""
    env.cluster.set_link("node1", "node2", 32)
    vm = env.vm(memory=256, dirty=64, wss=160)
    env.in_job(3, crash)
    with pytest.raises(ControllerCrash):
        env.migrate(vm, "node2", policy="auto")
    mid = env.svc.store.list_migrations(vm)[0].id
    assert K.START_POSTCOPY not in env.kinds(env.svc.store.get(mid))
    svc = env.restart()
    svc.migrations.recover()
    m = svc.store.get(mid)
    assert m.state == MigrationState.COMPLETED, m.error
    kinds = [e.kind for e in m.events]
    assert kinds.index(K.RECOVERING) < kinds.index(K.START_POSTCOPY)
    assert env.cluster.where(vm) == {"node2": "running"}


def test_a_host_that_answers_but_cannot_list_its_domains_stays_up(env: SimEnv) -> None:
    vm = env.vm(host="node2")
    env.cluster.host("node2").faults.domains_locked = True
    env.svc.inventory.reconcile()
    host = env.svc.hosts.get("node2")
    assert host.state == HostState.UP and "domains not read" in host.error
    assert env.svc.vms.get(vm).host == "node2"  # left as recorded, not 'missing'
    env.cluster.host("node2").faults.domains_locked = False
    env.svc.inventory.reconcile()
    assert env.svc.hosts.get("node2").error == ""


def test_a_completed_move_is_recorded_on_the_destination_even_if_it_then_vanishes(
        env: SimEnv) -> None:
    """Settling saw the guest on node2; node2 stops answering before the reconcile
    that follows: the VM's record says node2 all the same (lab: a cut controller)."""
    vm = env.vm(memory=256, dirty=4, wss=32)
    reconcile = env.svc.inventory.reconcile
    calls: list[int] = []

    def reconcile_with_node2_gone() -> None:
        calls.append(1)
        if len(calls) > 1:  # the first is the request's, before the move
            env.cluster.host("node2").unreachable = True
        reconcile()

    env.svc.migrations.inventory.reconcile = reconcile_with_node2_gone  # type: ignore[method-assign]
    m = env.migrate(vm, "node2")
    assert m.state == MigrationState.COMPLETED
    v = env.svc.vms.get(vm)
    assert v.host == "node2" and v.state == VmState.RUNNING


def test_source_qemu_killed_mid_job_is_settled_at_once_not_at_the_hard_stop(
        env: SimEnv) -> None:
    """libvirt answers job questions about a domain whose QEMU died with "domain is
    not running": no job to follow (the lab waited for the hard stop before)."""
    vm = env.vm(memory=256, dirty=4, wss=32)
    env.in_job(2, lambda: env.cluster.kill_domain("node1", vm))
    m = env.migrate(vm, "node2", bandwidth_mib_s=2)
    assert m.state == MigrationState.FAILED, m
    kinds = env.kinds(m)
    assert K.TIMEOUT not in kinds and K.ABORT_FAILED not in kinds, kinds
    assert "running" not in env.cluster.where(vm).values()


def test_a_guest_that_cannot_be_measured_has_its_staged_job_aborted(
        env: SimEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """The job starts staged while the guest is measured; a measurement that fails
    leaves no plan: the job is aborted, the guest stays, the migration fails with why
    (fails when a job trickles on unplanned, or nothing records the reason)."""
    vm = env.vm(memory=256, dirty=4, wss=32)

    def refuse(*_a: object, **_k: object) -> float:
        raise HypervisorError("calc-dirty-rate: not supported")

    monkeypatch.setattr(env.cluster.host("node1"), "dirty_rate_mib_s", refuse)
    m = env.migrate(vm, "node2")
    assert m.state == MigrationState.FAILED and "cannot measure" in m.error, m.error
    kinds = env.kinds(m)
    assert kinds.index(K.STAGED) < kinds.index(K.ABANDONED) and K.RELEASED not in kinds
    assert len(env.cluster.jobs) == 1 and not env.cluster.jobs[0].active
    assert env.cluster.where(vm) == {"node1": "running"}
    assert env.svc.vms.get(vm).state == VmState.RUNNING
