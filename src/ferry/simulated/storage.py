"""Storage of a simulated cluster: directories (one shared by all hosts, or each
host's own), a Ceph cluster, and each host's libvirt pools and secrets over them.

A directory is shared when its path was declared shared (an NFS mount on
every host); any other path is a separate directory on each host, which is
exactly what makes a "dir-shared" pool that is not really shared detectable
by the marker test, and a local pool need block migration.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from ferry.hypervisor.errors import HypervisorError
from ferry.hypervisor.types import PoolSpec, PoolState, VolumeInfo

GIB = 2**30


@dataclass
class Ceph:
    """One Ceph cluster: rbd pools of images, and cephx users with their keys."""

    pools: dict[str, dict[str, int]] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    capacity_bytes: int = 1024 * GIB
    up: bool = True

    def used(self) -> int:
        return sum(sum(p.values()) for p in self.pools.values())


@dataclass
class Files:
    """Every directory of the cluster: (scope, path) -> {file name: size};
    scope is "shared" for declared shared paths, else the host's name."""

    shared: set[str] = field(default_factory=set)
    dirs: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)

    def scope(self, host: str, path: str) -> tuple[str, str]:
        path = path.rstrip("/")
        shared = any(path == s or path.startswith(s + "/") for s in self.shared)
        return ("shared" if shared else host), path

    def dir(self, host: str, path: str) -> dict[str, int]:
        return self.dirs.setdefault(self.scope(host, path), {})

    def exists(self, host: str, file_path: str) -> bool:
        d, name = posixpath.split(file_path)
        return name in self.dirs.get(self.scope(host, d), {})


@dataclass
class HostStorage:
    """One host's libvirt view: its pools (spec, active) and secrets (uuid -> user, key)."""

    pools: dict[str, tuple[PoolSpec, bool]] = field(default_factory=dict)
    secrets: dict[str, tuple[str, str]] = field(default_factory=dict)
    disk_bytes: int = 2048 * GIB
    reaches_ceph: bool = True


def _matches(a: PoolSpec, b: PoolSpec) -> bool:
    if a.kind != b.kind:
        return False
    if a.kind == "dir":
        return a.path.rstrip("/") == b.path.rstrip("/")
    return a.source == b.source


class StorageView:
    """Pool, volume and secret calls of one simulated host."""

    def __init__(self, host: str, files: Files, ceph: Ceph, own: HostStorage) -> None:
        self._host, self._files, self._ceph, self._own = host, files, ceph, own

    # -- pools ------------------------------------------------------------------
    def pool_state(self, spec: PoolSpec) -> PoolState:
        got = self._own.pools.get(spec.name)
        if got is None:
            return PoolState(defined=False)
        have, active = got
        if not active:
            return PoolState(True, False, matches=_matches(have, spec))
        if have.kind == "rbd":
            cap = self._ceph.capacity_bytes
            return PoolState(True, True, cap, cap - self._ceph.used(), _matches(have, spec))
        used = sum(self._files.dir(self._host, have.path).values())
        return PoolState(True, True, self._own.disk_bytes, self._own.disk_bytes - used,
                         _matches(have, spec))

    def ensure_pool(self, spec: PoolSpec) -> bool:
        got = self._own.pools.get(spec.name)
        created = got is None
        if got is not None and not _matches(got[0], spec):
            raise HypervisorError(f"{self._host}: a different pool named {spec.name} exists")
        if spec.kind == "rbd":
            problem = self._rbd_problem(spec)
            if problem:
                raise HypervisorError(f"starting pool {spec.name}: {problem}")
        elif spec.kind == "dir":
            self._files.dir(self._host, spec.path)  # build: the directory exists now
        else:
            raise HypervisorError(f"unknown pool kind {spec.kind!r}")
        self._own.pools[spec.name] = (spec, True)
        return created

    def _rbd_problem(self, spec: PoolSpec) -> str:
        if not (self._ceph.up and self._own.reaches_ceph):
            return "failed to connect to the RADOS monitor: connection timed out"
        secret = self._own.secrets.get(spec.secret_uuid)
        if secret is None:
            return f"secret {spec.secret_uuid} not found"
        if self._ceph.keys.get(secret[0]) != secret[1]:
            return "failed to connect to the RADOS monitor: permission denied"
        if spec.source not in self._ceph.pools:
            return f"failed to open the RBD pool {spec.source}: no such file or directory"
        return ""

    def remove_pool(self, name: str) -> None:
        self._own.pools.pop(name, None)

    # -- volumes ----------------------------------------------------------------
    def _active(self, pool: str) -> PoolSpec:
        got = self._own.pools.get(pool)
        if got is None:
            raise HypervisorError(f"{self._host}: no pool named {pool}")
        if not got[1]:
            raise HypervisorError(f"{self._host}: pool {pool} is not active")
        if got[0].kind == "rbd":
            problem = self._rbd_problem(got[0])
            if problem:
                raise HypervisorError(f"pool {pool}: {problem}")
        return got[0]

    def _store(self, spec: PoolSpec) -> tuple[dict[str, int], str]:
        """The pool's volumes and the prefix of their paths."""
        if spec.kind == "rbd":
            return self._ceph.pools[spec.source], spec.source
        return self._files.dir(self._host, spec.path), spec.path.rstrip("/")

    def volume(self, pool: str, name: str) -> VolumeInfo | None:
        store, prefix = self._store(self._active(pool))
        if name not in store:
            return None
        return VolumeInfo(name, f"{prefix}/{name}", store[name], store[name])

    def create_volume(self, pool: str, name: str, capacity_bytes: int,
                      clone_of: str | None = None) -> str:
        spec = self._active(pool)
        store, prefix = self._store(spec)
        if name in store:
            raise HypervisorError(f"creating volume {name} in {pool}: storage volume "
                                  "name already in use")
        size = int(capacity_bytes)
        if clone_of is not None:
            if clone_of not in store:
                raise HypervisorError(f"no storage vol with matching name {clone_of!r}")
            size = max(size, store[clone_of])
        store[name] = size
        return f"{prefix}/{name}"

    def delete_volume(self, pool: str, name: str) -> bool:
        store, _prefix = self._store(self._active(pool))
        return store.pop(name, None) is not None

    # -- secrets ----------------------------------------------------------------
    def secret_present(self, secret_uuid: str) -> bool:
        return secret_uuid in self._own.secrets

    def ensure_ceph_secret(self, secret_uuid: str, user: str, key_b64: str) -> None:
        self._own.secrets[secret_uuid] = (user, key_b64)

    def remove_secret(self, secret_uuid: str) -> None:
        self._own.secrets.pop(secret_uuid, None)

    # -- what domains see ---------------------------------------------------------
    def disk_reachable(self, source: str, network: bool) -> bool:
        """Can QEMU on this host open the disk a domain names?"""
        if network:
            pool, _, image = source.partition("/")
            return (self._ceph.up and self._own.reaches_ceph
                    and image in self._ceph.pools.get(pool, {}))
        return self._files.exists(self._host, source)
