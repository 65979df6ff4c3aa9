"""How the lab tests make faults, and the invariant every fault test ends with."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ferry.lab import hostd
from ferry.lab.layout import lab_dir, lab_host
from ferry.lab.procs import read_pid
from ferry.lab.run import LabError
from tests.lab.conftest import Lab, ferry, ferry_json, wait_for


def restart_libvirtd(name: str) -> None:
    """Start the host's libvirtd again (as `lab up` does); one retry, since a port just
    freed by a killed daemon can take a moment."""
    host = lab_host(int(name[4:]))
    for attempt in (1, 2):
        hostd.start(host, lab_dir())
        try:
            hostd.wait_ready(host, lab_dir())
            return
        except LabError:
            if attempt == 2:
                raise
            time.sleep(2)


def libvirtd_pid(host: str) -> int:
    pid = read_pid(lab_dir() / "hosts" / host / "libvirtd.pid")
    assert pid, f"no libvirtd pid for {host}"
    return pid


@contextmanager
def stopped_libvirtd(host: str) -> Iterator[None]:
    """SIGSTOP the host's libvirtd: it accepts connections and never answers."""
    pid = libvirtd_pid(host)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@contextmanager
def cut(a: str, b: str) -> Iterator[None]:
    """Drop everything between two lab hosts (a blackhole route in each namespace);
    the controller still reaches both."""
    ha, hb = lab_host(int(a[4:])), lab_host(int(b[4:]))
    for h, other in ((ha, hb), (hb, ha)):
        subprocess.run(["ip", "-n", h.netns, "route", "add", "blackhole",
                        f"{other.address}/32"], check=True)
    try:
        yield
    finally:
        for h, other in ((ha, hb), (hb, ha)):
            subprocess.run(["ip", "-n", h.netns, "route", "del", "blackhole",
                            f"{other.address}/32"], check=False)


def assert_clean(lab: Lab, vm: str, host: str, m: dict[str, Any]) -> None:
    """The VM runs on `host` only, Ferry says so, and the guest saw nothing wrong."""
    assert lab.where(vm) == {host: "running"}, (lab.where(vm), m["state"], m["error"])
    shown = wait_for(lambda: (v := ferry_json("vm", "show", vm))["state"] == "running"
                     and v, 60, "VM released")
    assert shown["host"] == host
    check = ferry_json("lab", "check", vm)
    assert check["boots"] == 1 and check["memory_errors"] == 0 and check["disk_errors"] == 0


@contextmanager
def cut_from_controller(name: str) -> Iterator[None]:
    """Drop everything between the controller (the machine's own namespace) and one lab
    host; the hosts still reach each other."""
    address = lab_host(int(name[4:])).address
    subprocess.run(["ip", "route", "add", "blackhole", f"{address}/32"], check=True)
    try:
        yield
    finally:
        subprocess.run(["ip", "route", "del", "blackhole", f"{address}/32"], check=False)


def in_host_mounts(name: str, *cmd: str) -> None:
    """Run `cmd` in the host's mount namespace (where its libvirtd sees its pools)."""
    subprocess.run(["nsenter", "-t", str(libvirtd_pid(name)), "-m", "--", *cmd], check=True,
                   capture_output=True, timeout=60)


@contextmanager
def small_local_pool(name: str, size_mib: int) -> Iterator[str]:
    """The host's `local` pool directory on a tmpfs of `size_mib` (inside its mount
    namespace only; what the directory held is back afterwards).  Yields the path."""
    path = "/var/lib/libvirt/ferry-local"
    in_host_mounts(name, "mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0755",
                   "ferry-small-pool", path)
    try:
        yield path
    finally:
        in_host_mounts(name, "umount", "-l", path)


@contextmanager
def in_postcopy(lab: Lab, vm: str) -> Iterator[dict[str, Any]]:
    """Migrate `vm` node1 -> node2 with `--policy postcopy` on a link shaped to 16 MiB/s
    and yield the migration once QEMU has switched (the guest runs on node2 while node1
    holds the paused source); the link is unlimited again afterwards.  Post-copy's
    background copy gets a quarter of that, so a guest dirtying its working set for
    seconds is still pulling pages when the caller breaks something."""
    ferry("lab", "link", "--rate", "16")
    try:
        m = ferry_json("migrate", vm, "--to", "node2", "--policy", "postcopy")
        # the switch is done when QEMU does it, not when it is asked for
        wait_for(lambda: lab.where(vm) == {"node1": "paused", "node2": "running"}, 120,
                 "the guest running on node2 in post-copy")
        yield m
    finally:
        ferry("lab", "link", "--unlimited")
