"""Volumes: create (empty or as a copy of another volume), list, show, delete."""

from __future__ import annotations

from sqlalchemy import select

from ferry.db.models import HostRow, VolumeRow
from ferry.domain.models import HostState, Pool, PoolKind, Volume
from ferry.domain.names import check_name
from ferry.errors import Conflict, InvalidRequest, NotFound, Unavailable
from ferry.hypervisor.errors import HypervisorError
from ferry.service import convert
from ferry.service.connections import HostConnections
from ferry.service.database import Database
from ferry.service.pools import PoolService
from ferry.storage.specs import on_host

MIB = 1024 * 1024
MAX_GIB = 16 * 1024


def size_bytes(size_gib: float) -> int:
    """GiB (fractions allowed) to bytes, rounded up to whole MiB."""
    if not 0 < size_gib <= MAX_GIB:
        raise InvalidRequest(f"size must be more than 0 and at most {MAX_GIB} GiB",
                             {"field": "size_gib"})
    return -(-int(size_gib * 1024 * MIB) // MIB) * MIB



class VolumeService:
    def __init__(self, db: Database, conns: HostConnections, pools: PoolService) -> None:
        self.db, self.conns, self.pools = db, conns, pools

    def list_volumes(self, pool: str | None = None) -> list[Volume]:
        with self.db.session() as s:
            q = select(VolumeRow).order_by(VolumeRow.pool, VolumeRow.name)
            if pool is not None:
                q = q.where(VolumeRow.pool == pool)
            return [convert.volume(r) for r in s.scalars(q)]

    def get(self, pool: str, name: str) -> Volume:
        with self.db.session() as s:
            row = s.scalar(select(VolumeRow).where(VolumeRow.pool == pool,
                                                   VolumeRow.name == name))
            if row is None:
                raise NotFound(f"no volume {name!r} in pool {pool!r}")
            return convert.volume(row)

    def _pool_and_host(self, pool_name: str, host: str | None) -> tuple[Pool, str, str]:
        """The pool, and the up host to create through (for a local pool: where it lives)."""
        pool = self.pools.get(pool_name)
        with self.db.session() as s:
            hosts = {r.name: (r.uri, r.state) for r in s.scalars(select(HostRow))}
        if host is not None:
            if host not in hosts:
                raise NotFound(f"no host named {host!r}")
            if not on_host(pool, host):
                raise InvalidRequest(f"pool {pool_name} is not on host {host}")
            candidates = [host]
        elif pool.kind == PoolKind.LOCAL:
            raise InvalidRequest(f"pool {pool_name} is local to each host: say which host")
        else:
            candidates = sorted(h for h in hosts if on_host(pool, h))
        for h in candidates:
            uri, state = hosts[h]
            if state == HostState.UP:
                return pool, h, uri
        raise Unavailable(f"no host of pool {pool_name} is up")

    def create(self, pool: str, name: str, size_gib: float | None = None,
               host: str | None = None, from_volume: str | None = None, *,
               vm: str | None = None, target: str = "", internal_name: bool = False,
               ) -> Volume:
        """Create a raw volume; `from_volume` copies another volume of the same pool
        (an image), `size_gib` may then be omitted (same size) or grow it."""
        if not internal_name:
            check_name("volume", name)
        check_name("pool", pool)
        p, hname, uri = self._pool_and_host(pool, host)
        src: Volume | None = None
        if from_volume is not None:
            src = self.get(pool, from_volume)
            if p.kind == PoolKind.LOCAL and src.host != hname:
                raise InvalidRequest(f"volume {from_volume} lives on {src.host}, not {hname}")
        if size_gib is None and src is None:
            raise InvalidRequest("give a size (GiB) or a volume to copy", {"field": "size_gib"})
        nbytes = size_bytes(size_gib) if size_gib is not None else 0
        if src is not None:
            nbytes = max(nbytes, src.capacity_bytes)
        with self.db.session() as s:
            if s.scalar(select(VolumeRow).where(VolumeRow.pool == pool,
                                                VolumeRow.name == name)) is not None:
                raise Conflict(f"volume {name!r} already exists in pool {pool}")
            # reserve the name first: two concurrent creates cannot both pass
            s.add(VolumeRow(pool=pool, name=name, capacity_bytes=nbytes, path="",
                            host=hname if p.kind == PoolKind.LOCAL else None, vm=vm,
                            target=target))
        conn = self.conns.get(uri)
        try:
            if conn.volume(pool, name) is not None:
                raise Conflict(f"a volume named {name} already exists in pool {pool} on "
                               f"{hname} (not created by Ferry)")
            path = conn.create_volume(pool, name, nbytes, clone_of=from_volume)
        except (HypervisorError, Conflict) as exc:
            self._forget(pool, name)
            if isinstance(exc, Conflict):
                raise
            raise Unavailable(f"could not create volume {name} in pool {pool}: {exc}") from exc
        with self.db.session() as s:
            row = s.scalar(select(VolumeRow).where(VolumeRow.pool == pool,
                                                   VolumeRow.name == name))
            assert row is not None
            row.path = path
        return self.get(pool, name)

    def _forget(self, pool: str, name: str) -> None:
        with self.db.session() as s:
            row = s.scalar(select(VolumeRow).where(VolumeRow.pool == pool,
                                                   VolumeRow.name == name))
            if row is not None:
                s.delete(row)

    def delete(self, pool: str, name: str, *, detached_only: bool = True) -> None:
        """Delete the volume on its storage and forget it.  A volume a VM uses is refused."""
        vol = self.get(pool, name)
        if detached_only and vol.vm is not None:
            raise Conflict(f"volume {name} is attached to VM {vol.vm}: delete the VM first",
                           {"vm": vol.vm})
        _p, hname, uri = self._pool_and_host(pool, vol.host)
        try:
            self.conns.get(uri).delete_volume(pool, name)
        except HypervisorError as exc:
            raise Unavailable(f"could not delete volume {name} on {hname}: {exc}") from exc
        self._forget(pool, name)
