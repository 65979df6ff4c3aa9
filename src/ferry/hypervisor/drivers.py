"""The real driver's connector: what `ferry serve` wires in (tests may wire another)."""

from __future__ import annotations

from ferry.hypervisor.base import Connector, Hypervisor
from ferry.hypervisor.libvirt_driver import LibvirtHost


def open_libvirt(uri: str) -> Hypervisor:
    """A lazily connected libvirt host (nothing is opened until the first call)."""
    return LibvirtHost(uri)


LIBVIRT: Connector = open_libvirt
