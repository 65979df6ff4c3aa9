"""What encrypting the migration stream costs: the same guest moved plain vs TLS.

One 256 MiB guest (8 MiB/s dirtied over 64 MiB, a NIC the lab's probe talks
to) moved back and forth between node1 and node2, on the unlimited lab link
and on one shaped to 32 MiB/s, in turn by:
- Ferry's `precopy` policy (libvirt's defaults: the stream, not Ferry's
  tuning, is what differs) with `--no-tls`, and with TLS;
- plain `virsh migrate --tls` (one stream) and `virsh migrate --tls --parallel
  --parallel-connections 4` (multifd: does spreading TLS over several streams,
  and so several CPUs, win back its cost?).
Per move: libvirt's total time, QEMU's downtime, bytes, the pause the guest
saw, and the machine's CPU time spent while the move ran (/proc/stat: both
hosts' QEMU and libvirtd run on this one machine).

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

from common import ferry, median, virsh_migrate, wait_talking, write
from ferry.lab.check import check_vm
from ferry.lab.layout import lab_dir

VM = "tls1"
LINKS: dict[str, float | None] = {"unlimited": None, "32 MiB/s": 32.0}
URIS = {"node1": "qemu+tls://198.18.0.11/system", "node2": "qemu+tls://198.18.0.12/system"}
# (label, encrypted, virsh options or None for Ferry)
MODES: list[tuple[str, bool, tuple[str, ...] | None]] = [
    ("Ferry plain", False, None), ("Ferry TLS", True, None),
    ("virsh TLS", True, ("--tls",)),
    ("virsh TLS multifd x4", True, ("--tls", "--parallel", "--parallel-connections", "4")),
]
CAP_S = 180.0
TICK = os.sysconf("SC_CLK_TCK")


def busy_s() -> float:
    """CPU seconds the whole machine spent busy so far (all CPUs)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / TICK


def move(frm: str, to: str, mode: str, tls: bool, virsh: tuple[str, ...] | None
         ) -> dict[str, Any]:
    t0, c0 = time.time(), busy_s()
    if virsh is None:
        proc, wall = ferry("migrate", VM, "--to", to, "--policy", "precopy", "--wait",
                           "--json", *(() if tls else ("--no-tls",)), check=False)
        m = json.loads(proc.stdout)
        out = {"encrypted": m.get("encrypted"), "state": m.get("state"),
               "total_ms": m.get("total_ms"), "downtime_ms": m.get("downtime_ms"),
               "transferred_bytes": m.get("transferred_bytes"), "wall_ms": round(wall)}
    else:
        moved, wall_s, st = virsh_migrate(VM, URIS[frm], URIS[to], CAP_S, virsh)
        out = {"encrypted": tls, "state": "completed" if moved else "failed",
               "total_ms": st.elapsed_ms if st else None,
               "downtime_ms": st.downtime_ms if st else None,
               "transferred_bytes": st.data_processed_bytes if st else None,
               "wall_ms": round(wall_s * 1000)}
    c1, t1 = busy_s(), time.time()
    seen = check_vm(lab_dir(), VM, int(t0 * 1e9), int((t1 + 0.5) * 1e9))
    return out | {"mode": mode, "tls": tls, "to": to, "cpu_s": round(c1 - c0, 2),
                  "guest_pause_ms": seen.max_gap_ms, "blackout_ms": seen.net_max_gap_ms,
                  "tcp_resets": seen.tcp_resets}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3, help="moves per mode and link")
    ap.add_argument("--name", default="tls", help="results file name (bench/results/)")
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
        for _ in range(args.runs):
            for mode, tls, virsh in MODES:  # in turn: drift hits every mode alike
                to = "node2" if where == "node1" else "node1"
                r = move(where, to, mode, tls, virsh) | {"link": link}
                runs.append(r)
                if r["state"] == "completed":
                    where = to
                print(json.dumps(r), flush=True)
                if virsh is not None:  # moved behind Ferry's back: let it see where
                    for host in URIS:
                        ferry("host", "refresh", host, check=False)
                time.sleep(2)
    ferry("lab", "link", "--unlimited")
    check = check_vm(lab_dir(), VM)
    ferry("vm", "delete", VM, "--delete-volumes")
    report(args.name, runs, args.runs, check.boots, check.memory_errors)


def report(name: str, runs: list[dict[str, Any]], reps: int, boots: int,
           errors: int) -> None:
    md = ["# What TLS costs a migration: the same guest plain vs encrypted", "",
          f"256 MiB TCG guest dirtying 8 MiB/s over 64 MiB (NIC, probe talking); Ferry "
          f"`precopy` (libvirt's defaults) plain and TLS, plain `virsh migrate --tls` with "
          f"one stream and with four (multifd); {reps} moves per mode and link, in turn; "
          "medians. CPU: the whole machine's busy CPU seconds while the move ran (both "
          "hosts run here; the machine has "
          f"{os.cpu_count()} CPUs).", "",
          "| link | mode | total ms | downtime ms | MiB sent | CPU s | guest pause ms | "
          "blackout ms | TCP resets | encrypted as asked |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    ratios = []
    for link in LINKS:
        by: dict[str, list[dict[str, Any]]] = {}
        for r in runs:
            if r["link"] == link and r["state"] == "completed":
                by.setdefault(r["mode"], []).append(r)
        for mode, tls, _ in MODES:
            rs = by.get(mode, [])
            if not rs:
                continue
            md.append(
                f"| {link} | {mode} | "
                f"{median([r['total_ms'] or 0 for r in rs]):.0f} | "
                f"{median([r['downtime_ms'] or 0 for r in rs]):.0f} | "
                f"{median([(r['transferred_bytes'] or 0) / 2**20 for r in rs]):.0f} | "
                f"{median([r['cpu_s'] for r in rs]):.1f} | "
                f"{median([r['guest_pause_ms'] or 0 for r in rs]):.0f} | "
                f"{median([r['blackout_ms'] or 0 for r in rs]):.0f} | "
                f"{sum(r['tcp_resets'] or 0 for r in rs)} | "
                f"{all(r['encrypted'] is tls for r in rs)} |")
        for a, b in (("Ferry TLS", "Ferry plain"), ("virsh TLS multifd x4", "virsh TLS")):
            if by.get(a) and by.get(b):
                t = median([r["total_ms"] or 0 for r in by[a]]) / \
                    max(median([r["total_ms"] or 0 for r in by[b]]), 1)
                c = median([r["cpu_s"] for r in by[a]]) / \
                    max(median([r["cpu_s"] for r in by[b]]), 0.01)
                ratios.append(f"- {link}: {a} / {b}: total time {t:.2f}, CPU {c:.2f}")
    failed = [r for r in runs if r["state"] != "completed"]
    md += ["", *ratios,
           f"- moves that did not complete: {len(failed)}; guest boots {boots}, memory "
           f"errors {errors}"]
    write(name, {"when": datetime.now(UTC).isoformat(), "machine": platform.node(),
                 "runs": runs}, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
