"""Clean failure on the real lab: cancel, a dying destination, a restarting controller."""

from __future__ import annotations

import os
import signal

from ferry.lab import cluster
from ferry.lab.layout import lab_dir
from tests.lab.conftest import Lab, ferry, ferry_json, wait_finished, wait_for, wait_samples

SLOW = ["--bandwidth", "2"]  # ~50 MiB of non-zero pages at 2 MiB/s: ~25 s to act


def start_slow(vm: str, to: str = "node2") -> int:
    m = ferry_json("migrate", vm, "--to", to, *SLOW)
    assert m["state"] == "running", m
    return int(m["id"])


def test_cancel_leaves_vm_on_source_only(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    vm = make_vm("node1", memory=128, dirty=4, wss=32)
    mid = start_slow(vm)
    wait_samples(lab, mid)
    ferry("migration", "cancel", str(mid))
    m = wait_finished(lab, mid)
    assert m["state"] == "cancelled", m
    assert lab.where(vm) == {"node1": "running"}
    assert ferry_json("vm", "show", vm)["host"] == "node1"
    check = ferry_json("lab", "check", vm)
    assert check["boots"] == 1 and check["memory_errors"] == 0
    # and it can still move afterwards
    assert ferry_json("migrate", vm, "--to", "node2", "--wait")["state"] == "completed"


def test_destination_qemu_killed_mid_migration(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    vm = make_vm("node1", memory=128, dirty=4, wss=32)
    mid = start_slow(vm)
    wait_samples(lab, mid)
    pid = wait_for(lambda: cluster.qemu_pid("node2", vm), 30, "destination QEMU")
    os.kill(pid, signal.SIGKILL)
    m = wait_finished(lab, mid)
    assert m["state"] == "failed", m
    assert m["error"]
    assert lab.where(vm) == {"node1": "running"}, "VM on the source only, destination clean"
    shown = ferry_json("vm", "show", vm)
    assert (shown["host"], shown["state"]) == ("node1", "running")
    check = ferry_json("lab", "check", vm)
    assert check["boots"] == 1 and check["memory_errors"] == 0


def test_controller_restart_mid_migration_records_true_outcome(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    vm = make_vm("node1", memory=128, dirty=0, wss=16)
    mid = start_slow(vm)
    wait_samples(lab, mid)
    cluster.stop_controller(lab_dir(), sig=signal.SIGKILL)
    cluster.start_controller(lab_dir())
    wait_for(lambda: ferry("host", "list", check=False).returncode == 0, 60, "controller")
    m = wait_finished(lab, mid)
    where = lab.where(vm)
    assert len([h for h, s in where.items() if s == "running"]) == 1, where
    if m["state"] == "completed":
        assert where == {"node2": "running"}
    else:
        assert m["state"] == "failed" and where == {"node1": "running"}, (m, where)
    events = [e["kind"] for e in ferry_json("migration", "show", str(mid))["events"]]
    assert "recovering" in events
    assert ferry_json("vm", "show", vm)["host"] == next(iter(where))
