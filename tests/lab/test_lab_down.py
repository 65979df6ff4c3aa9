"""`ferry lab down` leaves nothing behind — even after a crash.  It takes the session's
lab down, so it is marked to run after every other test (tests/conftest.py)."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from ferry.lab import cluster
from ferry.lab.layout import lab_dir
from ferry.lab.procs import pid_alive, read_pid, stop_pid
from tests.lab.conftest import Lab, ferry, ferry_json


@pytest.mark.destroys_lab
def test_lab_down_after_crash_leaves_nothing(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    vm = make_vm("node1", memory=128)
    status = ferry_json("lab", "status")
    assert status["healthy"]
    lab_root = lab_dir()
    pids = [read_pid(lab_root / "hosts" / h / "libvirtd.pid") for h in ("node1", "node2")]
    pids.append(read_pid(lab_root / "controller" / "controller.pid"))
    pids.append(read_pid(lab_root / "console.pid"))
    pids.append(read_pid(lab_root / "probe.pid"))
    root_certs = [Path(p) for p, d in json.loads((lab_root / "pki" / "installed.json")
                                                 .read_text()).items() if d != "dir"]
    assert root_certs and all(p.exists() for p in root_certs)
    qemu = cluster.qemu_pid("node1", vm)
    assert qemu and all(pids)
    # the guest's QEMU is a child of node1's reaper (reaped at once when it exits: this
    # machine's PID 1 left libvirt's confirm phase waiting ~2 s for each one)
    reaper = read_pid(lab_root / "hosts" / "node1" / "reaper.pid")
    stat = Path(f"/proc/{qemu}/stat").read_text()
    assert reaper and int(stat.rsplit(")", 1)[1].split()[1]) == reaper
    pids.append(reaper)
    # Simulate a crash: the controller and node1's libvirtd die, their guest lives on.
    stop_pid(pids[2], "ferry.cli.main serve", sig=signal.SIGKILL)
    stop_pid(pids[0], "libvirtd", sig=signal.SIGKILL)
    assert pid_alive(qemu)

    ferry("lab", "down")
    for pid in [*pids, qemu]:
        assert pid is not None and not pid_alive(pid), f"process {pid} survived lab down"
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "ferry-" not in netns
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "ferrybr0" not in links and "ferrygbr0" not in links and "fveth" not in links
    assert not any(p.exists() for p in root_certs)  # root's libvirt client certificate
    mounts = Path("/proc/mounts").read_text()
    assert str(lab_root) not in mounts and "/run/netns/ferry-" not in mounts
    assert not lab_root.exists()
    assert ferry_json("lab", "status")["up"] is False
    ferry("lab", "down")  # idempotent
