"""Whether a host can plug in each of a guest's interfaces (pure).

A guest on libvirt network `prod` needs `prod` defined and active on the
destination; one on bridge `br-prod` needs that bridge; a macvtap (`direct`)
one needs the host device.  Without the check the migration fails deep in
libvirt ("Cannot get interface MTU on 'br-prod': No such device") after the
destination QEMU was started; with it Ferry refuses before any byte moves,
naming the interface and what the host lacks.  What a host cannot tell (no
network or interface driver in its libvirtd) is reported as unverified, not
as missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from ferry.hypervisor.types import HostNetworks, NicInfo

# interfaces that need nothing from the host (user-mode networking) or that the
# host's libvirt creates by itself (a plain tap)
_NEEDS_NOTHING = ("user", "ethernet")


@dataclass(frozen=True)
class NicVerdict:
    nic: NicInfo
    problem: str = ""  # what the host lacks; "" when it can plug it in
    unverified: str = ""  # what could not be checked, and why

    @property
    def ok(self) -> bool:
        return not self.problem


def check_nic(nic: NicInfo, host: HostNetworks) -> NicVerdict:
    """One interface against one host.

    >>> h = HostNetworks({"prod": True, "test": False}, {"br0": "bridge", "eth0": "ethernet"})
    >>> check_nic(NicInfo("network", "test", "m"), h).problem
    'network test is defined but not active'
    >>> check_nic(NicInfo("bridge", "eth0", "m"), h).problem
    'eth0 is not a bridge (it is ethernet)'
    >>> check_nic(NicInfo("bridge", "br0", "m"), HostNetworks(None, None)).unverified
    'cannot list host interfaces'
    """
    if nic.kind == "network":
        if host.networks is None:
            return NicVerdict(nic, unverified="cannot list libvirt networks")
        if nic.source not in host.networks:
            return NicVerdict(nic, f"network {nic.source} is not defined")
        if not host.networks[nic.source]:
            return NicVerdict(nic, f"network {nic.source} is defined but not active")
        return NicVerdict(nic)
    if nic.kind in ("bridge", "direct"):
        what = "bridge" if nic.kind == "bridge" else "host device"
        if host.interfaces is None:
            return NicVerdict(nic, unverified="cannot list host interfaces")
        if nic.source not in host.interfaces:
            return NicVerdict(nic, f"{what} {nic.source} does not exist")
        kind = host.interfaces[nic.source]
        if nic.kind == "bridge" and kind and kind != "bridge":
            return NicVerdict(nic, f"{nic.source} is not a bridge (it is {kind})")
        return NicVerdict(nic)
    if nic.kind == "hostdev":
        return NicVerdict(nic, "a passed-through host device cannot move live")
    if nic.kind in _NEEDS_NOTHING:
        return NicVerdict(nic)
    return NicVerdict(nic, unverified=f"interface type {nic.kind!r} is not checked")


def check_nics(nics: tuple[NicInfo, ...] | list[NicInfo],
               host: HostNetworks) -> list[NicVerdict]:
    return [check_nic(n, host) for n in nics]


def problems(verdicts: list[NicVerdict]) -> list[str]:
    """`interface <mac> (<kind> <source>): <what is missing>` for each refusal."""
    return [f"interface {v.nic.label}: {v.problem}" for v in verdicts if v.problem]
