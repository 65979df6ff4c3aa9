"""Encrypted migration streams: on by default between hosts registered with QEMU
migration certificates, in clear only when asked, refused where one side cannot."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from ferry.db.models import HostRow
from ferry.domain.models import MigrationState
from ferry.errors import MigrationRefused
from ferry.service.drain_plan import DrainRequest
from tests.sim.conftest import SimEnv


def _tls(env: SimEnv, *hosts: str) -> None:
    with env.svc.db.session() as s:
        s.execute(update(HostRow).where(HostRow.name.in_(hosts)).values(migration_tls=True))


def test_between_tls_hosts_the_stream_is_encrypted_unless_asked_otherwise(
        env: SimEnv) -> None:
    _tls(env, "node1", "node2")
    vm = env.vm()
    m = env.migrate(vm, "node2")
    assert m.state == MigrationState.COMPLETED and m.encrypted is True
    assert env.cluster.jobs[-1].opts.tls  # what libvirt was asked: VIR_MIGRATE_TLS
    back = env.migrate(vm, "node1", tls=False)
    assert back.state == MigrationState.COMPLETED and back.encrypted is False
    assert not env.cluster.jobs[-1].opts.tls


def test_one_side_without_certificates_is_refused_unless_clear_is_asked(env: SimEnv) -> None:
    _tls(env, "node1", "node2")
    vm = env.vm()
    with pytest.raises(MigrationRefused) as err:
        env.migrate(vm, "node3")
    assert err.value.reason == "tls_unavailable"
    assert "node3 has no migration certificates" in str(err.value)
    assert "--no-tls" in str(err.value)
    assert env.cluster.where(vm) == {"node1": "running"} and env.cluster.jobs == []
    m = env.migrate(vm, "node3", tls=False)
    assert m.state == MigrationState.COMPLETED and m.encrypted is False


def test_tls_asked_between_hosts_without_certificates_is_refused(env: SimEnv) -> None:
    vm = env.vm()
    with pytest.raises(MigrationRefused, match="node1 and node2 have no migration"):
        env.migrate(vm, "node2", tls=True)
    m = env.migrate(vm, "node2")  # neither has certificates: in clear, as before
    assert m.state == MigrationState.COMPLETED and m.encrypted is False


def test_the_link_is_learnt_per_mode(env: SimEnv) -> None:
    _tls(env, "node1", "node2")
    vm = env.vm(dirty=8, wss=64)
    env.migrate(vm, "node2", tls=False)  # a plain move teaches the link
    h = env.svc.store.history(vm, "node2", "node1", encrypted=True)
    assert h.link_bytes_s and "no encrypted migration between these hosts yet" in h.link_how
    m = env.migrate(vm, "node1")  # encrypted
    h = env.svc.store.history(vm, "node1", "node2", encrypted=True)
    assert h.link_how == f"measured on migration {m.id}"
    h = env.svc.store.history(vm, "node1", "node2", encrypted=False)
    assert h.link_how != f"measured on migration {m.id}"  # the plain one


def test_a_drain_encrypts_by_default_and_in_clear_with_no_tls(env: SimEnv) -> None:
    _tls(env, "node1", "node2", "node3")
    vms = [env.vm("a1"), env.vm("b1", memory=128)]
    d = env.svc.drains.start(DrainRequest("node1"))
    d = env.svc.drains.drains.get(d["id"])
    assert d["state"] == "completed", d
    assert all(env.svc.store.get(m["migration"]).encrypted is True for m in d["moves"])
    env.svc.drains.activate("node1")
    for vm in vms:
        env.migrate(vm, "node1")
    d = env.svc.drains.start(DrainRequest("node1", tls=False))
    d = env.svc.drains.drains.get(d["id"])
    assert d["state"] == "completed" and d["request"]["tls"] is False, d
    assert all(env.svc.store.get(m["migration"]).encrypted is False for m in d["moves"])
