"""Pools: register a dir-shared, local or rbd pool, define it on the hosts, remove it."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from sqlalchemy import select

from ferry.db.models import HostRow, PoolRow, VolumeRow
from ferry.domain.models import HostState, Pool, PoolKind
from ferry.domain.names import (
    check_ceph_name,
    check_cephx_key,
    check_monitor,
    check_name,
    check_path,
)
from ferry.errors import Conflict, InvalidRequest, NotFound, Unavailable
from ferry.hypervisor.base import StorageOps
from ferry.hypervisor.errors import HypervisorError
from ferry.service import convert
from ferry.service.connections import HostConnections
from ferry.service.database import Database
from ferry.service.secrets import SecretBox
from ferry.storage.specs import on_host, pool_spec

# Never a pool: the system's own directories (a pool's volumes are created in it).
SYSTEM_DIRS = {"bin", "boot", "dev", "etc", "lib", "lib64", "proc", "root", "run", "sbin",
               "sys", "usr"}
SYSTEM_PATHS = {"/var", "/var/lib", "/var/lib/libvirt", "/var/log", "/var/run", "/tmp", "/home"}


def define_on(host: StorageOps, pool: Pool, key: str) -> bool:
    """Secret (rbd) then pool; starting an rbd pool connects to Ceph with the key.
    True if the pool was defined now (False: it was there already)."""
    if pool.kind == PoolKind.RBD:
        host.ensure_ceph_secret(pool.secret_uuid, pool.user, key)
    return host.ensure_pool(pool_spec(pool))


def _undefine_on(host: StorageOps, pool: Pool) -> None:
    try:
        host.remove_pool(pool.name)
        if pool.secret_uuid:
            host.remove_secret(pool.secret_uuid)
    except HypervisorError:
        pass  # best effort while undoing; `pool show` reports leftovers


class PoolService:
    def __init__(self, db: Database, conns: HostConnections, box: SecretBox) -> None:
        self.db, self.conns, self.box = db, conns, box

    def seal_stored_keys(self, box: SecretBox | None = None) -> int:
        """(Re)seal every stored key with `box`'s newest key (default: ours); keys
        stored in clear by an older Ferry are sealed on the way.  Returns how many."""
        box = box or self.box
        n = 0
        with self.db.session() as s:
            for row in s.scalars(select(PoolRow).where(PoolRow.key != "")):
                row.key = box.seal(self.box.open(row.key))
                n += 1
        return n

    def list_pools(self) -> list[Pool]:
        with self.db.session() as s:
            return [convert.pool(r) for r in s.scalars(select(PoolRow).order_by(PoolRow.name))]

    def get(self, name: str) -> Pool:
        with self.db.session() as s:
            row = s.scalar(select(PoolRow).where(PoolRow.name == name))
            if row is None:
                raise NotFound(f"no pool named {name!r}")
            return convert.pool(row)

    def _validate(self, name: str, kind: str, path: str, hosts: list[str],
                  monitors: list[str], rbd_pool: str, user: str, key: str) -> PoolKind:
        check_name("pool", name)
        try:
            k = PoolKind(kind)
        except ValueError:
            raise InvalidRequest(
                f"pool type must be one of {', '.join(p.value for p in PoolKind)}",
                {"field": "kind"}) from None
        for h in hosts:
            check_name("host", h)
        if k == PoolKind.RBD:
            if path:
                raise InvalidRequest("an rbd pool has no path")
            if not monitors:
                raise InvalidRequest("an rbd pool needs at least one monitor (host:port)")
            for m in monitors:
                check_monitor(m)
            check_ceph_name("rbd_pool", rbd_pool)
            check_ceph_name("user", user)
            check_cephx_key(key)
        else:
            if monitors or rbd_pool or user or key:
                raise InvalidRequest(f"a {k.value} pool takes a path only")
            check_path(path)
            top = path.split("/")[1]
            if top in SYSTEM_DIRS or path in SYSTEM_PATHS:
                raise InvalidRequest(f"{path} is a system directory, not a place for a pool",
                                     {"field": "path"})
        with self.db.session() as s:
            if s.scalar(select(PoolRow).where(PoolRow.name == name)) is not None:
                raise Conflict(f"pool {name!r} already exists")
            for other in s.scalars(select(PoolRow)):
                if k != PoolKind.RBD and other.path and \
                        other.path.rstrip("/") == path.rstrip("/"):
                    raise Conflict(f"pool {other.name} already uses {path}")
                if (k == PoolKind.RBD and other.rbd_pool == rbd_pool
                        and set(other.monitors) & set(monitors)):
                    raise Conflict(f"pool {other.name} already is Ceph pool {rbd_pool}")
            known = {r.name for r in s.scalars(select(HostRow))}
            missing = [h for h in hosts if h not in known]
            if missing:
                raise NotFound(f"no host named {', '.join(missing)}")
        return k

    def add(self, name: str, kind: str, path: str = "", hosts: list[str] | None = None,
            monitors: list[str] | None = None, rbd_pool: str = "", user: str = "",
            key: str = "") -> Pool:
        """Register the pool and define it (and for rbd the cephx secret) on its hosts.

        All or nothing on the hosts that are up: a host that cannot define it (e.g.
        cannot reach Ceph) undoes the others and the pool is not registered."""
        hosts, monitors = list(hosts or []), list(monitors or [])
        k = self._validate(name, kind, path, hosts, monitors, rbd_pool, user, key)
        pool = Pool(name=name, kind=k, path=path, hosts=hosts, monitors=monitors,
                    rbd_pool=rbd_pool, user=user,
                    secret_uuid=str(uuid.uuid4()) if k == PoolKind.RBD else "",
                    has_key=bool(key))
        done: list[StorageOps] = []  # hosts where this call defined the pool
        for hname, uri in self._up_hosts(pool):
            host = self.conns.get(uri)
            try:
                if define_on(host, pool, key):
                    done.append(host)
            except HypervisorError as exc:
                for h in done:  # undo only what this call defined
                    _undefine_on(h, pool)
                if pool.secret_uuid:
                    with contextlib.suppress(HypervisorError):
                        host.remove_secret(pool.secret_uuid)  # a fresh UUID: ours
                raise Unavailable(f"pool {name} cannot be set up on {hname}: {exc}") from exc
        with self.db.session() as s:
            s.add(PoolRow(name=name, kind=k.value, path=path, hosts=hosts, monitors=monitors,
                          rbd_pool=rbd_pool, user=user, key=self.box.seal(key),
                          secret_uuid=pool.secret_uuid))
        return self.get(name)

    def _up_hosts(self, pool: Pool) -> list[tuple[str, str]]:
        with self.db.session() as s:
            return [(r.name, r.uri) for r in s.scalars(select(HostRow).order_by(HostRow.name))
                    if r.state == HostState.UP and on_host(pool, r.name)]

    def attach(self, host_name: str, host: StorageOps) -> list[str]:
        """Define every pool meant for this host on it (a host added after its pools).
        Returns what failed, for the caller to report; the host stays usable."""
        errors = []
        with self.db.session() as s:
            rows = [(convert.pool(r), self.box.open(r.key)) for r in s.scalars(select(PoolRow))]
        for pool, key in rows:
            if on_host(pool, host_name):
                try:
                    define_on(host, pool, key)
                except HypervisorError as exc:
                    errors.append(f"pool {pool.name}: {exc}")
        return errors

    def status(self, name: str) -> dict[str, Any]:
        """The pool, its volumes, and how each host's libvirt sees it now."""
        pool = self.get(name)
        with self.db.session() as s:
            hosts = [(r.name, r.uri, r.state) for r in s.scalars(select(HostRow).order_by(
                HostRow.name))]
            vols = [convert.volume(v) for v in s.scalars(
                select(VolumeRow).where(VolumeRow.pool == name).order_by(VolumeRow.name))]
        per_host: dict[str, Any] = {}
        for hname, uri, state in hosts:
            if not on_host(pool, hname):
                continue
            if state != HostState.UP:
                per_host[hname] = {"state": "host unreachable"}
                continue
            host = self.conns.get(uri)
            try:
                st = host.pool_state(pool_spec(pool))
                entry: dict[str, Any] = {
                    "state": ("active" if st.active else "inactive") if st.defined
                    else "missing",
                    "capacity_bytes": st.capacity_bytes, "available_bytes": st.available_bytes}
                if st.defined and not st.matches:
                    entry["state"] = "conflict: a different pool of that name"
                if pool.kind == PoolKind.RBD:
                    entry["secret"] = ("present" if host.secret_present(pool.secret_uuid)
                                       else "missing")
            except HypervisorError as exc:
                entry = {"state": f"error: {exc}"}
            per_host[hname] = entry
        return {"pool": pool, "hosts": per_host, "volumes": vols}

    def remove(self, name: str) -> None:
        """Undefine the pool (and its secret) on every host; the data stays.  Refused
        while Ferry still has volumes in it."""
        pool = self.get(name)
        with self.db.session() as s:
            n = len(list(s.scalars(select(VolumeRow).where(VolumeRow.pool == name))))
        if n:
            raise Conflict(f"pool {name} still has {n} volume(s): delete them first")
        for _hname, uri in self._up_hosts(pool):
            _undefine_on(self.conns.get(uri), pool)
        with self.db.session() as s:
            row = s.scalar(select(PoolRow).where(PoolRow.name == name))
            if row is not None:
                s.delete(row)
