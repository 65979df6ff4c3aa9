"""Is each disk shared between the source and the destination, or must it be copied?

Decided per disk from where it really lives, by asking the hosts' libvirt:
- rbd: shared when the destination has the cephx secret and its libvirt pool,
  through which it finds the very image (that is a real connection to Ceph
  with that key).  A missing secret or pool is repaired from Ferry's record.
- dir-shared: shared when a marker volume created through the source's
  libvirt shows up in the destination's pool of the same name.
- local: copied (block migration) into the destination's pool of the same
  path, which must exist and have room, and must not already hold the name.
Whatever cannot be shared or copied refuses the migration, with the reason.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field

from ferry.domain.models import Pool, PoolKind, Volume
from ferry.errors import MigrationRefused
from ferry.hypervisor.base import StorageOps
from ferry.hypervisor.errors import HypervisorError
from ferry.hypervisor.types import PoolState
from ferry.storage.specs import on_host, pool_of, pool_spec

MARKER_PREFIX = ".ferry-marker-"


@dataclass(frozen=True)
class DiskDecision:
    disk: str  # as the domain names it
    target: str  # vda, vdb, ...
    pool: str
    volume: str
    copy: bool  # True: block migration copies it; False: both hosts reach it
    reason: str
    capacity_bytes: int = 0


@dataclass(frozen=True)
class StorageCatalog:
    """What Ferry knows of storage: its pools, its volumes, and the rbd pools'
    cephx keys (to define a missing secret; never shown to anyone)."""

    pools: list[Pool]
    volumes: list[Volume]
    keys: dict[str, str] = field(default_factory=dict, repr=False)


@dataclass
class StorageCheck:
    """Per disk: shared with the destination, or copied to it; and what was repaired."""

    disks: list[DiskDecision] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)  # what was fixed on the way

    @property
    def copy_targets(self) -> tuple[str, ...]:
        return tuple(d.target for d in self.disks if d.copy)

    @property
    def copy_bytes(self) -> int:
        return sum(d.capacity_bytes for d in self.disks if d.copy)


class _Refusal(Exception):
    pass


def check_storage(disk_targets: dict[str, str], catalog: StorageCatalog, *,
                  source: StorageOps, destination: StorageOps, source_name: str,
                  destination_name: str) -> StorageCheck:
    """Decide every disk; raise MigrationRefused listing each disk that can move neither way."""
    check = StorageCheck()
    problems: dict[str, str] = {}
    for disk, target in disk_targets.items():
        found = pool_of(disk, catalog.pools, catalog.volumes)
        if found is None:
            problems[disk] = "on no pool Ferry knows (register its pool with `ferry pool add`)"
            continue
        pool, vol = found
        if not on_host(pool, destination_name):
            problems[disk] = (f"pool {pool.name} is not available on {destination_name} "
                              f"(hosts: {', '.join(pool.hosts)})")
            continue
        try:
            if pool.kind == PoolKind.RBD:
                d = _rbd(pool, vol, disk, target, destination, destination_name,
                         catalog.keys.get(pool.name, ""), check.repairs)
            elif pool.kind == PoolKind.DIR_SHARED:
                d = _dir_shared(pool, vol, disk, target, source, destination, source_name,
                                destination_name, check.repairs)
            else:
                d = _local(pool, vol, disk, target, source, destination, destination_name,
                           check.repairs)
        except _Refusal as exc:
            problems[disk] = str(exc)
            continue
        check.disks.append(d)
    if problems:
        raise MigrationRefused(
            "storage_not_shared",
            "disks that can neither be shared with nor copied to "
            f"{destination_name}: " + "; ".join(f"{k}: {v}" for k, v in problems.items()),
            {"disks": problems})
    return check


def _ensure_pool(pool: Pool, host: StorageOps, host_name: str,
                 repairs: list[str]) -> PoolState:
    """The pool as `host` sees it, defined and started first if it was not."""
    spec = pool_spec(pool)
    state = host.pool_state(spec)
    if state.defined and not state.matches:
        raise _Refusal(f"{host_name} has a different libvirt pool named {pool.name}")
    if state.active:
        return state
    try:
        host.ensure_pool(spec)
        started = host.pool_state(spec)
    except HypervisorError as exc:
        raise _Refusal(f"pool {pool.name} cannot be started on {host_name}: {exc}") from exc
    repairs.append(f"{'started' if state.defined else 'defined'} pool {pool.name} "
                   f"on {host_name}")
    return started


def _rbd(pool: Pool, vol: str, disk: str, target: str, dst: StorageOps, dst_name: str,
         key: str, repairs: list[str]) -> DiskDecision:
    if not dst.secret_present(pool.secret_uuid):
        if not key:
            raise _Refusal(f"{dst_name} lacks the ceph secret {pool.secret_uuid} and Ferry "
                           "holds no key to define it")
        try:
            dst.ensure_ceph_secret(pool.secret_uuid, pool.user, key)
        except HypervisorError as exc:
            raise _Refusal(f"cannot define the ceph secret on {dst_name}: {exc}") from exc
        repairs.append(f"defined the missing ceph secret {pool.secret_uuid} on {dst_name}")
    _ensure_pool(pool, dst, dst_name, repairs)
    try:
        info = dst.volume(pool.name, vol)
    except HypervisorError as exc:
        raise _Refusal(f"{dst_name} cannot reach Ceph pool {pool.rbd_pool}: {exc}") from exc
    if info is None:
        raise _Refusal(f"image {disk} is not visible from {dst_name}")
    return DiskDecision(disk, target, pool.name, vol, False,
                        f"rbd image seen by {dst_name} through its ceph secret",
                        info.capacity_bytes)


def _dir_shared(pool: Pool, vol: str, disk: str, target: str, src: StorageOps,
                dst: StorageOps, src_name: str, dst_name: str,
                repairs: list[str]) -> DiskDecision:
    _ensure_pool(pool, dst, dst_name, repairs)
    marker = f"{MARKER_PREFIX}{uuid.uuid4().hex}"
    try:
        src.create_volume(pool.name, marker, 0)
    except HypervisorError as exc:
        raise _Refusal(f"cannot write a marker through {src_name}: {exc}") from exc
    try:
        seen = dst.volume(pool.name, marker) is not None
    except HypervisorError as exc:
        raise _Refusal(f"cannot read pool {pool.name} through {dst_name}: {exc}") from exc
    finally:
        with contextlib.suppress(HypervisorError):  # a stray marker is harmless
            src.delete_volume(pool.name, marker)
    if not seen:
        raise _Refusal(f"a marker written through {src_name} is not visible on {dst_name}: "
                       f"pool {pool.name} ({pool.path}) is not the same storage there "
                       "(not mounted?)")
    return DiskDecision(disk, target, pool.name, vol, False,
                        f"marker written via {src_name} seen via {dst_name}")


def _local(pool: Pool, vol: str, disk: str, target: str, src: StorageOps, dst: StorageOps,
           dst_name: str, repairs: list[str]) -> DiskDecision:
    room = _ensure_pool(pool, dst, dst_name, repairs).available_bytes
    try:
        info = src.volume(pool.name, vol)
        clash = dst.volume(pool.name, vol)
    except HypervisorError as exc:
        raise _Refusal(f"cannot inspect pool {pool.name}: {exc}") from exc
    if info is None:
        raise _Refusal(f"volume {vol} is not in the source's pool {pool.name}")
    if clash is not None:
        raise _Refusal(f"{dst_name}'s pool {pool.name} already has a volume named {vol}")
    if room < info.capacity_bytes:
        raise _Refusal(f"{dst_name}'s pool {pool.name} has {room >> 20} MiB free, "
                       f"the disk needs {info.capacity_bytes >> 20} MiB")
    return DiskDecision(disk, target, pool.name, vol, True,
                        f"local to the source: copied to {dst_name} by block migration",
                        info.capacity_bytes)
