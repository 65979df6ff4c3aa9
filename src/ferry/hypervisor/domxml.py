"""Domain XML for Ferry's guests, built from plain data (pure, no libvirt).

Guests boot a kernel + initramfs directly (no bootloader), with their disk
in cache='none' mode: libvirt only allows a live migration of a disk that is
not on a cluster file system when the host page cache is bypassed, and it is
what keeps shared storage coherent across the switch.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from ferry.hypervisor.types import NicInfo


@dataclass(frozen=True)
class DiskSpec:
    source: str  # a file path as the hosts see it, or "pool/image" for rbd
    target: str = "vda"
    fmt: str = "raw"
    protocol: str = ""  # "rbd": a network disk reached through `hosts`
    hosts: tuple[str, ...] = ()  # Ceph monitors, "host:port"
    user: str = ""  # cephx user
    secret_uuid: str = ""  # libvirt secret holding the user's key (same UUID on all hosts)


@dataclass(frozen=True)
class NicSpec:
    """A virtio NIC on a libvirt network (kind "network") or a host bridge ("bridge")."""

    kind: str
    source: str
    mac: str = ""  # empty: libvirt picks one


@dataclass(frozen=True)
class DomainSpec:
    name: str
    memory_mib: int
    vcpus: int
    kernel: str
    initrd: str
    cmdline: str
    cpu_xml: str | None  # a <cpu> element; None leaves libvirt's default
    virt_type: str = "qemu"
    disks: list[DiskSpec] = field(default_factory=list)
    console_dir: str = "/var/lib/libvirt/ferry-console"
    nics: list[NicSpec] = field(default_factory=list)


def console_socket(console_dir: str, name: str) -> str:
    """The guest's heartbeat serial port (ttyS1) as a unix socket on its host."""
    return f"{console_dir}/{name}.sock"


def build(spec: DomainSpec) -> str:
    dom = ET.Element("domain", type=spec.virt_type)
    ET.SubElement(dom, "name").text = spec.name
    ET.SubElement(dom, "memory", unit="MiB").text = str(spec.memory_mib)
    ET.SubElement(dom, "vcpu").text = str(spec.vcpus)
    os_el = ET.SubElement(dom, "os")
    ET.SubElement(os_el, "type", arch="x86_64", machine="pc").text = "hvm"
    ET.SubElement(os_el, "kernel").text = spec.kernel
    ET.SubElement(os_el, "initrd").text = spec.initrd
    ET.SubElement(os_el, "cmdline").text = spec.cmdline
    if spec.cpu_xml:
        dom.append(ET.fromstring(spec.cpu_xml))
    ET.SubElement(dom, "on_poweroff").text = "destroy"
    ET.SubElement(dom, "on_reboot").text = "restart"
    ET.SubElement(dom, "on_crash").text = "destroy"
    dev = ET.SubElement(dom, "devices")
    for disk in spec.disks:
        dev.append(disk_element(disk))
    for nic in spec.nics:
        dev.append(nic_element(nic))
    s0 = ET.SubElement(dev, "serial", type="file")
    ET.SubElement(s0, "source", path=f"{spec.console_dir}/{spec.name}.console.log",
                  append="on")
    ET.SubElement(s0, "target", port="0")
    s1 = ET.SubElement(dev, "serial", type="unix")
    ET.SubElement(s1, "source", mode="bind", path=console_socket(spec.console_dir, spec.name))
    ET.SubElement(s1, "target", port="1")
    ET.SubElement(dev, "memballoon", model="none")
    return ET.tostring(dom, encoding="unicode")


def disk_element(disk: DiskSpec) -> ET.Element:
    """A <disk>: a file, or an rbd image with cephx auth by secret UUID."""
    if disk.protocol:
        d = ET.Element("disk", type="network", device="disk")
        ET.SubElement(d, "driver", name="qemu", type=disk.fmt, cache="none")
        if disk.user:
            auth = ET.SubElement(d, "auth", username=disk.user)
            ET.SubElement(auth, "secret", type="ceph", uuid=disk.secret_uuid)
        src = ET.SubElement(d, "source", protocol=disk.protocol, name=disk.source)
        for h in disk.hosts:
            name, _, port = h.rpartition(":")
            ET.SubElement(src, "host", name=name, port=port)
    else:
        d = ET.Element("disk", type="file", device="disk")
        ET.SubElement(d, "driver", name="qemu", type=disk.fmt, cache="none")
        ET.SubElement(d, "source", file=disk.source)
    ET.SubElement(d, "target", dev=disk.target, bus="virtio")
    return d


def nic_element(nic: NicSpec) -> ET.Element:
    """An <interface> with a virtio model on a network or a bridge."""
    if nic.kind not in ("network", "bridge"):
        raise ValueError(f"NIC kind must be network or bridge, not {nic.kind!r}")
    el = ET.Element("interface", type=nic.kind)
    if nic.mac:
        ET.SubElement(el, "mac", address=nic.mac)
    ET.SubElement(el, "source", {nic.kind: nic.source})
    ET.SubElement(el, "model", type="virtio")
    return el


_NIC_SOURCE = {"network": "network", "bridge": "bridge", "direct": "dev"}


def parse_nics(domain: ET.Element) -> tuple[NicInfo, ...]:
    """The guest's interfaces from its domain XML (a <domain> element).

    >>> parse_nics(ET.fromstring("<domain><devices><interface type='network'>"
    ...     "<mac address='52:54:00:00:00:01'/><source network='prod'/></interface>"
    ...     "</devices></domain>"))
    (NicInfo(kind='network', source='prod', mac='52:54:00:00:00:01'),)
    >>> parse_nics(ET.fromstring("<domain><devices><interface type='bridge'>"
    ...     "<source network='prod' bridge='virbr1'/></interface></devices></domain>"))[0].kind
    'network'
    """
    out = []
    for el in domain.findall("./devices/interface"):
        kind = el.get("type", "")
        src = el.find("source")
        mac = el.find("mac")
        if src is not None and src.get("network"):
            kind = "network"  # a running domain's XML says the bridge it got, too
        attr = _NIC_SOURCE.get(kind, "")
        out.append(NicInfo(kind=kind,
                           source=(src.get(attr, "") if src is not None and attr else ""),
                           mac=mac.get("address", "") if mac is not None else ""))
    return tuple(out)


def guest_cmdline(wss_mib: int, dirty_mib_s: int, data_disks: tuple[str, ...] = (),
                  fill: bool = False, pattern: str = "uniform", net: str = "") -> str:
    """The workload's parameters; `data_disks` (vdb, ...) get checksummed records,
    filled completely first if `fill`; `pattern` is how writes spread (workload.c);
    `net` ("ADDR/PREFIX") is the address the guest gives its NIC (init.sh).
    `cryptomgr.notests`: the kernel's crypto self-tests took ~0.5 s of a ~4 s boot
    under TCG, for algorithms the workload never uses."""
    line = (f"console=ttyS0 quiet panic=-1 cryptomgr.notests ferry.wss={wss_mib} "
            f"ferry.dirty={dirty_mib_s}")
    if net:
        line += f" ferry.net={net}"
    if pattern != "uniform":
        line += f" ferry.pattern={pattern}"
    if data_disks:
        line += " ferry.data=" + ",".join(data_disks)
        if fill:
            line += " ferry.fill=1"
    return line
