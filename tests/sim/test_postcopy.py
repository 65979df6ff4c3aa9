"""Post-copy done safely: after the switch the source is never resumed; a post-copy
that broke is `postcopy-paused`, resumed when the link is back (by itself, after a
restart, or by `recover`), and a destination that died takes the guest with it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry.domain.models import MigrationState, VmState
from ferry.domain.vocab import EventKind as K
from ferry.domain.vocab import Policy
from ferry.errors import Conflict
from ferry.hypervisor.types import PostcopyState
from tests.sim.conftest import ControllerCrash, SimEnv, crash, make_env


@pytest.fixture
def auto(tmp_path: Path) -> Iterator[SimEnv]:
    """A controller that resumes a broken post-copy by itself (postcopy_auto_resume)."""
    e = make_env(tmp_path, settings_kw={"postcopy_auto_resume": True})
    yield e
    for s in [e.svc, *e.others]:
        s.shutdown()


def _when_in_postcopy(env: SimEnv, fn: object) -> None:
    """Run `fn` at the first moment (checked every 0.1 s) the job is in post-copy."""
    def check() -> None:
        if env.cluster.jobs and env.cluster.jobs[-1].postcopy:
            fn()  # type: ignore[operator]
        else:
            env.at(env.clock.monotonic() + 0.1, check)

    env.at(0.5, check)


def _slow_postcopy(env: SimEnv) -> str:
    env.cluster.set_link("node1", "node2", 32)
    return env.vm(memory=256, dirty=64, wss=160)


def _cut_for(env: SimEnv, seconds: float) -> None:
    """Cut the link once the job is in post-copy; it comes back `seconds` later."""
    def cut() -> None:
        env.cluster.link_down("node1", "node2")
        env.at(env.clock.monotonic() + seconds,
               lambda: env.cluster.link_up("node1", "node2"))

    _when_in_postcopy(env, cut)


def test_link_lost_in_postcopy_is_resumed_when_it_returns(auto: SimEnv) -> None:
    env = auto
    vm = _slow_postcopy(env)
    _cut_for(env, 120)
    m = env.migrate(vm, "node2", policy=Policy.POSTCOPY)
    assert m.state == MigrationState.COMPLETED, m.error
    kinds = env.kinds(m)
    assert K.POSTCOPY_PAUSED in kinds and K.RESUMED not in kinds
    assert env.cluster.where(vm) == {"node2": "running"}
    assert env.svc.vms.get(vm).host == "node2"


def test_still_broken_after_an_hour_stays_paused_and_locked_until_recovered(
        auto: SimEnv) -> None:
    env = auto
    vm = _slow_postcopy(env)
    _when_in_postcopy(env, lambda: env.cluster.link_down("node1", "node2"))
    m = env.migrate(vm, "node2", policy=Policy.POSTCOPY)
    assert m.state == MigrationState.POSTCOPY_PAUSED
    assert env.svc.vms.get(vm).state == VmState.MIGRATING  # nothing else may touch it
    assert env.cluster.where(vm) == {"node1": "paused", "node2": "running"}
    with pytest.raises(Conflict, match="cannot go back"):
        env.svc.migrations.cancel(m.id)
    with pytest.raises(Conflict):
        env.svc.vms.delete(vm, "keep")
    assert "ferry migration recover" in env.svc.store.get(m.id).events[-1].message
    env.cluster.link_up("node1", "node2")
    assert env.svc.migrations.resume_postcopy(m.id).state == MigrationState.COMPLETED
    assert env.cluster.where(vm) == {"node2": "running"}
    assert env.svc.vms.get(vm).state == VmState.RUNNING


def test_a_restart_while_postcopy_is_paused_resumes_it(auto: SimEnv) -> None:
    env = auto
    vm = _slow_postcopy(env)

    def cut_then_crash() -> None:
        env.cluster.link_down("node1", "node2")
        env.at(env.clock.monotonic() + 60, crash)

    _when_in_postcopy(env, cut_then_crash)
    with pytest.raises(ControllerCrash):
        env.migrate(vm, "node2", policy=Policy.POSTCOPY)
    mid = env.svc.store.list_migrations(vm)[0].id
    assert env.svc.store.get(mid).state == MigrationState.POSTCOPY_PAUSED
    env.cluster.link_up("node1", "node2")
    svc = env.restart()
    svc.migrations.recover()
    assert svc.store.get(mid).state == MigrationState.COMPLETED
    assert env.cluster.where(vm) == {"node2": "running"}


def test_destination_dying_after_the_switch_loses_the_guest_and_never_resumes_the_source(
        env: SimEnv) -> None:
    vm = _slow_postcopy(env)
    _when_in_postcopy(env, lambda: env.cluster.kill_domain("node2", vm))
    m = env.migrate(vm, "node2", policy=Policy.POSTCOPY)
    assert m.state == MigrationState.FAILED and "lost" in m.error
    assert "stale" in m.error
    assert K.RESUMED not in env.kinds(m)
    assert env.cluster.where(vm) == {"node1": "paused"}  # for an operator, not resumed


def test_by_default_a_broken_postcopy_waits_for_the_operator(env: SimEnv) -> None:
    vm = _slow_postcopy(env)
    _cut_for(env, 60)
    m = env.migrate(vm, "node2", policy=Policy.POSTCOPY)
    assert m.state == MigrationState.POSTCOPY_PAUSED  # not resumed unasked
    assert "ferry migration recover" in env.svc.store.get(m.id).events[-1].message
    env.cluster.run_until(env.clock.monotonic() + 120)  # the link is back
    assert env.cluster.where(vm) == {"node1": "paused", "node2": "running"}
    m = env.svc.migrations.resume_postcopy(m.id)
    assert m.state == MigrationState.COMPLETED, m.error
    assert env.cluster.where(vm) == {"node2": "running"}


def test_recover_while_the_link_is_still_down_says_so_and_stays_paused(env: SimEnv) -> None:
    vm = _slow_postcopy(env)
    _when_in_postcopy(env, lambda: env.cluster.link_down("node1", "node2"))
    m = env.migrate(vm, "node2", policy=Policy.POSTCOPY)
    m = env.svc.migrations.resume_postcopy(m.id)
    assert m.state == MigrationState.POSTCOPY_PAUSED
    assert env.cluster.where(vm) == {"node1": "paused", "node2": "running"}


def test_a_paused_postcopy_that_ends_by_itself_is_recorded(env: SimEnv) -> None:
    """QEMU's connection survived the cut and it finished by itself (seen on the lab
    with a dropped, not reset, link): the background look settles and records it."""
    vm = _slow_postcopy(env)
    _when_in_postcopy(env, lambda: env.cluster.link_down("node1", "node2"))
    m = env.migrate(vm, "node2", policy=Policy.POSTCOPY)
    assert m.state == MigrationState.POSTCOPY_PAUSED
    env.svc.migrations.look_at_paused()
    assert env.svc.store.get(m.id).state == MigrationState.POSTCOPY_PAUSED  # nothing new
    env.cluster.link_up("node1", "node2")
    for host in ("node1", "node2"):  # as if virsh (or QEMU itself) finished it
        env.cluster.host(host).domains[vm].postcopy = PostcopyState.NONE
    del env.cluster.host("node1").domains[vm]
    env.svc.migrations.look_at_paused()
    m = env.svc.store.get(m.id)
    assert m.state == MigrationState.COMPLETED, m.error
    assert env.svc.vms.get(vm).host == "node2"


def test_a_lost_call_whose_postcopy_then_broke_is_not_followed_forever(env: SimEnv) -> None:
    """The source's daemon stops answering in post-copy (the call dies) and the link
    breaks for good: libvirt keeps the broken post-copy's job active, so following
    it by job statistics alone never ended.  It ends as postcopy-paused."""
    vm = _slow_postcopy(env)
    src = env.cluster.host("node1")

    def lose_all() -> None:
        src.hangs = True
        env.cluster.link_down("node1", "node2")
        env.at(env.clock.monotonic() + 20, lambda: setattr(src, "hangs", False))

    _when_in_postcopy(env, lose_all)
    m = env.migrate(vm, "node2", policy=Policy.POSTCOPY)
    assert m.state == MigrationState.POSTCOPY_PAUSED, m.error
    kinds = env.kinds(m)
    assert K.JOB_FAILED in kinds
    assert env.cluster.where(vm) == {"node1": "paused", "node2": "running"}
    assert env.svc.vms.get(vm).state == VmState.MIGRATING  # locked until recovered


def test_the_switch_gives_postcopy_a_share_of_the_link_and_drains_first(env: SimEnv) -> None:
    """Pages the guest touches after the switch queue behind post-copy's background
    copy: it gets a quarter of the rate pre-copy reached, and pre-copy is slowed
    just before the switch so that the switch does not queue either."""
    vm = _slow_postcopy(env)
    m = env.migrate(vm, "node2", policy=Policy.POSTCOPY)
    assert m.state == MigrationState.COMPLETED, m.error
    events = env.svc.store.get(m.id).events
    kinds = [e.kind for e in events]
    assert kinds.index(K.SET_BANDWIDTH) == kinds.index(K.START_POSTCOPY) + 1, kinds
    said = next(e.message for e in events if e.kind == K.SET_BANDWIDTH)
    assert "post-copy background copy at 8 MiB/s" in said, said  # 25 % of 32 MiB/s
