"""One guest with a 1 GiB data disk on each pool type: Ferry vs plain virsh.

For each pool (shared = dir-shared, ceph = rbd, local = block migration) a
256 MiB guest whose workload dirties 8 MiB/s gets a 1 GiB data disk (and its
boot disk) in that pool; the guest first fills the data disk with checksummed
records, then keeps writing and verifying 50 records a second.  It is moved
back and forth, alternating `ferry migrate --wait` (policy auto) and plain
`virsh migrate --live --p2p` (plus `--copy-storage-all` for the local pool,
what an operator would type).  Reported: libvirt's total time and downtime,
memory and disk bytes sent (sampled from the job while it runs: libvirt keeps
no disk figures in the completed-job statistics), wall time, the pause the
guest saw (largest heartbeat gap), and disk errors the guest found.

Needs the lab with Ceph: `ferry lab up --storage ceph` (started if not up).
Usage: .venv/bin/python bench/storage.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import libvirt

from common import ferry, ferry_json, median, write
from ferry.lab.check import check_vm, read_lines

URIS = {"node1": "qemu+tls://198.18.0.11/system", "node2": "qemu+tls://198.18.0.12/system"}
LAB = Path("/var/lib/ferry/lab")
POOLS = ("shared", "ceph", "local")
DISK_GIB = 1
MIB = 1024 * 1024

libvirt.registerErrorHandler(lambda _c, _e: None, None)


class JobSampler(threading.Thread):
    """Poll the source's job statistics: the most memory and disk bytes sent."""

    def __init__(self, uri: str, vm: str) -> None:
        super().__init__(daemon=True)
        self.uri, self.vm = uri, vm
        self.stop = threading.Event()
        self.memory = self.disk = 0

    def run(self) -> None:
        conn = libvirt.open(self.uri)
        try:
            while not self.stop.is_set():
                try:
                    st = conn.lookupByName(self.vm).jobStats(0)
                except libvirt.libvirtError:
                    st = {}
                self.memory = max(self.memory, int(st.get("memory_processed", 0)))
                self.disk = max(self.disk, int(st.get("disk_processed", 0)))
                time.sleep(0.1)
        finally:
            conn.close()


def guest_pause_ms(vm: str, since_ns: int) -> float:
    """Largest gap between heartbeats that arrived after `since_ns`."""
    return check_vm(LAB, vm, since_ns).max_gap_ms


def virsh_migrate(vm: str, src: str, dst: str, copy: bool) -> dict[str, Any]:
    sampler = JobSampler(URIS[src], vm)
    sampler.start()
    args = ["virsh", "-c", URIS[src], "migrate", "--live", "--p2p", "--persistent",
            "--undefinesource"] + (["--copy-storage-all"] if copy else []) + [vm, URIS[dst]]
    t0 = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    wall = (time.perf_counter() - t0) * 1000
    sampler.stop.set()
    sampler.join()
    conn = libvirt.open(URIS[dst])
    try:
        st = conn.lookupByName(vm).jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    finally:
        conn.close()
    left = _leftovers(vm, src) if copy else 0
    return {"tool": "virsh", "wall_ms": wall, "total_ms": st.get("time_elapsed"),
            "downtime_ms": st.get("downtime"), "memory_bytes": sampler.memory,
            "disk_bytes": sampler.disk, "left_behind_bytes": left}


def _leftovers(vm: str, host: str) -> int:
    """Bytes of the VM's local volumes still on `host` after virsh moved it; removed
    here by hand (what an operator has to do after a plain virsh block migration)."""
    conn = libvirt.open(URIS[host])
    try:
        pool = conn.storagePoolLookupByName("local")
        pool.refresh(0)
        total = 0
        for name in pool.listVolumes():
            if name.startswith(f"{vm}-"):
                vol = pool.storageVolLookupByName(name)
                total += vol.info()[1]
                vol.delete(0)
        return total
    finally:
        conn.close()


def ferry_migrate(vm: str, dst: str) -> dict[str, Any]:
    proc, wall = ferry("migrate", vm, "--to", dst, "--wait", "--json")
    m = json.loads(proc.stdout)
    assert m["state"] == "completed", m
    return {"tool": "ferry", "wall_ms": wall, "total_ms": m["total_ms"],
            "downtime_ms": m["downtime_ms"],
            "memory_bytes": m["transferred_bytes"] - (m["disk_bytes"] or 0),
            "disk_bytes": m["disk_bytes"] or 0, "left_behind_bytes": 0, "id": m["id"]}


def wait_filled(vm: str, timeout: float = 600) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if any(" filled=" in text for _t, _h, text in read_lines(LAB, vm)):
            return time.monotonic() - t0
        time.sleep(1)
    raise SystemExit(f"{vm} did not fill its data disk within {timeout:.0f}s")


def bench_pool(pool: str, runs: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    vm = f"st-{pool}"
    ferry("vm", "delete", vm, "--delete-volumes", check=False)
    ferry("vm", "create", vm, "--host", "node1", "--memory", "256", "--workload-wss", "32",
          "--workload-dirty", "8", "--boot-pool", pool, "--disk", f"{pool}:{DISK_GIB}",
          "--workload-fill")
    fill_s = wait_filled(vm)
    print(f"{pool}: data disk filled in {fill_s:.0f} s")
    rows = []
    where = "node1"
    for i in range(2 * runs):
        other = "node2" if where == "node1" else "node1"
        tool = ("ferry", "virsh")[(i + i // 2) % 2]
        since = time.time_ns()
        if tool == "virsh":
            r = virsh_migrate(vm, where, other, copy=pool == "local")
            ferry("host", "refresh", other)  # let Ferry see where virsh put it
        else:
            r = ferry_migrate(vm, other)
        time.sleep(2)
        r.update(pool=pool, src=where, dst=other, guest_pause_ms=guest_pause_ms(vm, since))
        rows.append(r)
        print(f"{pool:6s} {tool:5s} {where}->{other} total {r['total_ms']} ms downtime "
              f"{r['downtime_ms']} ms mem {r['memory_bytes'] / MIB:.0f} MiB disk "
              f"{r['disk_bytes'] / MIB:.0f} MiB pause {r['guest_pause_ms']:.0f} ms")
        where = other
    check = ferry_json("lab", "check", vm)
    ferry("vm", "delete", vm, "--delete-volumes")
    return rows, {"fill_s": fill_s, **check}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3, help="migrations per tool and pool")
    args = ap.parse_args()
    ferry("lab", "up", "--storage", "ceph")
    rows: list[dict[str, Any]] = []
    checks: dict[str, Any] = {}
    for pool in POOLS:
        r, checks[pool] = bench_pool(pool, args.runs)
        rows += r

    def med(pool: str, tool: str, key: str) -> float:
        return median([float(r[key]) for r in rows
                       if r["pool"] == pool and r["tool"] == tool and r[key] is not None])

    keys = ("total_ms", "downtime_ms", "memory_bytes", "disk_bytes", "wall_ms",
            "guest_pause_ms", "left_behind_bytes")
    summary = {p: {t: {k: med(p, t, k) for k in keys} for t in ("ferry", "virsh")}
               for p in POOLS}
    md = ["# One guest, a 1 GiB data disk, three pool types: Ferry vs plain virsh", "",
          f"Guest 256 MiB (TCG), workload dirtying 8 MiB/s over 32 MiB, boot disk and a "
          f"{DISK_GIB} GiB data disk filled with records in the pool; {args.runs} migrations "
          "per tool and pool, alternating direction and tool; medians. virsh: `migrate "
          "--live --p2p` (+ `--copy-storage-all` for local). Disk bytes sampled from the "
          "running job.", "",
          "| pool | tool | total ms | downtime ms | guest pause ms | memory MiB | disk MiB "
          "| wall ms | left on source MiB |",
          "|---|---|---|---|---|---|---|---|---|"]
    for p in POOLS:
        for t in ("ferry", "virsh"):
            s = summary[p][t]
            md.append(f"| {p} | {t} | {s['total_ms']:.0f} | {s['downtime_ms']:.0f} | "
                      f"{s['guest_pause_ms']:.0f} | {s['memory_bytes'] / MIB:.0f} | "
                      f"{s['disk_bytes'] / MIB:.0f} | {s['wall_ms']:.0f} | "
                      f"{s['left_behind_bytes'] / MIB:.0f} |")
    md += ["", "Ratios Ferry / virsh (medians):", ""]
    for p in POOLS:
        f, v = summary[p]["ferry"], summary[p]["virsh"]
        md.append(f"- {p}: total {f['total_ms'] / v['total_ms']:.2f}, downtime "
                  f"{f['downtime_ms'] / max(v['downtime_ms'], 1):.2f}, wall "
                  f"{f['wall_ms'] / v['wall_ms']:.2f}")
    md += ["", "Guest checks after all runs (records verified continuously and, for the "
           "filled disk, at its start):", ""]
    for p in POOLS:
        c = checks[p]
        md.append(f"- {p}: boots {c['boots']}, disk errors {c['disk_errors']}, memory errors "
                  f"{c['memory_errors']}, records written {c['disk_records']}, disk filled in "
                  f"{c['fill_s']:.0f} s")
    md.append("")
    data = {"when": datetime.now(UTC).isoformat(), "machine": platform.node(),
            "guest": {"memory_mib": 256, "wss_mib": 32, "dirty_mib_s": 8,
                      "data_disk_gib": DISK_GIB},
            "summary": summary, "checks": checks, "runs": rows}
    write("storage", data, "\n".join(md))


if __name__ == "__main__":
    main()
