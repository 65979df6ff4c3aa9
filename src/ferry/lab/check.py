"""`ferry lab check`: what a guest's heartbeats say about its moves.

Merges the timestamped heartbeat logs a guest left on every lab host it ran
on.  A guest that survived its migrations shows one boot, a sequence that
kept counting, no memory or disk errors, and a largest gap between heartbeats
(arrival time on the host) that is the pause it went through.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class GuestCheck:
    vm: str
    hosts: list[str]
    boots: int
    last_seq: int
    heartbeats: int
    max_gap_ms: float
    memory_errors: int
    seq_resets: int
    disk_errors: int = 0  # data-disk records lost, stale or damaged
    disk_records: int = 0  # records written to data disks (this boot)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_lines(lines: list[tuple[int, str, str]], vm: str) -> GuestCheck:
    """Evaluate (arrival_ns, host, text) lines, in any order.

    >>> parse_lines([(0, "a", "FERRY BOOT 1 wss=1 dirty=0"), (10_000_000, "a", "HB 0 0"),
    ...              (60_000_000, "b", "HB 1 0")], "v").max_gap_ms
    50.0
    """
    lines = sorted(lines)
    boots: set[int] = set()
    hosts: list[str] = []
    last_seq = -1
    heartbeats = 0
    max_gap_ns = 0
    prev_ns: int | None = None
    memerr_lines = 0
    reported_errors = 0
    diskerr_lines = reported_disk = records = 0
    resets = 0
    for ts, host, text in lines:
        parts = text.split()
        if not parts:
            continue
        if host not in hosts:
            hosts.append(host)
        if parts[:2] == ["FERRY", "BOOT"] and len(parts) > 2:
            boots.add(int(parts[2]))
            prev_ns = None  # the gap across a reboot is not a migration pause
            records = 0  # counted per boot
        elif parts[0] == "HB" and len(parts) >= 3:
            seq, errs = int(parts[1]), int(parts[2])
            if seq < last_seq:
                resets += 1
            last_seq = seq
            reported_errors = max(reported_errors, errs)
            if len(parts) >= 5:
                reported_disk = max(reported_disk, int(parts[3]))
                records = int(parts[4])
            heartbeats += 1
            if prev_ns is not None:
                max_gap_ns = max(max_gap_ns, ts - prev_ns)
            prev_ns = ts
        elif parts[0] == "MEMERR":
            memerr_lines += 1
        elif parts[0] == "DISKERR":
            diskerr_lines += 1
    return GuestCheck(vm=vm, hosts=hosts, boots=len(boots), last_seq=last_seq,
                      heartbeats=heartbeats, max_gap_ms=round(max_gap_ns / 1e6, 1),
                      memory_errors=max(memerr_lines, reported_errors), seq_resets=resets,
                      disk_errors=max(diskerr_lines, reported_disk), disk_records=records)


def check_vm(lab: Path, vm: str, since_ns: int | None = None,
             until_ns: int | None = None) -> GuestCheck:
    """The guest's heartbeats on every lab host, optionally only the lines that
    arrived within [since_ns, until_ns] (e.g. one migration)."""
    return parse_lines(read_lines(lab, vm, since_ns, until_ns), vm)


def read_lines(lab: Path, vm: str, since_ns: int | None = None,
               until_ns: int | None = None) -> list[tuple[int, str, str]]:
    """(arrival ns, host, text) of `<vm>.hb` in every lab host's console directory."""
    lines: list[tuple[int, str, str]] = []
    for hb in sorted(lab.glob(f"hosts/*/var-lib-libvirt/ferry-console/{vm}.hb")):
        host = hb.parts[-4]
        for raw in hb.read_text(errors="replace").splitlines():
            stamp, _, text = raw.partition(" ")
            if not stamp.isdigit():
                continue
            ts = int(stamp)
            if (since_ns is None or ts >= since_ns) and (until_ns is None or ts <= until_ns):
                lines.append((ts, host, text))
    return sorted(lines)
