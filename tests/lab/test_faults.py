"""Faults on the real lab: each ends with the VM where the hosts say it is (on exactly
one host unless the fault killed it), the record matching, nothing left behind, and
the guest's own check clean.

Faults are made with what an operator's machines do: signals to libvirtd, QEMU and
the controller; a blackhole route inside a host's network namespace (a cut link);
the lab's own link shaping.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

from ferry.lab import cluster
from ferry.lab.procs import pid_alive
from tests.lab.conftest import (
    Lab,
    ferry,
    ferry_json,
    settle_deletions,
    wait_finished,
    wait_for,
    wait_samples,
)
from tests.lab.faults import (
    assert_clean,
    cut,
    in_postcopy,
    libvirtd_pid,
    restart_libvirtd,
    stopped_libvirtd,
)


def test_a_hung_libvirtd_holds_nobody(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    vm = make_vm("node1", memory=128)
    with stopped_libvirtd("node2"):
        # requests that need no host answer; /health always does
        with lab.api(timeout=5) as fast:
            assert fast.get("/health").status_code == 200
            assert fast.get("/vms").status_code == 200
            assert fast.get("/hosts").status_code == 200
        r = ferry("migrate", vm, "--to", "node2", "--json", check=False, timeout=90)
        assert r.returncode in (5, 6), r.stdout  # refused or unavailable, within bounds
        with lab.api() as api:
            assert api.get("/health").status_code == 200
            host = wait_for(lambda: (h := api.get("/hosts/node2").json())["state"]
                            == "unreachable" and h, 60, "node2 marked unreachable")
        assert host["error"]
    ferry("host", "refresh", "node2", timeout=90)
    assert ferry_json("host", "show", "node2")["state"] == "up"
    m = ferry_json("migrate", vm, "--to", "node2", "--wait")
    assert m["state"] == "completed"
    assert_clean(lab, vm, "node2", m)


def test_controller_killed_during_a_block_copy_finishes_and_tidies(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    vm = make_vm("node1", memory=128, dirty=2, wss=16, disks=("local:0.125",))
    m = ferry_json("migrate", vm, "--to", "node2", "--bandwidth", "16")
    with lab.api() as api:
        wait_for(lambda: any(s for s in api.get(f"/migrations/{m['id']}/samples").json()),
                 60, "the job under way")
    ferry("lab", "controller", "stop", "--kill")
    ferry("lab", "controller", "start")
    done = wait_finished(lab, m["id"], timeout=240)
    assert done["state"] == "completed", done
    kinds = [e["kind"] for e in done["events"]]
    assert "recovering" in kinds and "storage" in kinds, kinds
    vols = {v["name"]: v for v in ferry_json("volume", "list", "--pool", "local")}
    assert vols[f"{vm}-data1"]["host"] == "node2"
    assert_clean(lab, vm, "node2", done)


def test_twenty_concurrent_migrates_of_one_vm_start_one(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    vm = make_vm("node1", memory=128)
    codes: list[int] = []

    def one() -> None:
        with lab.api() as api:
            codes.append(api.post("/migrations", json={"vm": vm, "to": "node2"}).status_code)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [201] + [409] * 19, codes
    mid = ferry_json("migration", "list", "--vm", vm)[0]["id"]
    assert wait_finished(lab, mid)["state"] == "completed"
    assert_clean(lab, vm, "node2", ferry_json("migration", "show", str(mid)))


def test_delete_during_a_migration_is_refused(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    vm = make_vm("node1", memory=128, dirty=2, wss=16)
    # measuring the guest alone takes ~5 s before the job: time enough to ask
    m = ferry_json("migrate", vm, "--to", "node2", "--bandwidth", "16")
    r = ferry("vm", "delete", vm, "--delete-volumes", "--json", check=False)
    assert r.returncode == 3 and "migrating" in r.stdout
    done = wait_finished(lab, m["id"])
    assert done["state"] == "completed"
    assert_clean(lab, vm, "node2", done)


def test_link_cut_between_hosts_during_precopy_fails_cleanly(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    vm = make_vm("node1", memory=128, dirty=4, wss=32)
    m = ferry_json("migrate", vm, "--to", "node2", "--bandwidth", "2", "--policy", "precopy")
    wait_samples(lab, m["id"])
    with cut("node1", "node2"):
        done = wait_finished(lab, m["id"], timeout=180)
    assert done["state"] == "failed", done
    assert_clean(lab, vm, "node1", done)
    assert ferry_json("migrate", vm, "--to", "node2", "--wait")["state"] == "completed"


def test_source_qemu_killed_mid_migration_is_recorded_lost(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    vm = make_vm("node1", memory=128, dirty=4, wss=32)
    m = ferry_json("migrate", vm, "--to", "node2", "--bandwidth", "2")
    wait_samples(lab, m["id"])
    pid = wait_for(lambda: cluster.qemu_pid("node1", vm), 30, "source QEMU")
    os.kill(pid, signal.SIGKILL)
    done = wait_finished(lab, m["id"])
    assert done["state"] == "failed" and done["error"]
    where = lab.where(vm)
    assert not any(s == "running" for s in where.values()), where  # nothing half-alive
    assert all(s == "shutoff" for s in where.values()), where


def test_link_shaped_to_almost_nothing_mid_migration_times_out_cleanly(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    vm = make_vm("node1", memory=128, dirty=4, wss=32)
    m = ferry_json("migrate", vm, "--to", "node2", "--policy", "precopy",
                   "--timeout-per-gib", "120", "--bandwidth", "8")
    wait_samples(lab, m["id"])
    ferry("lab", "link", "--rate", "1")
    try:
        done = wait_finished(lab, m["id"], timeout=180)
    finally:
        ferry("lab", "link", "--unlimited")
    if done["state"] == "completed":  # it finished before the squeeze bit: still clean
        assert_clean(lab, vm, "node2", done)
    else:
        assert done["state"] == "failed" and "timed out" in done["error"], done
        assert_clean(lab, vm, "node1", done)


def test_libvirtd_killed_and_restarted_is_found_again(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    vm = make_vm("node2", memory=128)
    old = libvirtd_pid("node2")
    os.kill(old, signal.SIGKILL)  # its guests live on
    wait_for(lambda: not pid_alive(old), 30, "the killed libvirtd gone (its socket freed)")
    assert cluster.qemu_pid("node2", vm)
    restart_libvirtd("node2")
    # what an operator runs after restarting a daemon: re-read it, its pools started again
    wait_for(lambda: ferry("host", "refresh", "node2", check=False).returncode == 0, 90,
             "node2 answering again")
    pools = {p["name"]: ferry_json("pool", "show", p["name"])
             for p in ferry_json("pool", "list")}
    assert all(p["hosts"]["node2"]["state"] == "active" for p in pools.values()), pools
    m = ferry_json("migrate", vm, "--to", "node1", "--wait")
    assert m["state"] == "completed"
    assert_clean(lab, vm, "node1", m)


def test_link_cut_during_postcopy_never_resumes_the_source_and_ends_recorded(
        lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    """A cut after the switch: libvirt marks the source's post-copy failed, Ferry calls
    the migration postcopy-paused and touches nothing; the connection (dropped, not
    reset) survives, QEMU finishes once the link is back, and Ferry records that."""
    vm = make_vm("node1", memory=256, dirty=64, wss=160)
    with in_postcopy(lab, vm) as m:
        with cut("node1", "node2"):
            time.sleep(15)  # past libvirt's keepalive (lab: ~8 s): post-copy failed
            assert lab.where(vm).get("node1") != "running"  # never resumed
        ferry("lab", "link", "--unlimited")  # the pages left, at full speed
        done = wait_finished(lab, m["id"], timeout=300)
    assert done["state"] == "completed", done
    kinds = [e["kind"] for e in done["events"]]
    assert "job_failed" in kinds and "resumed" not in kinds, kinds
    assert_clean(lab, vm, "node2", done)


def test_two_vms_into_a_destination_with_room_for_one(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    """Memory promised to a migration still running into node2 counts: the second
    is refused before any transfer.  Sized from node2's free memory (the lab's hosts
    share one machine); guests touch little of it (QEMU allocates lazily)."""
    settle_deletions()  # earlier tests' guests hold memory until they are gone
    free = ferry_json("host", "show", "node2")["memory_free_mib"]
    size = max(256, min(16384, int(free * 0.6) // 64 * 64))
    a = make_vm("node1", memory=size, dirty=1, wss=16)
    b = make_vm("node1", memory=size, dirty=1, wss=16)
    first = ferry_json("migrate", a, "--to", "node2", "--bandwidth", "2", "--policy",
                       "precopy")
    try:
        r = ferry("migrate", b, "--to", "node2", "--json", check=False)
        assert r.returncode == 5, r.stdout
        refusal = json.loads(r.stdout)
        assert refusal["details"]["reason"] == "insufficient_memory"
        assert refusal["details"]["reserved_mib"] >= size
        assert lab.where(b) == {"node1": "running"}
    finally:
        ferry("migration", "cancel", str(first["id"]), check=False)
    done = wait_finished(lab, first["id"])
    assert done["state"] in ("cancelled", "completed"), done
