"""Counting a guest's non-zero memory by reading random guest-physical pages.

What the first round of a migration sends is the guest's non-zero pages:
QEMU sends a zero page as a flag of a few bytes.  The QEMU process's resident
memory is only an upper bound (pages the guest touched once and zeroed, or
QEMU's own), off by 2.4x on a fresh lab guest.  So a few hundred pages are
read through libvirt (`virDomainMemoryPeek`, guest-physical addresses) and
counted zero or not: the share of non-zero pages, times the guest's memory,
with its standard error.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable

from ferry.hypervisor.types import PageSample

PAGE = 4096
CHUNK = 16  # pages per read: libvirt reads at most 64 KiB at a time
GIB = 2**30
LOW_RAM_MAX = 2 * GIB  # x86 guests keep RAM below this address...
HIGH_RAM_START = 4 * GIB  # ...and the rest above 4 GiB (PCI hole between)
ZERO = bytes(PAGE)


def ram_ranges(memory_bytes: int) -> list[tuple[int, int]]:
    """Guest-physical [start, end) ranges that hold RAM, as sampled.

    >>> ram_ranges(256 * 2**20)
    [(1048576, 268435456)]
    >>> [(a // GIB, b // GIB) for a, b in ram_ranges(6 * GIB)]
    [(0, 2), (4, 8)]
    """
    low = min(memory_bytes, LOW_RAM_MAX)
    out = [(1 << 20, low)]  # below 1 MiB: the BIOS, ROMs and VGA window
    if memory_bytes > low:
        out.append((HIGH_RAM_START, HIGH_RAM_START + memory_bytes - low))
    return out


def sample(peek: Callable[[int, int], bytes], memory_bytes: int, pages: int,
           budget_s: float, rng: random.Random | None = None) -> PageSample:
    """Read up to `pages` pages (`peek(address, size)`), CHUNK pages at a random place
    per read (each read costs a monitor round trip: ~9 ms on the lab), for at most
    `budget_s`.  Neighbouring pages are alike, so the error is the spread of the
    chunks' shares (cluster sampling), not that of independent pages.  An address the
    guest does not map (machine types place the PCI hole differently) is skipped."""
    rng = rng or random.Random()
    ranges = [(a, b) for a, b in ram_ranges(memory_bytes) if b - a >= CHUNK * PAGE]
    weights = [b - a for a, b in ranges]
    shares: list[float] = []
    read = nonzero = skipped = 0
    deadline = time.monotonic() + budget_s
    while ranges and read < pages and time.monotonic() < deadline and skipped < pages:
        a, b = rng.choices(ranges, weights)[0]
        address = a + rng.randrange((b - a) // PAGE - CHUNK + 1) * PAGE
        try:
            data = peek(address, CHUNK * PAGE)
        except LookupError:
            skipped += 1
            continue
        full = sum(data[i:i + PAGE] != ZERO for i in range(0, len(data), PAGE))
        read, nonzero = read + CHUNK, nonzero + full
        shares.append(full / CHUNK)
    n = len(shares)
    stderr = statistics.stdev(shares) / n ** 0.5 if n > 1 else 1.0
    return PageSample(read, nonzero, stderr)
