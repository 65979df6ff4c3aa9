"""How closely reading a few hundred guest pages finds a guest's non-zero memory:
reads spread evenly over the RAM (Ferry's `hypervisor/page_sample.py`) against
reads at random places (Ferry before), on the same fresh guests, against the
truth.

Each guest is created fresh (size, working set, pattern and rate from a seed),
its whole RAM is saved once (QEMU's `pmemsave` through libvirt) and counted
page by page: the truth.  Then both ways of sampling read from that saved copy
(Ferry's own `sample()`, its reads served from the copy), REPEATS times each at
the read counts a migration (128 reads) and `ferry predict` (384) make: the
spread of their estimates around the truth is their error, with no noise from
the guest changing between reads, and the error each way states is checked
against it.

Usage: .venv/bin/python bench/page_sampling.py [--seed 21] [--vms 6]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

from common import ferry, write
from ferry.hypervisor.page_sample import CHUNK, PAGE, ZERO, ram_ranges, sample
from ferry.hypervisor.types import PageSample

MIB = 2**20
NODE1 = "qemu+tls://198.18.0.11/system"
READS = (128, 384)  # a migration's measurement, `ferry predict`'s
REPEATS = 300


def random_reads(peek: Any, memory: int, pages: int, rng: random.Random) -> PageSample:
    """Ferry's sampler before: CHUNK pages at a random place per read, the error from
    the reads' spread (cluster sampling)."""
    ranges = ram_ranges(memory)
    weights = [b - a for a, b in ranges]
    shares = []
    while len(shares) * CHUNK < pages:
        a, b = rng.choices(ranges, weights)[0]
        data = peek(a + rng.randrange((b - a) // PAGE - CHUNK + 1) * PAGE, CHUNK * PAGE)
        shares.append(sum(data[i:i + PAGE] != ZERO for i in range(0, len(data), PAGE)) / CHUNK)
    n = len(shares)
    return PageSample(n * CHUNK, round(sum(shares) * CHUNK), statistics.stdev(shares) / n ** 0.5)


def one(rng: random.Random, i: int, workdir: str) -> dict[str, Any]:
    memory = rng.choice((256, 384, 512, 768))
    wss = rng.randrange(16, memory // 2, 8)
    pattern = rng.choice(("uniform", "hotcold", "sequential"))
    dirty = rng.choice((0, 0, 4, 16))
    vm = f"ps{i}-{rng.randrange(16**4):04x}"
    ferry("vm", "delete", vm, "--delete-volumes", check=False)
    ferry("vm", "create", vm, "--host", "node1", "--memory", str(memory), "--workload-wss",
          str(wss), "--workload-dirty", str(dirty), "--workload-pattern", pattern)
    path = os.path.join(workdir, f"{vm}.mem")
    try:
        time.sleep(5)  # the workload has filled its working set
        cmd = {"execute": "pmemsave", "arguments": {"val": 0, "size": memory * MIB,
                                                    "filename": path}}
        subprocess.run(["virsh", "-c", NODE1, "qemu-monitor-command", vm, json.dumps(cmd)],
                       check=True, capture_output=True)
        with open(path, "rb") as f:
            ram = f.read()
    finally:
        ferry("vm", "delete", vm, "--delete-volumes", check=False)
        if os.path.exists(path):
            os.unlink(path)
    (lo, hi), = ram_ranges(memory * MIB)  # guests here stay under 2 GiB: one range
    truth = sum(ram[a:a + PAGE] != ZERO for a in range(lo, hi, PAGE)) / ((hi - lo) // PAGE)

    def peek(address: int, size: int) -> bytes:
        return ram[address:address + size]

    row: dict[str, Any] = {"vm": vm, "memory_mib": memory, "wss_mib": wss, "pattern": pattern,
                           "dirty_mib_s": dirty, "nonzero_share": round(truth, 4)}
    for reads in READS:
        for way, fn in (("spread", lambda r, k=reads: sample(peek, memory * MIB, k * CHUNK,
                                                              60, r)),
                        ("random", lambda r, k=reads: random_reads(peek, memory * MIB,
                                                                   k * CHUNK, r))):
            got = [fn(random.Random(rep)) for rep in range(REPEATS)]
            errs = [s.nonzero / s.pages - truth for s in got]
            rms = statistics.fmean(e * e for e in errs) ** 0.5
            row[f"{way}_{reads}"] = {
                "rms_share": round(rms, 4), "rms_rel": round(rms / truth, 4),
                "stated": round(statistics.fmean(s.stderr for s in got), 4),
                "within_3_stated": round(sum(abs(e) < 3 * s.stderr
                                             for e, s in zip(errs, got, strict=True)) / REPEATS, 3)}
    return row


def table(rows: list[dict[str, Any]], seed: int) -> str:
    out = ["# Non-zero memory from page reads: spread vs random (bench/page_sampling.py)\n",
           f"{datetime.now(UTC):%Y-%m-%d}, seed {seed}, fresh guests, {REPEATS} samplings each "
           "of the guest's saved RAM; error = RMS of (estimated - true share of non-zero "
           "pages), relative to the true share.\n",
           "| VM | MiB | wss | pattern | MiB/s | non-zero | " + " | ".join(
               f"{w} {k} reads" for k in READS for w in ("random", "spread")) +
           " | spread/random |", "|---" * (7 + 2 * len(READS)) + "|"]
    for r in rows:
        cells = [f"{r[f'{w}_{k}']['rms_rel']:.1%} (states {r[f'{w}_{k}']['stated']:.3f})"
                 for k in READS for w in ("random", "spread")]
        ratio = "/".join(f"{r[f'spread_{k}']['rms_rel'] / r[f'random_{k}']['rms_rel']:.2f}"
                         for k in READS)
        out.append(f"| {r['vm']} | {r['memory_mib']} | {r['wss_mib']} | {r['pattern']} | "
                   f"{r['dirty_mib_s']} | {r['nonzero_share']:.1%} | " + " | ".join(cells) +
                   f" | {ratio} |")
    for k in READS:
        rnd = statistics.median(r[f"random_{k}"]["rms_rel"] for r in rows)
        spr = statistics.median(r[f"spread_{k}"]["rms_rel"] for r in rows)
        held = min(r[f"spread_{k}"]["within_3_stated"] for r in rows)
        out.append(f"\n- {k} reads: median error {rnd:.1%} random, {spr:.1%} spread "
                   f"({rnd / spr:.1f}x smaller); spread's error within 3x its stated one in "
                   f"at least {held:.0%} of samplings per guest")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--vms", type=int, default=6)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    with tempfile.TemporaryDirectory(prefix="ferry-ram-") as workdir:
        os.chmod(workdir, 0o777)  # QEMU writes the copy (it may run as another user)
        rows = [one(rng, i, workdir) for i in range(a.vms)]
    data = {"when": datetime.now(UTC).isoformat(), "machine": platform.node(),
            "seed": a.seed, "repeats": REPEATS, "rows": rows}
    write("page_sampling", data, table(rows, a.seed))


if __name__ == "__main__":
    main()
