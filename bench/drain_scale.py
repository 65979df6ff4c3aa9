"""Planning drains at scale, on the simulated driver: 200 hosts, 5,000 VMs.

The controller's real services and database (SQLite in a temporary
directory) over the simulated cluster and its virtual clock (guest
measurements cost virtual time, not wall time).  For a sample of hosts it
plans a drain (`DrainService.plan`: reconcile every host, place, measure
every guest, predict, schedule) and reports the wall time and memory of each
part; then it runs one drain to its end on the simulated hosts and compares
the plan's ETA with the (virtual) time it took.

Usage: .venv/bin/python bench/drain_scale.py [--hosts 200] [--vms 5000] [--drains 10]
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import median, write
from ferry.db.engine import upgrade
from ferry.service.drain_plan import DrainRequest
from ferry.service.host_queries import InlineQueries
from ferry.service.settings import GuestImage, Settings
from ferry.service.wiring import build
from ferry.simulated import InlineExecutor, SimClock, SimCluster

LINK_MIB_S = 1170.0  # 10 GbE
HOST_MIB = 384 * 1024


def domain_xml(name: str, memory_mib: int, dirty: int, wss: int) -> str:
    return (f"<domain type='kvm'><name>{name}</name><memory unit='MiB'>{memory_mib}</memory>"
            f"<vcpu>2</vcpu><os><cmdline>ferry.dirty={dirty} ferry.wss={wss}</cmdline></os>"
            "<cpu mode='custom'><model>Haswell</model></cpu><devices/></domain>")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--vms", type=int, default=5000)
    ap.add_argument("--drains", type=int, default=10)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="ferry-scale-"))
    url = f"sqlite:///{tmp / 'ferry.db'}"
    upgrade(url)
    clock = SimClock()
    cluster = SimCluster(clock)
    names = [f"h{i:03d}" for i in range(args.hosts)]
    for n in names:
        cluster.add_host(n, memory_mib=HOST_MIB)
    settings = Settings(db_url=url, token="t" * 32,
                        guest_image=GuestImage(kernel="/img/vmlinuz", initrd="/img/initrd"))
    svc = build(settings, cluster.connector, clock, InlineExecutor(), InlineQueries())
    t0 = time.perf_counter()
    for n in names:
        svc.hosts.add(n, cluster.host(n).uri)
    register_s = time.perf_counter() - t0
    sizes = (1024, 2048, 4096, 8192, 16384)
    for i in range(args.vms):
        mem = rnd.choice(sizes)
        dirty = rnd.choice((0, 0, 0, 5, 20, 60, 150))
        cluster.host(names[i % len(names)]).define_and_start(
            domain_xml(f"vm{i:05d}", mem, dirty, min(mem // 2, 1024)))
    t0 = time.perf_counter()
    svc.inventory.reconcile()
    reconcile_s = time.perf_counter() - t0

    planner, drains = svc.drains.planner, svc.drains
    rows: list[dict[str, Any]] = []
    for host in rnd.sample(names, args.drains):
        t0 = time.perf_counter()
        plan = drains.plan(DrainRequest(host, link_mib_s=LINK_MIB_S))
        total = time.perf_counter() - t0
        tracemalloc.start()  # slows Python several times: memory in a second pass
        drains.plan(DrainRequest(host, link_mib_s=LINK_MIB_S))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        # the parts alone, from the same inputs
        t0 = time.perf_counter()
        svc.inventory.reconcile()
        again = time.perf_counter() - t0
        cands, targets, uris = planner.candidates(None, host)
        t1 = time.perf_counter()
        placement = planner.place(cands, targets, ())
        t2 = time.perf_counter()
        specs, model, _ = planner.specs(cands, placement, uris, LINK_MIB_S, None)
        t3 = time.perf_counter()
        planner.schedule(specs, model, 2)
        t4 = time.perf_counter()
        rows.append({"host": host, "vms": len(cands), "moves": len(plan["moves"]),
                     "blocked": len(plan["blocked"]), "eta_s": plan["eta_ms"] / 1000,
                     "plan_s": round(total, 3), "reconcile_s": round(again, 3),
                     "placement_s": round(t2 - t1, 4),
                     "measure_and_predict_s": round(t3 - t2, 3),
                     "schedule_s": round(t4 - t3, 4), "peak_mib": round(peak / 2**20, 1)})
        print(rows[-1])
    # one drain to its end on the simulated hosts (moves run one after another there:
    # the simulated executor is inline), against its plan's ETA
    host = rows[0]["host"]
    v0 = clock.monotonic()
    d = drains.start(DrainRequest(host, link_mib_s=LINK_MIB_S))
    d = drains.drains.get(d["id"])
    ran = {"host": host, "state": d["state"], "moves": len(d["moves"]),
           "completed": sum(m["state"] == "completed" for m in d["moves"]),
           "virtual_s": round(clock.monotonic() - v0, 1),
           "planned_eta_s": round((d["planned_eta_ms"] or 0) / 1000, 1)}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    data = {"when": datetime.now(UTC).isoformat(), "hosts": args.hosts, "vms": args.vms,
            "register_s": round(register_s, 1), "reconcile_s": round(reconcile_s, 2),
            "drains": rows, "ran": ran, "max_rss_mib": round(rss)}
    md = ["# Planning drains at scale (simulated driver)", "",
          f"{args.hosts} hosts ({HOST_MIB // 1024} GiB each), {args.vms} VMs of 1-16 GiB "
          f"dirtying 0-150 MiB/s, links {LINK_MIB_S:.0f} MiB/s; the controller's real "
          "services and SQLite database; guests measured on the virtual clock. One "
          f"reconcile of every host: {reconcile_s:.2f} s.", "",
          "| per host drain (median of "
          f"{len(rows)}) | value |", "|---|---|",
          f"| VMs on the host | {median([r['vms'] for r in rows]):.0f} |",
          f"| plan, whole (reconcile, place, measure, predict, schedule) | "
          f"{median([r['plan_s'] for r in rows]):.2f} s (max "
          f"{max(r['plan_s'] for r in rows):.2f}) |",
          f"| of which: reconcile every host (what the plan starts from) | "
          f"{median([r['reconcile_s'] for r in rows]):.2f} s |",
          f"| placement (pure) | {median([r['placement_s'] for r in rows]) * 1000:.1f} ms |",
          f"| measuring (virtual time) and predicting every guest | "
          f"{median([r['measure_and_predict_s'] for r in rows]) * 1000:.0f} ms |",
          f"| schedule (pure) | {median([r['schedule_s'] for r in rows]) * 1000:.0f} ms |",
          f"| peak Python memory while planning | "
          f"{median([r['peak_mib'] for r in rows]):.1f} MiB |",
          f"| planned ETA | {median([r['eta_s'] for r in rows]):.0f} s |", "",
          f"Process peak RSS {rss:.0f} MiB. One drain run to its end on the simulated "
          f"hosts ({ran['host']}, {ran['moves']} moves, {ran['completed']} completed): "
          f"{ran['virtual_s']} s of virtual time; the simulated executor runs moves one "
          f"after another, so this is not the plan's parallel schedule (planned ETA "
          f"{ran['planned_eta_s']} s).", ""]
    write("drain-scale", data, "\n".join(md))


if __name__ == "__main__":
    main()
