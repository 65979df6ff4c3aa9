"""Storage on the real lab: Ceph RBD, a shared directory and local disks.

Each migration is checked by the guest itself: its workload writes numbered,
checksummed records to every data disk and verifies them (DISKERR lines,
`disk_errors` in `ferry lab check`).  The truth about where volumes are comes
from the hosts' libvirt, not from Ferry.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import libvirt
import pytest

from ferry.lab import ceph
from ferry.lab.layout import lab_dir
from tests.lab.conftest import URIS, Lab, ferry, ferry_json, wait_finished, wait_for

MIB = 1024 * 1024


def _pool_has(host: str, pool: str, volume: str) -> bool:
    conn = libvirt.open(URIS[host])
    try:
        p = conn.storagePoolLookupByName(pool)
        p.refresh(0)
        return volume in p.listVolumes()
    finally:
        conn.close()


def _disk_check(vm: str, after_records: int = 0) -> dict[str, Any]:
    """Wait until the guest wrote more records than `after_records`, then check it."""
    def progressed() -> dict[str, Any] | None:
        c = ferry_json("lab", "check", vm)
        return c if c["disk_records"] > after_records else None
    check = wait_for(progressed, 60, f"{vm} writing records")
    assert check["disk_errors"] == 0, check
    assert check["memory_errors"] == 0, check
    return dict(check)


def _volumes(vm: str) -> dict[str, dict[str, Any]]:
    return {v["target"]: v for v in ferry_json("volume", "list") if v["vm"] == vm}


def test_lab_registers_its_pools(lab: Lab) -> None:
    pools = {p["name"]: p for p in ferry_json("pool", "list")}
    assert {n: p["kind"] for n, p in pools.items()}.items() >= {
        "shared": "dir-shared", "local": "local", "ceph": "rbd"}.items()
    assert "key" not in pools["ceph"], "the cephx key is never returned"
    shown = ferry_json("pool", "show", "ceph")
    assert {h: e["state"] for h, e in shown["hosts"].items()} == {
        "node1": "active", "node2": "active", "node3": "active"}
    assert {e["secret"] for e in shown["hosts"].values()} == {"present"}


def test_rbd_and_shared_disks_move_memory_only(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    vm = make_vm("node1", memory=256, dirty=4, wss=32,
                 disks=("ceph:0.25", "shared:0.25"), boot_pool="ceph")
    vols = _volumes(vm)
    assert {t: v["pool"] for t, v in vols.items()} == {"vda": "ceph", "vdb": "ceph",
                                                        "vdc": "shared"}
    before = _disk_check(vm)
    m = ferry_json("migrate", vm, "--to", "node2", "--wait")
    assert m["state"] == "completed", m
    assert not m["disk_bytes"], "no disk was copied"
    # memory only: well under guest RAM + the 512 MiB of data disks
    assert m["transferred_bytes"] < 256 * MIB * 1.3, m
    events = " | ".join(e["message"] for e in ferry_json("migration", "show", str(m["id"]))
                        ["events"])
    assert "vdb (ceph/" in events and "through its ceph secret" in events
    assert "vdc (shared/" in events and "marker written via node1 seen via node2" in events
    assert lab.where(vm) == {"node2": "running"}
    after = _disk_check(vm, before["disk_records"] + 200)
    assert after["boots"] == 1
    assert _pool_has("node2", "ceph", f"{vm}-data1") and _pool_has("node1", "ceph",
                                                                   f"{vm}-data1")


def test_local_disk_is_copied_and_verified_by_the_guest(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    vm = make_vm("node1", memory=192, dirty=4, wss=32, disks=("local:0.125",))
    data = f"{vm}-data1"
    assert _volumes(vm)["vdb"]["host"] == "node1"
    before = _disk_check(vm, 300)
    m = ferry_json("migrate", vm, "--to", "node2", "--wait")
    assert m["state"] == "completed", m
    assert m["disk_bytes"] >= 128 * MIB, "the whole local disk went over"
    assert _volumes(vm)["vdb"]["host"] == "node2"
    assert _pool_has("node2", "local", data)
    assert not _pool_has("node1", "local", data), "the source's copy is deleted"
    _disk_check(vm, before["disk_records"] + 200)
    # a hard reset makes the guest read and verify every record on the copied disk
    dom = libvirt.open(URIS["node2"]).lookupByName(vm)
    dom.reset(0)
    check = wait_for(lambda: (c := ferry_json("lab", "check", vm))["boots"] == 2 and
                     c["disk_records"] > 100 and c, 90, "the guest to reboot and write")
    assert check["disk_errors"] == 0, check
    hb = (lab_dir() / "hosts" / "node2" / "var-lib-libvirt" / "ferry-console" / f"{vm}.hb")
    scans = wait_for(lambda: [ln for ln in hb.read_text().splitlines()
                              if " DISK /dev/vdb " in ln], 30, "the guest's disk scan")
    assert len(scans) == 1 and int(scans[0].split("checked=")[1]) > 300, scans
    # and back, over the copy
    m2 = ferry_json("migrate", vm, "--to", "node1", "--wait")
    assert m2["state"] == "completed" and m2["disk_bytes"] >= 128 * MIB, m2
    assert _pool_has("node1", "local", data) and not _pool_has("node2", "local", data)
    _disk_check(vm, check["disk_records"] + 200)


@pytest.fixture
def node1_only_pool(lab: Lab) -> Iterator[str]:
    ferry("pool", "add", "only1", "--type", "local", "--path", "/var/lib/libvirt/ferry-only1",
          "--hosts", "node1")
    yield "only1"
    ferry("pool", "remove", "only1", check=False)


def test_destination_without_the_pool_is_refused_before_transfer(lab: Lab, make_vm,  # type: ignore[no-untyped-def]
                                                                  node1_only_pool: str) -> None:
    vm = make_vm("node1", memory=128, disks=(f"{node1_only_pool}:0.0625",))
    r = ferry("migrate", vm, "--to", "node2", "--json", check=False)
    assert r.returncode == 5, r.stdout
    refused = ferry_json("migration", "list", "--vm", vm)[0]
    assert refused["state"] == "failed"
    assert "pool only1 is not available on node2" in refused["error"]
    kinds = [e["kind"] for e in ferry_json("migration", "show", str(refused["id"]))["events"]]
    assert "started" not in kinds, "refused before any transfer"
    assert lab.where(vm) == {"node1": "running"}
    assert ferry("pool", "remove", "only1", check=False).returncode == 3, "in use"


def test_a_directory_that_is_not_really_shared_is_refused(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    """Registered as dir-shared, but each host's /var/lib/libvirt is its own: the
    marker written through node1 never shows up on node2."""
    ferry("pool", "add", "fake", "--type", "dir-shared", "--path", "/var/lib/libvirt/ferry-fake")
    try:
        vm = make_vm("node1", memory=128, disks=("fake:0.0625",))
        r = ferry("migrate", vm, "--to", "node2", "--json", check=False)
        assert r.returncode == 5, r.stdout
        err = ferry_json("migration", "list", "--vm", vm)[0]["error"]
        assert "not visible on node2" in err and "not mounted?" in err
        assert lab.where(vm) == {"node1": "running"}
        ferry("vm", "delete", vm, "--delete-volumes")
    finally:
        ferry("pool", "remove", "fake", check=False)


def test_missing_ceph_secret_is_repaired(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    vm = make_vm("node1", memory=128, dirty=2, wss=16, disks=("ceph:0.0625",))
    uuid = ferry_json("pool", "show", "ceph")["pool"]["secret_uuid"]
    libvirt.open(URIS["node2"]).secretLookupByUUIDString(uuid).undefine()
    assert ferry_json("pool", "show", "ceph")["hosts"]["node2"]["secret"] == "missing"
    m = ferry_json("migrate", vm, "--to", "node2", "--wait")
    assert m["state"] == "completed", m
    events = [e["message"] for e in ferry_json("migration", "show", str(m["id"]))["events"]]
    assert any("defined the missing ceph secret" in e and "node2" in e for e in events), events
    assert ferry_json("pool", "show", "ceph")["hosts"]["node2"]["secret"] == "present"
    _disk_check(vm, 100)


def test_ceph_stalls_during_migration(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    """The OSD stops answering for 4 s in the middle of a migration: the VM ends on
    exactly one host and every record on its rbd disk is intact."""
    vm = make_vm("node1", memory=192, dirty=4, wss=32, disks=("ceph:0.0625",),
                 boot_pool="ceph")
    before = _disk_check(vm, 100)
    osd = ceph.osd_pid(lab_dir())
    assert osd is not None
    m = ferry_json("migrate", vm, "--to", "node2", "--bandwidth", "20")
    try:
        time.sleep(1.0)
        os.kill(osd, signal.SIGSTOP)
        time.sleep(4.0)
    finally:
        os.kill(osd, signal.SIGCONT)
    done = wait_finished(lab, int(m["id"]))
    where = lab.where(vm)
    assert len(where) == 1 and list(where.values()) == ["running"], where
    expected = "node2" if done["state"] == "completed" else "node1"
    assert where == {expected: "running"}, (done, where)
    assert ferry_json("vm", "show", vm)["host"] == expected
    after = _disk_check(vm, before["disk_records"] + 200)
    assert after["boots"] == 1


def test_storage_errors(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    # name collisions
    assert ferry("pool", "add", "shared", "--type", "dir-shared", "--path", "/srv/x",
                 check=False).returncode == 3
    assert ferry("pool", "add", "again", "--type", "dir-shared", "--path",
                 "/var/lib/ferry/lab/shared", check=False).returncode == 3
    # bad input never reaches a host
    for bad in (["p1", "--type", "dir-shared", "--path", "/srv/../etc"],
                ["p1", "--type", "dir-shared", "--path", "relative"],
                ["p1", "--type", "dir-shared", "--path", "/etc/ferry"],
                ["p1", "--type", "nfs", "--path", "/srv/x"],
                ["P1", "--type", "local", "--path", "/srv/x"],
                ["p1", "--type", "rbd", "--monitor", "198.18.0.2:6789", "--rbd-pool", "rbd",
                 "--user", "ferry"]):
        assert ferry("pool", "add", *bad, check=False).returncode == 2, bad
    ferry("volume", "create", "img", "--pool", "shared", "--size", "0.03125")
    try:
        assert ferry("volume", "create", "img", "--pool", "shared", "--size", "1",
                     check=False).returncode == 3
        assert ferry("volume", "create", "x", "--pool", "local", "--size", "1",
                     check=False).returncode == 2, "local pools need --host"
        assert ferry("volume", "create", "x", "--pool", "nope", "--size", "1",
                     check=False).returncode == 4
        copy = ferry_json("volume", "create", "img2", "--pool", "shared", "--from", "img")
        assert copy["capacity_bytes"] == 32 * MIB
        ferry("volume", "delete", "img2", "--pool", "shared")
    finally:
        ferry("volume", "delete", "img", "--pool", "shared", check=False)
    assert not _pool_has("node1", "shared", "img")
    # a VM's volumes: not deleted behind its back, and not by surprise
    vm = make_vm("node1", memory=128, disks=("ceph:0.0625",))
    assert ferry("volume", "delete", f"{vm}-data1", "--pool", "ceph",
                 check=False).returncode == 3
    with lab.api() as api:
        r = api.delete(f"/vms/{vm}")
        assert r.status_code == 409 and f"ceph/{vm}-data1" in r.json()["details"]["volumes"]
    ferry("vm", "delete", vm, "--keep-volumes")
    kept = {v["name"]: v for v in ferry_json("volume", "list", "--pool", "ceph")}
    assert kept[f"{vm}-data1"]["vm"] is None
    ferry("volume", "delete", f"{vm}-data1", "--pool", "ceph")
    ferry("volume", "delete", f"{vm}-boot", "--pool", "shared")
    assert not _pool_has("node1", "ceph", f"{vm}-data1")
    # a disk on an unknown pool: nothing is created
    created = ferry("vm", "create", "tnopool", "--host", "node1", "--disk", "nope:1", "--json",
                    check=False)
    assert created.returncode == 4
    assert "tnopool" not in {v["name"] for v in ferry_json("vm", "list")}
    assert not [v for v in ferry_json("volume", "list") if v["name"].startswith("tnopool")]


def test_destination_that_cannot_reach_ceph_is_refused(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    """node2 loses its route to the Ceph cluster (the lab's own namespace and
    address): the rbd disk cannot be shared and the migration is refused."""
    vm = make_vm("node1", memory=128, disks=("ceph:0.0625",))
    route = ["ip", "-n", "ferry-node2", "route", "add", "prohibit", f"{ceph.ADDRESS}/32"]
    subprocess.run(route, check=True)
    try:
        r = ferry("migrate", vm, "--to", "node2", "--json", check=False)
        assert r.returncode == 5, r.stdout
        err = ferry_json("migration", "list", "--vm", vm)[0]["error"]
        assert "node2 cannot reach Ceph pool rbd" in err, err
    finally:
        subprocess.run([*route[:4], "del", *route[5:]], check=True)
    assert lab.where(vm) == {"node1": "running"}
    assert ferry_json("migrate", vm, "--to", "node2", "--wait")["state"] == "completed"
    _disk_check(vm, 100)
