"""Counting a guest's non-zero memory by reading guest-physical pages spread over it.

What the first round of a migration sends is the guest's non-zero pages:
QEMU sends a zero page as a flag of a few bytes.  The QEMU process's resident
memory is only an upper bound (pages the guest touched once and zeroed, or
QEMU's own), off by 2.4x on a fresh lab guest.  So a few hundred reads of
CHUNK pages go through libvirt (`virDomainMemoryPeek`, guest-physical
addresses) and each page is counted zero or not: the share of non-zero
pages, times the guest's memory, with its standard error.

Where the reads fall matters more than how many there are: a guest's memory
is zero or not in long runs (the kernel low, the page cache, a workload's
buffers), so reads at random places repeat some runs and miss others.  Reads
spread evenly over the RAM (the k-th at the golden-ratio point k x 0.618...
from a random start: any first n of them are spread about evenly, so a read
cut short by the time budget is still spread) see every run in proportion.
Measured on full dumps of four fresh lab guests (bench/page_sampling.py):
the share's error fell 3.6-4.9x against random reads of the same number.

The non-zero pages read are also compressed as a compressed migration stream
sends them (zstd level 1, QEMU's multifd default), each read's pages together:
bytes out per byte in says what compressing the stream would save.  QEMU
compresses a channel's packets in one stream, so this reads a little high
(lab: a fresh 256 MiB guest sent 57 MiB of its 100 MiB non-zero pages).
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Callable

import zstandard

from ferry.hypervisor.types import PageSample

PAGE = 4096
CHUNK = 16  # pages per read: libvirt reads at most 64 KiB at a time
GIB = 2**30
LOW_RAM_MAX = 2 * GIB  # x86 guests keep RAM below this address...
HIGH_RAM_START = 4 * GIB  # ...and the rest above 4 GiB (PCI hole between)
ZERO = bytes(PAGE)
GOLDEN = (math.sqrt(5) - 1) / 2


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


def place(ranges: list[tuple[int, int]], x: float) -> int:
    """The address of a CHUNK-page read at fraction x in [0, 1) of the ranges' places
    to read (taken as one run, in address order).

    >>> place([(0, 64 * PAGE)], 0.0), place([(0, 64 * PAGE)], 0.999) // PAGE
    (0, 48)
    >>> place([(0, 32 * PAGE), (2**32, 2**32 + 32 * PAGE)], 0.5) - 2**32
    0
    """
    starts = [(b - a) // PAGE - CHUNK + 1 for a, b in ranges]
    k = min(int(x * sum(starts)), sum(starts) - 1)
    for (a, _), n in zip(ranges, starts, strict=True):
        if k < n:
            return a + k * PAGE
        k -= n
    raise AssertionError("unreachable: k < the places to read")


def sample(peek: Callable[[int, int], bytes], memory_bytes: int, pages: int,
           budget_s: float, rng: random.Random | None = None) -> PageSample:
    """Read up to `pages` pages (`peek(address, size)`), CHUNK pages per read (each read
    costs a monitor round trip: ~9 ms on the lab), spread over the RAM as the module
    says, for at most `budget_s`.  The standard error comes from the differences
    between reads next to each other in address order (an evenly spread sample's
    error is that of its neighbours, not of the whole memory's spread; this
    overstates it by about half, measured).  An address the guest does not map
    (machine types place the PCI hole differently) is skipped."""
    rng = rng or random.Random()
    ranges = [(a, b) for a, b in ram_ranges(memory_bytes) if b - a >= CHUNK * PAGE]
    start = rng.random()
    seen: list[tuple[float, float]] = []  # (where, share of non-zero pages)
    read = nonzero = skipped = k = 0
    squeeze = Squeeze()
    deadline = time.monotonic() + budget_s
    while ranges and read < pages and time.monotonic() < deadline and skipped < pages:
        x = (start + k * GOLDEN) % 1.0
        k += 1
        try:
            data = peek(place(ranges, x), CHUNK * PAGE)
        except LookupError:
            skipped += 1
            continue
        pages_in = [data[i:i + PAGE] for i in range(0, len(data), PAGE)]
        full = [p for p in pages_in if p != ZERO]
        squeeze.add(full)
        read, nonzero = read + CHUNK, nonzero + len(full)
        seen.append((x, len(full) / CHUNK))
    return PageSample(read, nonzero, _stderr([s for _, s in sorted(seen)]), profile(seen),
                      squeeze.share())


ZSTD_LEVEL = 1  # QEMU's multifd-zstd-level default


class Squeeze:
    """Bytes in and out of zstd over pages as a compressed stream sends them.

    >>> z = Squeeze()
    >>> z.add([bytes([7]) * PAGE] * 4)
    >>> z.share() < 0.01
    True
    >>> Squeeze().share()
    1.0
    """

    def __init__(self) -> None:
        self._zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self.bytes_in = self.bytes_out = 0

    def add(self, pages: list[bytes]) -> None:
        if pages:
            raw = b"".join(pages)
            self.bytes_in += len(raw)
            self.bytes_out += len(self._zstd.compress(raw))

    def share(self) -> float:
        """Bytes out per byte in, at most 1 (a stream sends what does not compress as is)."""
        return min(1.0, self.bytes_out / self.bytes_in) if self.bytes_in else 1.0


PROFILE_BINS = 10


def profile(seen: list[tuple[float, float]]) -> tuple[float, ...]:
    """The mean non-zero share of the reads in each tenth of the RAM (where, share); a
    tenth no read fell in takes the overall mean.

    >>> profile([(0.05, 1.0), (0.15, 0.5), (0.95, 0.0), (0.96, 1.0)])
    (1.0, 0.5, 0.625, 0.625, 0.625, 0.625, 0.625, 0.625, 0.625, 0.5)
    """
    if not seen:
        return ()
    mean = sum(s for _, s in seen) / len(seen)
    bins: list[list[float]] = [[] for _ in range(PROFILE_BINS)]
    for x, share in seen:
        bins[min(int(x * PROFILE_BINS), PROFILE_BINS - 1)].append(share)
    return tuple(sum(b) / len(b) if b else mean for b in bins)


def _stderr(shares: list[float]) -> float:
    """The standard error of the mean share of reads spread evenly, in address order
    (successive differences); 1.0 with under two reads.

    >>> _stderr([0.0, 0.0, 1.0, 1.0])  # two runs, one edge between them
    0.2041...
    """
    n = len(shares)
    if n < 2:
        return 1.0
    sq = sum((b - a) ** 2 for a, b in itertools.pairwise(shares))
    return math.sqrt(sq / (2 * (n - 1)) / n)
