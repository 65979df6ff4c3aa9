"""Where each VM can go, and where it goes (pure).

A host can take a VM when it is up and not in maintenance, is not the VM's
own host, accepts the guest's CPU (the inventory's per-host verdicts), has
the memory free counting moves already placed or coming in, and reaches
every disk: a shared pool must be on that host, a local one is copied
(block migration); and can plug in every network interface (the networks
and bridges the inventory last read from it).  Among those that can, the VM
goes where the most memory stays free after it (spreading the load); bigger
VMs are placed first so that they still find room.  A VM nobody can take is
listed with each host's reason, and does not stop the others.

The migration's prechecks ask the hosts again before any byte moves: this
is the plan, they are the truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ferry.hypervisor.types import QEMU_OVERHEAD_MIB, HostNetworks, NicInfo
from ferry.network.check import check_nics, problems


@dataclass(frozen=True)
class Target:
    name: str
    up: bool
    maintenance: bool
    memory_free_mib: int
    networks: HostNetworks | None = None  # None: not read yet (not checked here)


@dataclass(frozen=True)
class Disk:
    name: str
    pool: str | None  # None: on no pool Ferry knows
    kind: str = ""  # dir-shared, local, rbd
    hosts: tuple[str, ...] = ()  # the pool's hosts; () = every host


@dataclass(frozen=True)
class Candidate:
    """A VM to place."""

    vm: str
    host: str | None
    memory_mib: int
    state: str = "running"  # the VM's state in the inventory
    cpu_blocked: dict[str, list[str]] = field(default_factory=dict)
    disks: tuple[Disk, ...] = ()
    nics: tuple[NicInfo, ...] = ()


@dataclass(frozen=True)
class Placement:
    to: dict[str, str]  # vm -> host
    blocked: dict[str, str]  # vm -> why it cannot move


def refusal(c: Candidate, t: Target, reserved_mib: int = 0) -> str | None:
    """Why `t` cannot take `c` (None: it can)."""
    if t.name == c.host:
        return "its own host"
    if not t.up:
        return "unreachable"
    if t.maintenance:
        return "in maintenance"
    if t.name in c.cpu_blocked:
        missing = ", ".join(c.cpu_blocked[t.name]) or "incompatible"
        return f"CPU lacks {missing}"
    need = c.memory_mib + QEMU_OVERHEAD_MIB
    free = t.memory_free_mib - reserved_mib
    if free < need:
        return f"{free} MiB free, needs {need} MiB"
    for d in c.disks:
        if d.pool is None:
            return f"disk {d.name} is on no pool Ferry knows"
        if d.kind != "local" and d.hosts and t.name not in d.hosts:
            return f"pool {d.pool} (disk {d.name}) is not on it"
    if c.nics and t.networks is not None:
        lacks = problems(check_nics(c.nics, t.networks))
        if lacks:
            return "; ".join(lacks)
    return None


def place(vms: list[Candidate], targets: list[Target], allowed: set[str] | None = None,
          reserved_mib: dict[str, int] | None = None) -> Placement:
    """A destination for each VM (or why it has none).  `allowed`: only these hosts
    (`--to`); `reserved_mib`: memory already promised to incoming migrations.

    >>> ts = [Target("b", True, False, 1000), Target("c", True, False, 600)]
    >>> p = place([Candidate("x", "a", 400), Candidate("y", "a", 300),
    ...            Candidate("z", "a", 2000)], ts)
    >>> p.to
    {'x': 'b', 'y': 'c'}
    >>> p.blocked["z"].split("; ")
    ['no host can take it: b: 1000 MiB free, needs 2060 MiB', 'c: 600 MiB free, needs 2060 MiB']
    """
    held = dict(reserved_mib or {})
    pool = [t for t in targets if allowed is None or t.name in allowed]
    to: dict[str, str] = {}
    blocked: dict[str, str] = {}
    for c in sorted(vms, key=lambda c: (-c.memory_mib, c.vm)):
        if c.state != "running":
            blocked[c.vm] = ("already migrating" if c.state == "migrating" else
                             f"not running ({c.state}): only a running VM moves live")
            continue
        why = {t.name: refusal(c, t, held.get(t.name, 0)) for t in pool}
        ok = [t for t in pool if why[t.name] is None]
        if not ok:
            others = "; ".join(f"{n}: {w}" for n, w in why.items() if w != "its own host")
            blocked[c.vm] = f"no host can take it: {others or 'no other host'}"
            continue
        best = max(ok, key=lambda t: (t.memory_free_mib - held.get(t.name, 0), t.name))
        to[c.vm] = best.name
        held[best.name] = held.get(best.name, 0) + c.memory_mib + QEMU_OVERHEAD_MIB
    return Placement(dict(sorted(to.items())), blocked)
