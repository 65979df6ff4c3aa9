"""What encrypting the migration stream costs: the same guest moved plain vs TLS.

One 256 MiB guest (8 MiB/s dirtied over 64 MiB, a NIC the lab's probe talks
to) moved back and forth between node1 and node2 with Ferry's `precopy`
policy (libvirt's defaults: the stream, not Ferry's tuning, is what differs),
alternating `--no-tls` and TLS, on the unlimited lab link and on one shaped
to 32 MiB/s.  Per move: libvirt's total time, QEMU's downtime, bytes, the
pause the guest saw, and the machine's CPU time spent while the move ran
(/proc/stat: both hosts' QEMU and libvirtd run on this one machine).

Usage: .venv/bin/python bench/tls.py [--runs 3]   (writes bench/results/tls.*)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime
from typing import Any

from common import ferry, median, wait_talking, write
from ferry.lab.check import check_vm
from ferry.lab.layout import lab_dir

VM = "tls1"
LINKS: dict[str, float | None] = {"unlimited": None, "32 MiB/s": 32.0}
TICK = os.sysconf("SC_CLK_TCK")


def busy_s() -> float:
    """CPU seconds the whole machine spent busy so far (all CPUs)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / TICK


def move(to: str, tls: bool) -> dict[str, Any]:
    t0, c0 = time.time(), busy_s()
    proc, wall = ferry("migrate", VM, "--to", to, "--policy", "precopy", "--wait", "--json",
                       *(() if tls else ("--no-tls",)), check=False)
    c1, t1 = busy_s(), time.time()
    m = json.loads(proc.stdout)
    seen = check_vm(lab_dir(), VM, int(t0 * 1e9), int((t1 + 0.5) * 1e9))
    return {"tls": tls, "encrypted": m.get("encrypted"), "state": m.get("state"),
            "to": to, "total_ms": m.get("total_ms"), "downtime_ms": m.get("downtime_ms"),
            "transferred_bytes": m.get("transferred_bytes"), "wall_ms": round(wall),
            "cpu_s": round(c1 - c0, 2), "guest_pause_ms": seen.max_gap_ms,
            "blackout_ms": seen.net_max_gap_ms, "tcp_resets": seen.tcp_resets}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3, help="moves per mode and link")
    args = ap.parse_args()
    ferry("lab", "up")
    ferry("vm", "delete", VM, "--delete-volumes", check=False)
    ferry("vm", "create", VM, "--host", "node1", "--memory", "256", "--workload-wss", "64",
          "--workload-dirty", "8")
    wait_talking(VM)
    runs: list[dict[str, Any]] = []
    where = "node1"
    for link, rate in LINKS.items():
        ferry("lab", "link", *(("--rate", str(rate)) if rate else ("--unlimited",)))
        for i in range(args.runs * 2):
            to = "node2" if where == "node1" else "node1"
            r = move(to, tls=i % 2 == 1) | {"link": link}
            runs.append(r)
            if r["state"] == "completed":
                where = to
            print(json.dumps(r), flush=True)
            time.sleep(2)
    ferry("lab", "link", "--unlimited")
    check = check_vm(lab_dir(), VM)
    ferry("vm", "delete", VM, "--delete-volumes")
    report(runs, args.runs, check.boots, check.memory_errors)


def report(runs: list[dict[str, Any]], reps: int, boots: int, errors: int) -> None:
    md = ["# What TLS costs a migration: the same guest plain vs encrypted", "",
          f"256 MiB TCG guest dirtying 8 MiB/s over 64 MiB (NIC, probe talking); Ferry "
          f"`precopy` (libvirt's defaults), {reps} moves per mode and link, alternating; "
          "medians. CPU: the whole machine's busy CPU seconds while the move ran (both "
          "hosts run here).", "",
          "| link | stream | total ms | downtime ms | MiB sent | CPU s | guest pause ms | "
          "blackout ms | TCP resets | encrypted |", "|---|---|---|---|---|---|---|---|---|---|"]
    ratios = []
    for link in LINKS:
        by: dict[bool, list[dict[str, Any]]] = {}
        for r in runs:
            if r["link"] == link and r["state"] == "completed":
                by.setdefault(r["tls"], []).append(r)
        for tls in (False, True):
            rs = by.get(tls, [])
            if not rs:
                continue
            md.append(
                f"| {link} | {'TLS' if tls else 'plain'} | "
                f"{median([r['total_ms'] for r in rs]):.0f} | "
                f"{median([r['downtime_ms'] or 0 for r in rs]):.0f} | "
                f"{median([r['transferred_bytes'] / 2**20 for r in rs]):.0f} | "
                f"{median([r['cpu_s'] for r in rs]):.1f} | "
                f"{median([r['guest_pause_ms'] or 0 for r in rs]):.0f} | "
                f"{median([r['blackout_ms'] or 0 for r in rs]):.0f} | "
                f"{sum(r['tcp_resets'] or 0 for r in rs)} | "
                f"{all(r['encrypted'] is tls for r in rs)} |")
        if by.get(False) and by.get(True):
            t = median([r["total_ms"] for r in by[True]]) / \
                median([r["total_ms"] for r in by[False]])
            c = median([r["cpu_s"] for r in by[True]]) / \
                max(median([r["cpu_s"] for r in by[False]]), 0.01)
            ratios.append(f"- {link}: TLS / plain total time {t:.2f}, CPU {c:.2f}")
    failed = [r for r in runs if r["state"] != "completed"]
    md += ["", *ratios,
           f"- moves that did not complete: {len(failed)}; guest boots {boots}, memory "
           f"errors {errors}"]
    write("tls", {"when": datetime.now(UTC).isoformat(), "machine": platform.node(),
                  "runs": runs}, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
