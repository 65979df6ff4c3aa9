"""Where each disk really lives decides how it moves: shared (rbd, dir-shared) or
copied (local, block migration), checked through each host before any byte moves."""

from __future__ import annotations

import pytest

from ferry.domain.models import MigrationState
from ferry.domain.vocab import EventKind as K
from ferry.errors import MigrationRefused
from tests.sim.conftest import SimEnv

KEY = "AQBzcW1mAAAAABAAc2ltdWxhdGVkLWNlcGgta2V5LTE="


def _ceph(env: SimEnv) -> None:
    env.cluster.add_ceph_pool("vms", "ferry", KEY)
    env.svc.pools.add("ceph", "rbd", monitors=["198.18.0.2:6789"], rbd_pool="vms",
                      user="ferry", key=KEY)


def test_rbd_disk_is_shared_and_a_missing_secret_is_repaired(env: SimEnv) -> None:
    _ceph(env)
    vm = env.vm(disks=[("ceph", 1)])
    m = env.migrate(vm, "node2")
    assert m.state == MigrationState.COMPLETED and not m.disk_bytes
    pool = env.svc.pools.get("ceph")
    env.cluster.host("node1").remove_secret(pool.secret_uuid)  # an operator's slip
    back = env.migrate(vm, "node1")
    assert back.state == MigrationState.COMPLETED
    lines = [e.message for e in env.svc.store.get(back.id).events if e.kind == K.PRECHECK]
    assert any(line.startswith("repaired: defined the missing ceph secret") for line in lines)
    assert env.cluster.host("node1").secret_present(pool.secret_uuid)


def test_destination_that_cannot_reach_ceph_is_refused_before_any_transfer(
        env: SimEnv) -> None:
    _ceph(env)
    vm = env.vm(disks=[("ceph", 1)])
    env.cluster.host("node3").own_storage.reaches_ceph = False
    with pytest.raises(MigrationRefused) as err:
        env.migrate(vm, "node3")
    assert err.value.reason == "storage_not_shared"
    assert "/web1-data1" in str(err.value.details["disks"])
    assert K.STARTED not in env.kinds(env.svc.store.list_migrations(vm)[0])
    assert env.cluster.where(vm) == {"node1": "running"}


def test_a_dir_shared_pool_that_is_not_shared_is_refused(env: SimEnv) -> None:
    env.svc.pools.add("fake", "dir-shared", "/srv/not-mounted")  # the same path, not one disk
    vm = env.vm(disks=[("fake", 1)])
    with pytest.raises(MigrationRefused) as err:
        env.migrate(vm, "node2")
    assert "not visible" in str(err.value.details["disks"])
    assert env.cluster.where(vm) == {"node1": "running"}


def test_a_pool_the_destination_lacks_is_refused(env: SimEnv) -> None:
    env.svc.pools.add("pair", "dir-shared", "/srv/shared/pair", hosts=["node1", "node2"])
    vm = env.vm(disks=[("pair", 1)])
    with pytest.raises(MigrationRefused, match="not available on node3"):
        env.migrate(vm, "node3")
    assert env.migrate(vm, "node2").state == MigrationState.COMPLETED


def test_local_disk_is_copied_and_the_source_copy_deleted(env: SimEnv) -> None:
    vm = env.vm(disks=[("local", 1)])
    m = env.migrate(vm, "node2")
    assert m.state == MigrationState.COMPLETED
    assert m.disk_bytes and m.disk_bytes >= 2**30
    assert env.cluster.files.dir("node1", "/srv/local") == {}
    assert list(env.cluster.files.dir("node2", "/srv/local")) == ["web1-data1"]
    vol = env.svc.volumes.get("local", "web1-data1")
    assert vol.host == "node2"
    # and back: the name is free again on node1
    assert env.migrate(vm, "node1").state == MigrationState.COMPLETED
    assert env.svc.volumes.get("local", "web1-data1").host == "node1"


def test_failed_block_migration_deletes_the_destinations_copy(env: SimEnv) -> None:
    vm = env.vm(disks=[("local", 1)])
    env.at(3.0, lambda: env.cluster.kill_domain("node2", vm))  # during the disk copy
    m = env.migrate(vm, "node2")
    assert m.state == MigrationState.FAILED
    assert env.cluster.files.dir("node2", "/srv/local") == {}
    assert list(env.cluster.files.dir("node1", "/srv/local")) == ["web1-data1"]
    assert env.svc.volumes.get("local", "web1-data1").host == "node1"
    assert "deleted the destination's copy" in " ".join(
        e.message for e in env.svc.store.get(m.id).events)


def test_a_name_taken_on_the_destination_is_refused(env: SimEnv) -> None:
    vm = env.vm(disks=[("local", 1)])
    env.cluster.files.dir("node2", "/srv/local")["web1-data1"] = 1  # someone else's file
    with pytest.raises(MigrationRefused, match="already has a volume named web1-data1"):
        env.migrate(vm, "node2")
