"""Storage, the pure parts: which pool a disk is in, libvirt XML, validation."""

import xml.etree.ElementTree as ET

import pytest

from ferry.domain.models import Pool, PoolKind, Volume
from ferry.domain.names import check_cephx_key, check_monitor, check_path
from ferry.errors import InvalidRequest
from ferry.hypervisor import domxml
from ferry.hypervisor.libvirt_storage import RBD_NS, pool_xml
from ferry.lab.check import parse_lines
from ferry.storage.specs import disk_spec, on_host, pool_of, pool_spec

SHARED = Pool("shared", PoolKind.DIR_SHARED, path="/srv/shared")
LOCAL = Pool("local", PoolKind.LOCAL, path="/var/lib/libvirt/local", hosts=["node1"])
CEPH = Pool("ceph", PoolKind.RBD, monitors=["198.18.0.2:6789"], rbd_pool="rbd", user="ferry",
            secret_uuid="5d7b5fa4-3c1e-4c39-9d1e-2f4a1b5a8e01")


def test_disk_to_pool_by_location() -> None:
    pools = [SHARED, LOCAL, CEPH]
    assert pool_of("/srv/shared/a.raw", pools, []) == (SHARED, "a.raw")
    assert pool_of("/var/lib/libvirt/local/b", pools, []) == (LOCAL, "b")
    assert pool_of("rbd/web-data1", pools, []) == (CEPH, "web-data1")
    assert pool_of("/srv/shared/sub/a.raw", pools, []) is None, "not a volume of the pool"
    assert pool_of("/srv/sharedother/a.raw", pools, []) is None
    assert pool_of("other/img", pools, []) is None


def test_a_known_volume_wins_over_location() -> None:
    vol = Volume("odd", "ceph", 1, "rbd/odd")
    assert pool_of("rbd/odd", [SHARED, CEPH], [vol]) == (CEPH, "odd")


def test_pool_hosts() -> None:
    assert on_host(SHARED, "node9")
    assert on_host(LOCAL, "node1") and not on_host(LOCAL, "node2")


def test_rbd_disk_xml_names_monitors_and_secret() -> None:
    d = domxml.disk_element(disk_spec(CEPH, "rbd/web-data1", "vdb"))
    assert d.get("type") == "network"
    src = d.find("source")
    assert src is not None and (src.get("protocol"), src.get("name")) == ("rbd", "rbd/web-data1")
    assert [(h.get("name"), h.get("port")) for h in src.findall("host")] == [
        ("198.18.0.2", "6789")]
    secret = d.find("auth/secret")
    assert secret is not None and secret.get("uuid") == CEPH.secret_uuid
    assert d.find("auth").get("username") == "ferry"  # type: ignore[union-attr]
    assert d.find("driver").get("cache") == "none"  # type: ignore[union-attr]
    f = domxml.disk_element(disk_spec(SHARED, "/srv/shared/a", "vda"))
    assert f.get("type") == "file" and f.find("source").get("file") == "/srv/shared/a"  # type: ignore[union-attr]


def test_pool_xml() -> None:
    rbd = ET.fromstring(pool_xml(pool_spec(CEPH)))
    assert rbd.get("type") == "rbd" and rbd.findtext("source/name") == "rbd"
    assert rbd.find("source/auth").get("type") == "ceph"  # type: ignore[union-attr]
    opts = rbd.findall(f"{{{RBD_NS}}}config_opts/{{{RBD_NS}}}option")
    assert {o.get("name") for o in opts} >= {"client_mount_timeout"}
    d = ET.fromstring(pool_xml(pool_spec(LOCAL)))
    assert d.get("type") == "dir" and d.findtext("target/path") == "/var/lib/libvirt/local"


def test_guest_cmdline_lists_data_disks() -> None:
    assert domxml.guest_cmdline(8, 0, ("vdb", "vdc")).endswith("ferry.data=vdb,vdc")
    assert "ferry.data" not in domxml.guest_cmdline(8, 0)


def test_guest_cmdline_names_a_pattern_other_than_uniform() -> None:
    assert domxml.guest_cmdline(8, 4, pattern="hotcold").endswith("ferry.pattern=hotcold")
    assert "ferry.pattern" not in domxml.guest_cmdline(8, 4)


@pytest.mark.parametrize("bad", ["relative", "/a/../etc", "/a/./b", "/a//b", "/a b",
                                 "/a;rm", "/", "/a/"])
def test_bad_paths(bad: str) -> None:
    with pytest.raises(InvalidRequest):
        check_path(bad)


def test_good_inputs() -> None:
    assert check_path("/var/lib/ferry-pool_1.x") == "/var/lib/ferry-pool_1.x"
    assert check_monitor("ceph-mon1.example:6789")
    assert check_cephx_key("AQDhgQdrV3iEFRAAmSSyYoTdXkLXjkXJHnkSHw==")
    for bad in ("host", "host:0", "host:99999", "a b:1"):
        with pytest.raises(InvalidRequest):
            check_monitor(bad)
    with pytest.raises(InvalidRequest):
        check_cephx_key("not a key")


def test_disk_errors_from_heartbeats() -> None:
    lines = [(0, "n1", "FERRY BOOT 1 wss=8 dirty=0"), (1, "n1", "HB 0 0 0 10"),
             (2, "n2", "DISKERR /dev/vdb slot=3 want=3 got=-1 missing"),
             (3, "n2", "HB 1 0 1 20")]
    c = parse_lines(lines, "v")
    assert (c.disk_errors, c.disk_records, c.memory_errors) == (1, 20, 0)
    rebooted = parse_lines([*lines, (4, "n2", "FERRY BOOT 2 wss=8 dirty=0")], "v")
    assert rebooted.disk_records == 0, "records count per boot"
    old = parse_lines([(0, "n1", "HB 0 0")], "v")  # older guests: no disk fields
    assert (old.disk_errors, old.disk_records) == (0, 0)
