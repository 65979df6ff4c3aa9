"""Counting a guest's non-zero memory by reading random guest-physical pages.

What the first round of a migration sends is the guest's non-zero pages:
QEMU sends a zero page as a flag of a few bytes.  The QEMU process's resident
memory is only an upper bound (pages the guest touched once and zeroed, or
QEMU's own), off by 2.4x on a fresh lab guest.  So a few hundred pages are
read through libvirt (`virDomainMemoryPeek`, guest-physical addresses) and
counted zero or not: the share of non-zero pages, times the guest's memory,
with the binomial standard error.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from ferry.hypervisor.types import PageSample

PAGE = 4096
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


def sample(peek: Callable[[int], bytes], memory_bytes: int, pages: int, budget_s: float,
           rng: random.Random | None = None) -> PageSample:
    """Read up to `pages` random pages (`peek(address)` returns one page) for at most
    `budget_s`; an address the guest does not map (machine types place the PCI hole
    differently) is skipped."""
    rng = rng or random.Random()
    ranges = ram_ranges(memory_bytes)
    weights = [b - a for a, b in ranges]
    read = nonzero = skipped = 0
    deadline = time.monotonic() + budget_s
    while read < pages and time.monotonic() < deadline and skipped < pages:
        a, b = rng.choices(ranges, weights)[0]
        address = a + rng.randrange((b - a) // PAGE) * PAGE
        try:
            data = peek(address)
        except LookupError:
            skipped += 1
            continue
        read += 1
        nonzero += data != ZERO
    return PageSample(read, nonzero)
