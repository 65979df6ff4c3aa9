"""`ferry lab check`: what a guest's heartbeats say about its moves.

Merges the timestamped heartbeat logs a guest left on every lab host it ran
on, and what the lab's network probe (a client outside every host) saw of
it.  A guest that survived its migrations shows one boot, a sequence that
kept counting, no memory or disk errors, and a largest gap between heartbeats
(arrival time on the host) that is the pause it went through.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, replace
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
    # what the lab's network probe saw (None: the guest has no NIC the probe talks to)
    net_replies: int | None = None  # UDP echoes that came back
    net_max_gap_ms: float | None = None  # longest time without one: the blackout
    net_lost: int | None = None  # datagrams never answered (between the first and last)
    tcp_records: int | None = None  # records echoed back on the TCP connection
    tcp_max_gap_ms: float | None = None
    tcp_resets: int | None = None  # established connections that broke
    tcp_errors: int | None = None  # records back out of order or damaged

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
    """The guest's heartbeats on every lab host and what the network probe saw,
    optionally only what arrived within [since_ns, until_ns] (e.g. one migration;
    the probe's window ends NET_GRACE_NS later: the first answer after the switch
    may come after Ferry recorded the end)."""
    hb = parse_lines(read_lines(lab, vm, since_ns, until_ns), vm)
    net_until = until_ns + NET_GRACE_NS if until_ns is not None else None
    net = parse_net(read_net(lab, vm, since_ns, net_until))
    return replace(hb, **net) if net else hb


NET_GRACE_NS = 1_000_000_000


def read_net(lab: Path, vm: str, since_ns: int | None = None,
             until_ns: int | None = None) -> list[tuple[int, str]]:
    """(arrival ns, text) of the probe's `net/<vm>.net` within the window, from the
    probe's last start on this guest (a deleted guest's lines are not its own), and
    the last answer before the window (a blackout that began before it counts)."""
    path = lab / "net" / f"{vm}.net"
    if not path.exists():
        return []
    out: list[tuple[int, str]] = []
    before: tuple[int, str] | None = None
    for raw in path.read_text(errors="replace").splitlines():
        stamp, _, text = raw.partition(" ")
        if not stamp.isdigit():
            continue
        ts = int(stamp)
        if until_ns is not None and ts > until_ns:
            break
        if text.startswith("N "):
            out, before = [], None
        elif since_ns is not None and ts < since_ns:
            if text.startswith("U "):
                before = (ts, text)
        else:
            out.append((ts, text))
    return ([before] if before and out else []) + out


def parse_net(lines: list[tuple[int, str]]) -> dict[str, Any]:
    """The probe's lines as GuestCheck's net fields ({} when there are none).

    >>> r = parse_net([(0, "S 0"), (1_000_000, "U 0"), (11_000_000, "U 1"),
    ...                (301_000_000, "U 4"), (302_000_000, "C"), (303_000_000, "R reset")])
    >>> r["net_max_gap_ms"], r["net_lost"], r["tcp_resets"]
    (290.0, 2, 1)
    """
    if not lines:
        return {}
    udp: list[tuple[int, int]] = []
    tcp: list[int] = []
    last_send = None
    resets = errors = 0
    for ts, text in lines:
        parts = text.split()
        if not parts:
            continue
        if parts[0] == "U" and len(parts) == 2:
            udp.append((ts, int(parts[1])))
        elif parts[0] == "S":
            last_send = ts
        elif parts[0] == "T":
            tcp.append(ts)
        elif parts[0] == "X":
            tcp.append(ts)
            errors += 1
        elif parts[0] == "R":
            resets += 1
    times = [t for t, _ in udp]
    if last_send is not None and times and last_send > times[-1]:
        times.append(last_send)  # sending, and nothing came back since
    seqs = {q for _, q in udp}
    lost = (max(seqs) - min(seqs) + 1 - len(seqs)) if seqs else 0
    return {"net_replies": len(udp), "net_max_gap_ms": _max_gap_ms(times),
            "net_lost": lost, "tcp_records": len(tcp), "tcp_max_gap_ms": _max_gap_ms(tcp),
            "tcp_resets": resets, "tcp_errors": errors}


def _max_gap_ms(times: list[int]) -> float:
    return round(max((b - a for a, b in itertools.pairwise(times)), default=0)
                 / 1e6, 1)


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
