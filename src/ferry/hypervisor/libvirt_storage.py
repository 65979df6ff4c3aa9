"""Storage through libvirt: pools, volumes and the cephx secret, on one host.

Everything goes through the host's libvirtd (never ssh or local paths), so a
controller on another machine sees what the host sees: a marker volume
created through one host and found through another proves that both reach
the same storage.
"""

from __future__ import annotations

import base64
import contextlib
import time
import xml.etree.ElementTree as ET

import libvirt

from ferry.hypervisor.connection import LibvirtConnection
from ferry.hypervisor.errors import HypervisorError
from ferry.hypervisor.types import PoolSpec, PoolState, VolumeInfo

RBD_NS = "http://libvirt.org/schemas/storagepool/rbd/1.0"
ET.register_namespace("rbd", RBD_NS)
# librados waits 30 s for an unreachable monitor by libvirt's default: a host that
# cannot reach Ceph should say so sooner.
REFRESH_TRIES, REFRESH_GAP_S = 20, 0.5  # waiting for a volume being built in the pool
RBD_OPTIONS = {"client_mount_timeout": "10", "rados_mon_op_timeout": "10"}
_GONE = (libvirt.VIR_ERR_NO_STORAGE_POOL, libvirt.VIR_ERR_NO_STORAGE_VOL,
         libvirt.VIR_ERR_NO_SECRET)


def pool_xml(spec: PoolSpec) -> str:
    pool = ET.Element("pool", type=spec.kind)
    ET.SubElement(pool, "name").text = spec.name
    if spec.kind == "dir":
        ET.SubElement(ET.SubElement(pool, "target"), "path").text = spec.path
    elif spec.kind == "rbd":
        src = ET.SubElement(pool, "source")
        ET.SubElement(src, "name").text = spec.source
        for mon in spec.monitors:
            host, _, port = mon.rpartition(":")
            ET.SubElement(src, "host", name=host, port=port)
        auth = ET.SubElement(src, "auth", username=spec.user, type="ceph")
        ET.SubElement(auth, "secret", uuid=spec.secret_uuid)
        opts = ET.SubElement(pool, f"{{{RBD_NS}}}config_opts")
        for name, value in RBD_OPTIONS.items():
            ET.SubElement(opts, f"{{{RBD_NS}}}option", name=name, value=value)
    else:
        raise HypervisorError(f"unknown pool kind {spec.kind!r}")
    return ET.tostring(pool, encoding="unicode")


def _matches(xml: str, spec: PoolSpec) -> bool:
    root = ET.fromstring(xml)
    if root.get("type") != spec.kind:
        return False
    if spec.kind == "dir":
        return (root.findtext("./target/path") or "").rstrip("/") == spec.path.rstrip("/")
    return root.findtext("./source/name") == spec.source


class LibvirtStorage(LibvirtConnection):
    """Pools, volumes and secrets of one host."""

    def _pool(self, name: str) -> libvirt.virStoragePool | None:
        try:
            return self.conn().storagePoolLookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in _GONE:
                return None
            raise self._translate(exc) from exc

    def _storage_error(self, what: str, exc: libvirt.libvirtError) -> HypervisorError:
        """Storage failures (e.g. Ceph unreachable) are not a dead libvirt connection."""
        if exc.get_error_code() in (libvirt.VIR_ERR_RPC, libvirt.VIR_ERR_NO_CONNECT,
                                    libvirt.VIR_ERR_INVALID_CONN):
            return self._translate(exc)
        return HypervisorError(f"{what}: {exc.get_error_message()}")

    def pool_state(self, spec: PoolSpec) -> PoolState:
        p = self._pool(spec.name)
        if p is None:
            return PoolState(defined=False)
        matches = _matches(self._call(p.XMLDesc, 0), spec)
        if not self._call(p.isActive):
            return PoolState(defined=True, active=False, matches=matches)
        if spec.kind == "dir":  # libvirt keeps the figures of its last refresh: a stat
            self._refresh(p)
        _state, capacity, _alloc, available = self._call(p.info)
        return PoolState(True, True, int(capacity), int(available), matches)

    def ensure_pool(self, spec: PoolSpec) -> bool:
        """Define (if missing), start and autostart the pool; True if it was defined
        now.  A pool of that name that points elsewhere is an error, never replaced."""
        p = self._pool(spec.name)
        created = p is None
        if p is None:
            try:
                p = self.conn().storagePoolDefineXML(pool_xml(spec), 0)
            except libvirt.libvirtError as exc:
                raise self._storage_error(f"defining pool {spec.name}", exc) from exc
        elif not _matches(self._call(p.XMLDesc, 0), spec):
            raise HypervisorError(f"{self.uri}: a different pool named {spec.name} exists")
        try:
            if spec.kind == "dir" and not p.isActive():
                p.build(0)  # creates the directory if missing
            if not p.isActive():
                p.create(0)
            p.setAutostart(1)
        except libvirt.libvirtError as exc:
            if created:
                with contextlib.suppress(libvirt.libvirtError):
                    p.undefine()
            raise self._storage_error(f"starting pool {spec.name}", exc) from exc
        return created

    def remove_pool(self, name: str) -> None:
        """Stop and undefine the pool; its data stays where it is."""
        p = self._pool(name)
        if p is None:
            return
        if self._call(p.isActive):
            self._call(p.destroy)
        self._call(p.undefine)

    def _refresh(self, p: libvirt.virStoragePool) -> None:
        """Re-read the pool; libvirt refuses while a volume is being built in it ("has
        asynchronous jobs running": two VMs created at once), so wait for that a
        little, then go on with what it knows."""
        for _ in range(REFRESH_TRIES):
            try:
                p.refresh(0)
                return
            except libvirt.libvirtError as exc:
                if exc.get_error_code() in _GONE:
                    return  # the lookup that follows says so
                if "asynchronous jobs" not in (exc.get_error_message() or ""):
                    raise self._storage_error(f"pool {p.name()}", exc) from exc
            time.sleep(REFRESH_GAP_S)

    def _vol(self, pool: str, name: str, refresh: bool = True) -> libvirt.virStorageVol | None:
        p = self._pool(pool)
        if p is None:
            raise HypervisorError(f"{self.uri}: no pool named {pool}")
        if refresh:
            self._refresh(p)
        try:
            return p.storageVolLookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in _GONE:
                return None
            raise self._storage_error(f"pool {pool}", exc) from exc

    def volume(self, pool: str, name: str) -> VolumeInfo | None:
        vol = self._vol(pool, name)
        if vol is None:
            return None
        _type, capacity, allocation = self._call(vol.info)
        return VolumeInfo(name, str(self._call(vol.path)), int(capacity), int(allocation))

    def create_volume(self, pool: str, name: str, capacity_bytes: int,
                      clone_of: str | None = None) -> str:
        """Create a raw volume (a copy of `clone_of` in the same pool if given);
        return its path as domains name it."""
        p = self._pool(pool)
        if p is None:
            raise HypervisorError(f"{self.uri}: no pool named {pool}")
        vol = ET.Element("volume")
        ET.SubElement(vol, "name").text = name
        ET.SubElement(vol, "capacity", unit="bytes").text = str(int(capacity_bytes))
        ET.SubElement(ET.SubElement(vol, "target"), "format", type="raw")
        xml = ET.tostring(vol, encoding="unicode")
        self._refresh(p)
        try:
            if clone_of is None:
                created = p.createXML(xml, 0)
            else:
                created = p.createXMLFrom(xml, p.storageVolLookupByName(clone_of), 0)
            return str(created.path())
        except libvirt.libvirtError as exc:
            raise self._storage_error(f"creating volume {name} in {pool}", exc) from exc

    def delete_volume(self, pool: str, name: str) -> bool:
        """Delete the volume; False if it was not there."""
        vol = self._vol(pool, name)
        if vol is None:
            return False
        try:
            vol.delete(0)
        except libvirt.libvirtError as exc:
            raise self._storage_error(f"deleting volume {name} in {pool}", exc) from exc
        return True

    # -- secrets ------------------------------------------------------------
    def secret_present(self, secret_uuid: str) -> bool:
        try:
            s = self.conn().secretLookupByUUIDString(secret_uuid)
            s.value()
            return True
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in _GONE or "no value" in exc.get_error_message():
                return False
            if (exc.get_error_code() in (libvirt.VIR_ERR_OPERATION_DENIED,
                                         libvirt.VIR_ERR_INVALID_SECRET)
                    and "private" in exc.get_error_message()):
                return True  # a private secret: it has a value we may not read
            raise self._translate(exc) from exc

    def ensure_ceph_secret(self, secret_uuid: str, user: str, key_b64: str) -> None:
        """The libvirt `ceph` secret for cephx user `user`, with the same UUID on
        every host (a domain names it by UUID and keeps it across migrations)."""
        root = ET.Element("secret", ephemeral="no", private="yes")
        ET.SubElement(root, "uuid").text = secret_uuid
        usage = ET.SubElement(root, "usage", type="ceph")
        ET.SubElement(usage, "name").text = f"client.{user} secret {secret_uuid}"
        try:
            s = self.conn().secretDefineXML(ET.tostring(root, encoding="unicode"), 0)
            s.setValue(base64.b64decode(key_b64), 0)
        except libvirt.libvirtError as exc:
            raise self._storage_error("defining the ceph secret", exc) from exc

    def remove_secret(self, secret_uuid: str) -> None:
        try:
            self.conn().secretLookupByUUIDString(secret_uuid).undefine()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in _GONE:
                raise self._translate(exc) from exc
