"""The controller's database stops answering mid-migration (`DatabaseUnavailable`).

The outage is made where the driver would report it: every statement fails
with the driver's own `OperationalError` while `down` is set (tests/db does
the same with a real PostgreSQL server stopped and started).  The hosts are
simulated, so the job's timing is exact.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from sqlalchemy import event

from ferry.domain.models import MigrationState, VmState
from ferry.domain.vocab import EventKind as K
from ferry.errors import DatabaseUnavailable
from tests.sim.conftest import SimEnv, make_env


class Outage:
    """Statements fail while `down`."""

    def __init__(self, env: SimEnv) -> None:
        self.env, self.down = env, False
        self._armed: tuple[str, float] | None = None
        event.listen(env.svc.db.engine, "before_cursor_execute", self._check)

    def _check(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if self._armed and self._armed[0] in statement:
            until, self._armed = self._armed[1], None
            self.down = True
            self.env.at(until, lambda: setattr(self, "down", False))
        if self.down:
            raise sqlite3.OperationalError("disk I/O error")

    def between(self, start: float, end: float | None) -> None:
        self.env.at(start, lambda: setattr(self, "down", True))
        if end is not None:
            self.env.at(end, lambda: setattr(self, "down", False))

    def once_running(self, after_s: float, for_s: float | None,
                     during: Any = None) -> None:
        """Down `after_s` into the migration job (measuring before it takes a while)
        for `for_s` (None: until set otherwise); `during` runs 1 s into the outage."""
        self.env.in_job(after_s, lambda: setattr(self, "down", True))
        if for_s is not None:
            self.env.in_job(after_s + for_s, lambda: setattr(self, "down", False))
        if during is not None:
            self.env.in_job(after_s + 1.0, during)

    def from_statement(self, fragment: str, until: float) -> None:
        """Down from the first statement containing `fragment` (itself included)."""
        self._armed = (fragment, until)


def test_database_away_while_the_job_runs_the_job_goes_on_and_all_is_recorded(
        env: SimEnv) -> None:
    vm = env.vm(memory=512, dirty=8, wss=64)
    outage = Outage(env)
    answers: list[str] = []

    def ask() -> None:
        try:
            env.svc.store.list_migrations()
            answers.append("answered")
        except DatabaseUnavailable as exc:
            answers.append(f"{exc.status} {exc.message}")

    outage.once_running(2.0, 37.0, during=ask)  # the job takes ~11 s
    m = env.migrate(vm, "node2", bandwidth_mib_s=16)
    assert answers == ["503 the database does not answer: OperationalError"]
    assert m.state == MigrationState.COMPLETED, m.error
    assert env.cluster.where(vm) == {"node2": "running"}
    assert env.svc.vms.get(vm).host == "node2" and env.svc.vms.get(vm).state == VmState.RUNNING
    kinds = env.kinds(m)
    assert kinds[-1] == K.RESOLVED  # events kept in memory, written in order
    samples = env.svc.store.samples(m.id)
    assert [s.t_ms for s in samples] == sorted(s.t_ms for s in samples)
    assert samples[-1].t_ms > 9000  # the samples taken during the outage too
    assert env.svc.store.dropped == 0
    # the record was written once the database answered, not before
    assert m.finished_at is not None and m.created_at is not None
    assert (m.finished_at - m.created_at).total_seconds() >= 40


def test_database_away_during_prechecks_answers_503_and_frees_the_vm_when_back(
        tmp_path: Any) -> None:
    env = make_env(tmp_path, settings_kw={"database_outage_s": 30.0})
    try:
        vm = env.vm(memory=256)
        outage = Outage(env)
        outage.from_statement("INSERT INTO events", until=45.0)  # the claim's first event
        with pytest.raises(DatabaseUnavailable):  # the request gave up after 30 s
            env.migrate(vm, "node2")
        assert env.clock.monotonic() >= 45.0  # and tidied once the database was back
        m = env.svc.store.list_migrations(vm)[0]
        assert m.state == MigrationState.FAILED and "nothing was started" in m.error
        assert not env.cluster.jobs
        assert env.svc.vms.get(vm).state == VmState.RUNNING
        assert env.migrate(vm, "node2").state == MigrationState.COMPLETED
    finally:
        for s in [env.svc, *env.others]:
            s.shutdown()


def test_database_away_longer_than_the_controller_waits_is_settled_at_restart(
        tmp_path: Any) -> None:
    env = make_env(tmp_path, settings_kw={"database_outage_s": 30.0})
    try:
        vm = env.vm(memory=512, dirty=8, wss=64)
        outage = Outage(env)
        outage.once_running(2.0, None)
        with pytest.raises(DatabaseUnavailable):
            env.migrate(vm, "node2", bandwidth_mib_s=16)
        assert env.cluster.where(vm) == {"node2": "running"}  # the job ended meanwhile
        outage.down = False
        m = env.svc.store.list_migrations(vm)[0]
        assert m.state == MigrationState.RUNNING  # not a guess: nothing was recorded
        svc = env.restart()
        svc.migrations.recover()
        m = svc.store.get(m.id)
        assert m.state == MigrationState.COMPLETED, m.error
        assert svc.vms.get(vm).host == "node2" and svc.vms.get(vm).state == VmState.RUNNING
    finally:
        for s in [env.svc, *env.others]:
            s.shutdown()
