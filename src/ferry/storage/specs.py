"""From Ferry's pools to libvirt definitions and disk XML specs (pure, no I/O)."""

from __future__ import annotations

from ferry.domain.models import Pool, PoolKind, Volume
from ferry.hypervisor.domxml import DiskSpec
from ferry.hypervisor.types import PoolSpec


def pool_spec(pool: Pool) -> PoolSpec:
    """The libvirt pool each host gets for a Ferry pool (same name everywhere)."""
    if pool.kind == PoolKind.RBD:
        return PoolSpec(name=pool.name, kind="rbd", source=pool.rbd_pool,
                        monitors=tuple(pool.monitors), user=pool.user,
                        secret_uuid=pool.secret_uuid)
    return PoolSpec(name=pool.name, kind="dir", path=pool.path)


def disk_spec(pool: Pool, path: str, target: str) -> DiskSpec:
    """How a domain names a volume of `pool`: a file, or an rbd network disk."""
    if pool.kind == PoolKind.RBD:
        return DiskSpec(source=path, target=target, protocol="rbd",
                        hosts=tuple(pool.monitors), user=pool.user,
                        secret_uuid=pool.secret_uuid)
    return DiskSpec(source=path, target=target)


def on_host(pool: Pool, host: str) -> bool:
    """Is the pool meant to be defined on `host`?  (No host list: every host.)"""
    return not pool.hosts or host in pool.hosts


def pool_of(disk: str, pools: list[Pool], volumes: list[Volume]) -> tuple[Pool, str] | None:
    """The pool a domain's disk lives in and the volume's name in it.

    A volume Ferry created is known by its path; any other disk is matched by
    where it is: a file inside a directory pool, or an image of an rbd pool.

    >>> p = Pool("shared", PoolKind.DIR_SHARED, path="/srv/shared")
    >>> pool_of("/srv/shared/web.disk", [p], [])[1]
    'web.disk'
    >>> pool_of("/srv/sharedx/web.disk", [p], []) is None
    True
    """
    by_name = {p.name: p for p in pools}
    for v in volumes:
        if v.path == disk and v.pool in by_name:
            return by_name[v.pool], v.name
    for p in pools:
        prefix = (p.rbd_pool if p.kind == PoolKind.RBD else p.path.rstrip("/")) + "/"
        if disk.startswith(prefix) and "/" not in disk[len(prefix):]:
            return p, disk[len(prefix):]
    return None
