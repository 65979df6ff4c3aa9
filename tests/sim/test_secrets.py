"""Secrets at rest: cephx keys sealed with the controller's key file, files private,
rotation, and no key in any error."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from sqlalchemy import select

from ferry.db.models import PoolRow
from ferry.domain.models import MigrationState
from ferry.errors import Conflict
from ferry.service.wiring import rotate_secret_key
from tests.sim.conftest import SimEnv

KEY = "AQBzcW1mAAAAABAAc2ltdWxhdGVkLWNlcGgta2V5LTE="


def _stored(env: SimEnv) -> str:
    with env.svc.db.session() as s:
        row = s.scalar(select(PoolRow).where(PoolRow.name == "ceph"))
        assert row is not None
        return row.key


def _ceph(env: SimEnv) -> None:
    env.cluster.add_ceph_pool("vms", "ferry", KEY)
    env.svc.pools.add("ceph", "rbd", monitors=["198.18.0.2:6789"], rbd_pool="vms",
                      user="ferry", key=KEY)


def test_keys_are_stored_sealed_and_files_are_private(env: SimEnv, tmp_path: Path) -> None:
    _ceph(env)
    stored = _stored(env)
    assert stored.startswith("fernet:") and KEY not in stored
    files = sorted(tmp_path.glob("ferry.db*"))  # the database, its WAL and shared memory
    assert len(files) >= 2
    assert all(KEY.encode() not in f.read_bytes() for f in files)
    for f in [*files, env.settings.secret_key_path()]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    # and the key still works where it is needed: a missing secret is repaired
    vm = env.vm(disks=[("ceph", 1)])
    env.cluster.host("node2").remove_secret(env.svc.pools.get("ceph").secret_uuid)
    assert env.migrate(vm, "node2").state == MigrationState.COMPLETED


def test_a_key_stored_in_clear_by_an_older_ferry_is_sealed_at_start(env: SimEnv) -> None:
    _ceph(env)
    with env.svc.db.session() as s:
        row = s.scalar(select(PoolRow).where(PoolRow.name == "ceph"))
        assert row is not None
        row.key = KEY  # as session 2 stored it
    env.restart()
    assert _stored(env).startswith("fernet:")
    assert env.svc.pools.box.open(_stored(env)) == KEY


def test_rotation_reseals_every_key_and_drops_the_old_one(env: SimEnv) -> None:
    _ceph(env)
    before, old_keys = _stored(env), env.settings.secret_key_path().read_text()
    env.svc.shutdown()
    assert rotate_secret_key(env.settings) == 1
    after = _stored(env)
    assert after != before and after.startswith("fernet:")
    new_keys = env.settings.secret_key_path().read_text()
    assert len(new_keys.split()) == 1 and new_keys.strip() not in old_keys
    assert env.restart().pools.box.open(after) == KEY


def test_an_integrity_error_quotes_no_values(env: SimEnv) -> None:
    with pytest.raises(Conflict) as err, env.svc.db.session() as s:
        s.add(PoolRow(name="shared", kind="rbd", key="fernet:secret-token-value",
                      secret_uuid=""))
    assert "secret-token-value" not in str(err.value)
    assert "secret-token-value" not in str(err.value.__cause__)
