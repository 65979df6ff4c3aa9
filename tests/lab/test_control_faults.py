"""Faults between the controller and what it relies on, on the real lab: a source
libvirtd that stops answering, the controller's link to a host cut (in pre-copy and
in post-copy), the controller killed during prechecks, in a broken post-copy and
while settling, its database locked, and a full destination pool.

Each ends with the VM on exactly one host, the record saying which, nothing left
behind and the guest's own check clean (`assert_clean`).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

from ferry.lab.layout import lab_dir
from tests.lab.conftest import (
    Lab,
    ferry,
    ferry_json,
    wait_finished,
    wait_for,
    wait_samples,
)
from tests.lab.faults import (
    assert_clean,
    cut,
    cut_from_controller,
    in_host_mounts,
    in_postcopy,
    small_local_pool,
    stopped_libvirtd,
)

WHERE = {"completed": "node2", "failed": "node1", "cancelled": "node1"}


def assert_true_outcome(lab: Lab, vm: str, done: dict[str, Any]) -> None:
    """Whatever the verdict, it is the hosts' truth and the guest is clean."""
    assert done["state"] in WHERE, done
    assert_clean(lab, vm, WHERE[done["state"]], done)


def health_answers(lab: Lab) -> None:
    with lab.api() as api:
        api.timeout = 5
        assert api.get("/health").status_code == 200


def test_source_libvirtd_stopped_mid_migration(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    """The source's daemon stops answering (SIGSTOP) for 15 s while QEMU sends: the
    controller's calls time out, the API stays up, and the outcome is read from the
    hosts once the daemon answers again."""
    vm = make_vm("node1", memory=128, dirty=4, wss=32)
    m = ferry_json("migrate", vm, "--to", "node2", "--bandwidth", "4")
    wait_samples(lab, m["id"])
    with stopped_libvirtd("node1"):
        time.sleep(15)  # past the controller's keepalive (3 s x 3)
        health_answers(lab)
    done = wait_finished(lab, m["id"], timeout=300)
    assert_true_outcome(lab, vm, done)


def test_controller_cut_from_the_source_during_precopy(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    """The controller loses the source (its packets dropped) until it marks the host
    unreachable; the hosts still reach each other and the job goes on without it.
    The outcome is settled when it answers again."""
    vm = make_vm("node1", memory=128, dirty=4, wss=32)
    m = ferry_json("migrate", vm, "--to", "node2", "--bandwidth", "4")
    wait_samples(lab, m["id"])
    with cut_from_controller("node1"), lab.api() as api:
        wait_for(lambda: api.get("/hosts/node1").json()["state"] == "unreachable", 60,
                 "node1 marked unreachable")
        health_answers(lab)
        time.sleep(3)
    done = wait_finished(lab, m["id"], timeout=300)
    assert_true_outcome(lab, vm, done)
    ferry("host", "refresh", "node1")
    assert ferry_json("host", "show", "node1")["state"] == "up"


def test_controller_cut_from_the_destination_during_postcopy(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    """After the switch to post-copy the controller loses the destination for 20 s: the
    hosts finish between themselves, the source is never resumed, and the end is
    recorded once the destination answers."""
    vm = make_vm("node1", memory=256, dirty=64, wss=160)
    with in_postcopy(lab, vm) as m:
        with cut_from_controller("node2"):
            time.sleep(20)
            health_answers(lab)
        ferry("lab", "link", "--unlimited")  # the pages left, at full speed
        done = wait_finished(lab, m["id"], timeout=300)
    assert done["state"] == "completed", done
    assert "resumed" not in [e["kind"] for e in done["events"]]
    assert_clean(lab, vm, "node2", done)


def test_controller_killed_during_prechecks(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    """Killed while a request's prechecks wait for a source that does not answer
    (SIGSTOPped: each call waits out its timeout, ~10 s): after the restart the
    migration is failed (nothing was started), the VM is free, and it migrates."""
    vm = make_vm("node1", memory=128)
    answer: list[int] = []

    def request() -> None:
        try:
            with lab.api() as api:
                answer.append(api.post("/migrations", json={"vm": vm, "to": "node2"})
                              .status_code)
        except Exception:  # the controller died under it: expected
            answer.append(0)

    with stopped_libvirtd("node1"), lab.api() as api:
        t = threading.Thread(target=request)
        t.start()
        try:
            mid = wait_for(lambda: next((m["id"] for m in api.get("/migrations").json()
                                         if m["vm"] == vm and m["state"] == "prechecking"),
                                        None), 60, "the migration in its prechecks")
        except AssertionError:  # (seen once in CI, 2026-12-07: say what the request got)
            t.join(30)
            seen = [(m["id"], m["state"], m["error"]) for m in api.get("/migrations").json()
                    if m["vm"] == vm]
            raise AssertionError(f"no migration of {vm} in its prechecks after 60 s; the "
                                 f"request answered {answer}; its migrations {seen}") from None
        ferry("lab", "controller", "stop", "--kill")
        t.join(30)
    ferry("lab", "controller", "start")
    done = wait_finished(lab, mid, timeout=120)
    assert done["state"] == "failed" and "prechecks" in done["error"], done
    assert_clean(lab, vm, "node1", done)
    assert ferry_json("migrate", vm, "--to", "node2", "--wait")["state"] == "completed"


def test_controller_killed_during_a_broken_postcopy(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    """Post-copy broken by a cut link, and the controller killed and restarted during
    the cut: the restarted controller never resumes the source, and records the end
    QEMU makes once the link is back."""
    vm = make_vm("node1", memory=256, dirty=64, wss=160)
    with in_postcopy(lab, vm) as m:
        with cut("node1", "node2"):
            ferry("lab", "controller", "stop", "--kill")
            time.sleep(15)  # past libvirt's keepalive (lab: ~8 s): post-copy failed
            ferry("lab", "controller", "start")
            with lab.api() as api:  # the restarted controller took it up...
                wait_for(lambda: "recovering" in [e["kind"] for e in api.get(
                    f"/migrations/{m['id']}").json()["events"]], 60, "recovery")
            time.sleep(3)
            assert lab.where(vm).get("node1") != "running"  # ...and never resumed the source
        ferry("lab", "link", "--unlimited")  # the pages left, at full speed
        done = wait_finished(lab, m["id"], timeout=300)
    assert done["state"] == "completed", done
    kinds = [e["kind"] for e in done["events"]]
    assert "recovering" in kinds and "resumed" not in kinds, kinds
    assert_clean(lab, vm, "node2", done)


def test_controller_killed_while_settling(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    """The destination's daemon stops answering mid-job, so settling waits for it; the
    controller is killed then, the daemon comes back, and the restarted controller
    settles the migration from both hosts."""
    vm = make_vm("node1", memory=128, dirty=4, wss=32)
    m = ferry_json("migrate", vm, "--to", "node2", "--bandwidth", "4")
    wait_samples(lab, m["id"])
    with stopped_libvirtd("node2"), lab.api() as api:
        wait_for(lambda: "unreachable" in [e["kind"] for e in
                                           api.get(f"/migrations/{m['id']}").json()["events"]],
                 180, "settling waiting for node2")
        ferry("lab", "controller", "stop", "--kill")
    ferry("lab", "controller", "start")
    done = wait_finished(lab, m["id"], timeout=300)
    assert "recovering" in [e["kind"] for e in done["events"]], done["events"]
    assert_true_outcome(lab, vm, done)


def test_database_locked_mid_migration(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    """Another process holds the controller's SQLite database locked for 15 s (longer
    than its 10 s busy timeout): writes fail meanwhile, the job goes on, and the
    migration is recorded whole once the lock is gone."""
    vm = make_vm("node1", memory=128, dirty=4, wss=32)
    m = ferry_json("migrate", vm, "--to", "node2", "--bandwidth", "4")
    wait_samples(lab, m["id"])
    db = sqlite3.connect(lab_dir() / "controller" / "ferry.db", timeout=30,
                         isolation_level=None)
    try:
        db.execute("BEGIN EXCLUSIVE")
        time.sleep(15)
        health_answers(lab)
    finally:
        db.execute("ROLLBACK")
        db.close()
    done = wait_finished(lab, m["id"], timeout=300)
    kinds = [e["kind"] for e in done["events"]]
    assert "resolved" in kinds, kinds  # written once the lock was gone...
    stamps = [e["at"] for e in done["events"]]
    assert stamps == sorted(stamps)  # ...in the order they happened
    log = (lab_dir() / "controller" / "controller.log").read_text(errors="replace")
    assert "the database does not answer" in log
    assert_true_outcome(lab, vm, done)


def test_full_destination_pool_is_refused_before_transfer(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    """node2's local pool (a 320 MiB tmpfs) filled by another writer down to less than
    the disk needs: refused before any transfer, the VM stays on node1 with its disk,
    nothing is created on node2.  A pool cannot fill under a running copy: libvirt
    creates the destination volume at its full size before copying (measured: the
    copy of a 256 MiB disk the guest never wrote takes 256 MiB at once)."""
    vm = make_vm("node1", memory=128, dirty=2, wss=16, disks=("local:0.25",))
    with small_local_pool("node2", 320) as path:
        in_host_mounts("node2", "fallocate", "-l", "128M", f"{path}/filler")
        r = ferry("migrate", vm, "--to", "node2", "--json", check=False)
        in_host_mounts("node2", "rm", "-f", f"{path}/filler")
        assert r.returncode == 5, r.stdout
        assert "MiB free, the disk needs 256 MiB" in r.stdout, r.stdout
        in_host_mounts("node2", "sh", "-c", f"test -z \"$(ls -A {path})\"")  # nothing made
    assert lab.where(vm) == {"node1": "running"}
    vols = {v["name"]: v for v in ferry_json("volume", "list", "--pool", "local")}
    assert vols[f"{vm}-data1"]["host"] == "node1"
    m = ferry_json("migrate", vm, "--to", "node2", "--wait")  # with room again
    assert m["state"] == "completed"
    assert_clean(lab, vm, "node2", m)
