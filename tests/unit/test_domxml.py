import xml.etree.ElementTree as ET

from ferry.hypervisor import domxml


def spec(**kw: object) -> domxml.DomainSpec:
    base = dict(name="web1", memory_mib=256, vcpus=2, kernel="/p/vmlinuz", initrd="/p/initrd",
                cmdline=domxml.guest_cmdline(64, 8),
                cpu_xml="<cpu mode='custom' match='exact'><model>qemu64</model></cpu>",
                disks=[domxml.DiskSpec("/pool/web1.disk")])
    base.update(kw)
    return domxml.DomainSpec(**base)  # type: ignore[arg-type]


def test_domain_xml_has_what_migration_needs() -> None:
    root = ET.fromstring(domxml.build(spec()))
    assert root.get("type") == "qemu"
    assert root.findtext("memory") == "256" and root.find("memory").get("unit") == "MiB"
    assert root.findtext("vcpu") == "2"
    assert "ferry.wss=64 ferry.dirty=8" in root.findtext("os/cmdline", "")
    assert root.find("cpu/model").text == "qemu64"
    drv = root.find("devices/disk/driver")
    assert drv.get("cache") == "none"  # libvirt refuses live migration otherwise
    assert root.find("devices/disk/source").get("file") == "/pool/web1.disk"
    serials = root.findall("devices/serial")
    assert [s.get("type") for s in serials] == ["file", "unix"]
    assert serials[1].find("source").get("path").endswith("/web1.sock")


def test_no_cpu_element_when_none() -> None:
    assert ET.fromstring(domxml.build(spec(cpu_xml=None))).find("cpu") is None
