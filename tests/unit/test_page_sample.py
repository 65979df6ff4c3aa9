"""Counting non-zero guest pages from reads spread over the RAM (hypervisor/page_sample.py)."""

from __future__ import annotations

import random

from ferry.hypervisor.page_sample import CHUNK, PAGE, ram_ranges, sample

MIB = 2**20


def test_the_share_of_nonzero_pages_is_found_within_its_error() -> None:
    memory, data = 512 * MIB, 128 * MIB  # a quarter of the pages hold something

    def peek(address: int, size: int) -> bytes:
        return b"".join(b"\x01" * PAGE if a < data else bytes(PAGE)
                        for a in range(address, address + size, PAGE))

    s = sample(peek, memory, 4096, budget_s=30, rng=random.Random(7))
    assert s.pages == 4096 and s.pages % CHUNK == 0
    truth = (data - MIB) / (memory - MIB)
    assert 0 < s.stderr < 0.05
    assert abs(s.nonzero / s.pages - truth) < 3 * s.stderr


def _runs(memory: int, seed: int) -> tuple[set[int], float]:
    """Pages non-zero in runs of random lengths (as a guest's memory is), and the share
    of the sampled RAM they hold."""
    rng, full, page = random.Random(seed), set(), MIB // PAGE
    while page < memory // PAGE:
        length = rng.randint(1, 4096)
        if rng.random() < 0.4:
            full.update(range(page, min(page + length, memory // PAGE)))
        page += length
    return full, len(full) / (memory // PAGE - MIB // PAGE)


def test_reads_spread_over_memory_in_runs_find_its_share_closely() -> None:
    memory = 512 * MIB
    full, truth = _runs(memory, 3)

    def peek(address: int, size: int) -> bytes:
        return b"".join(b"\x01" * PAGE if a // PAGE in full else bytes(PAGE)
                        for a in range(address, address + size, PAGE))

    errors = []
    for seed in range(40):
        s = sample(peek, memory, 6144, budget_s=30, rng=random.Random(seed))
        errors.append(s.nonzero / s.pages - truth)
        assert abs(errors[-1]) < 3 * s.stderr  # the error it states holds
    # reads at random places (as before): +-0.024 on the lab's guests, this layout alike
    assert (sum(e * e for e in errors) / len(errors)) ** 0.5 < 0.012


def test_a_read_cut_short_is_still_spread_over_all_of_memory() -> None:
    memory = 512 * MIB  # the upper half of the RAM holds everything

    def peek(address: int, size: int) -> bytes:
        return (b"\x01" if address >= memory // 2 else b"\x00") * size

    for seed in range(20):  # ten reads: they are not all low or all high
        s = sample(peek, memory, 10 * CHUNK, budget_s=30, rng=random.Random(seed))
        assert 0.3 <= s.nonzero / s.pages <= 0.7


def test_addresses_the_guest_does_not_map_are_skipped_not_counted() -> None:
    memory = 6 * 2**30  # RAM below 2 GiB and from 4 GiB: say the high part is unmapped

    def peek(address: int, size: int) -> bytes:
        if address >= 4 * 2**30:
            raise LookupError(address)
        return bytes(size)

    s = sample(peek, memory, 1600, budget_s=30, rng=random.Random(1))
    # two thirds of the picks fall where nothing is mapped: it stops after as many
    # misses as pages asked for, with what it could read
    assert 0 < s.pages <= 1600 and s.nonzero == 0
    assert all(a % PAGE == 0 and b % PAGE == 0 for a, b in ram_ranges(memory))


def test_the_time_budget_bounds_the_reads() -> None:
    s = sample(lambda _a, size: bytes(size), 256 * MIB, 10**9, budget_s=0.05)
    assert 0 < s.pages < 10**9


def test_the_pages_read_say_how_much_a_compressed_stream_sends() -> None:
    """Zero pages are not counted (QEMU sends them as a flag); half the non-zero pages
    hold random bytes (as the lab workload's, which zstd cannot shrink) and half a
    repeated pattern: the stream sends about half of them.  Pages that do not
    compress at all read 1.0, never more (zstd's frame headers)."""
    rng = random.Random(3)
    noise = [rng.randbytes(PAGE) for _ in range(64)]

    def half(address: int, size: int) -> bytes:
        return b"".join(noise[(a // PAGE) % 64] if (a // PAGE) % 2 else
                        (b"\x05" * PAGE if (a // PAGE) % 4 == 0 else bytes(PAGE))
                        for a in range(address, address + size, PAGE))

    s = sample(half, 256 * MIB, 1024, budget_s=30, rng=random.Random(1))
    assert 0.6 < s.wire_share < 0.7  # 2 of 3 non-zero pages random, 1 a pattern
    rand = sample(lambda _a, size: rng.randbytes(size), 256 * MIB, 256, budget_s=30)
    assert rand.wire_share == 1.0
    assert sample(lambda _a, size: bytes(size), 256 * MIB, 256, budget_s=30).wire_share == 1.0
