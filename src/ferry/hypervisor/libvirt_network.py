"""Networks through libvirt: what a host offers a guest's interfaces.

Read through the host's libvirtd (its network driver for libvirt networks, its
interface driver for bridges and devices), so the controller sees what the
host sees wherever it runs.  A daemon without one of those drivers answers
"not supported": that part is reported unknown (None), not empty, so a
precheck never claims something is missing that it could not look for.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import libvirt

from ferry.hypervisor.connection import LibvirtConnection
from ferry.hypervisor.types import HostNetworks

_UNSUPPORTED = (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_NO_NETWORK,
                libvirt.VIR_ERR_NO_INTERFACE)


class LibvirtNetworks(LibvirtConnection):
    def host_networks(self) -> HostNetworks:
        return HostNetworks(networks=self._networks(), interfaces=self._interfaces())

    def _networks(self) -> dict[str, bool] | None:
        try:
            nets = self.conn().listAllNetworks(0)
            return {n.name(): bool(n.isActive()) for n in nets}
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in _UNSUPPORTED:
                return None
            raise self._translate(exc) from exc

    def _interfaces(self) -> dict[str, str] | None:
        try:
            out = {}
            for iface in self.conn().listAllInterfaces(0):
                try:
                    kind = ET.fromstring(iface.XMLDesc(0)).get("type", "")
                except libvirt.libvirtError:
                    kind = ""  # vanished while listed
                out[iface.name()] = kind
            return out
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in _UNSUPPORTED:
                return None
            raise self._translate(exc) from exc
