"""Reading a guest's heartbeats: what counts as a boot, a gap, an error."""

from pathlib import Path

from ferry.lab.check import check_vm, parse_lines

MS = 1_000_000


def hb(t_ms: int, host: str, seq: int, errs: int = 0) -> tuple[int, str, str]:
    return (t_ms * MS, host, f"HB {seq} {errs}")


def test_clean_migration() -> None:
    lines = [(0, "node1", "FERRY BOOT 1 wss=64 dirty=8")]
    lines += [hb(10 * i, "node1", i) for i in range(50)]
    lines += [hb(490 + 120 + 10 * i, "node2", 50 + i) for i in range(50)]
    c = parse_lines(lines, "v")
    assert c.boots == 1
    assert c.hosts == ["node1", "node2"]
    assert c.last_seq == 99
    assert c.heartbeats == 100
    assert c.max_gap_ms == 120.0
    assert c.memory_errors == 0
    assert c.seq_resets == 0


def test_reboot_counts_second_boot_and_ignores_reboot_gap() -> None:
    lines = [(0, "a", "FERRY BOOT 1 wss=1 dirty=0"), hb(10, "a", 0), hb(20, "a", 1),
             (5000 * MS, "b", "FERRY BOOT 2 wss=1 dirty=0"), hb(5010, "b", 0)]
    c = parse_lines(lines, "v")
    assert c.boots == 2
    assert c.seq_resets == 1
    assert c.max_gap_ms == 10.0


def test_memory_errors_from_lines_and_counter() -> None:
    lines = [(0, "a", "FERRY BOOT 1 wss=1 dirty=0"), hb(10, "a", 0),
             (11 * MS, "a", "MEMERR page=3 gen=1 word=0"), hb(20, "a", 1, errs=4)]
    assert parse_lines(lines, "v").memory_errors == 4


def test_check_vm_reads_every_host(tmp_path: Path) -> None:
    for host, start, seqs in (("node1", 0, range(3)), ("node2", 100, range(3, 5))):
        d = tmp_path / "hosts" / host / "var-lib-libvirt" / "ferry-console"
        d.mkdir(parents=True)
        text = "".join(f"{(start + 10 * i) * MS} HB {s} 0\n" for i, s in enumerate(seqs))
        (d / "web1.hb").write_text(text)
    c = check_vm(tmp_path, "web1")
    assert c.hosts == ["node1", "node2"]
    assert c.last_seq == 4
    assert c.max_gap_ms == 80.0


def test_network_check_counts_this_guest_only_and_a_blackout_begun_before(
        tmp_path: Path) -> None:
    net = tmp_path / "net"
    net.mkdir()
    ms = 1_000_000
    (net / "web1.net").write_text("".join(f"{t * ms} {x}\n" for t, x in [
        (0, "N 198.19.0.10"), (10, "U 0"), (20, "R reset"),  # a deleted guest's
        (100, "N 198.19.0.10"), (110, "S 0"), (110, "C"), (120, "U 1"), (130, "T 0"),
        (400, "U 29"), (410, "T 1"), (420, "U 30")]))
    whole = check_vm(tmp_path, "web1")
    assert (whole.net_replies, whole.tcp_resets, whole.net_lost) == (3, 0, 27)
    assert whole.net_max_gap_ms == 280.0
    # a window that starts inside the blackout still sees all of it
    assert check_vm(tmp_path, "web1", since_ns=300 * ms).net_max_gap_ms == 280.0
    assert check_vm(tmp_path, "web1", since_ns=300 * ms).tcp_max_gap_ms == 0.0
