from ferry.hypervisor.types import JobStats
from ferry.migration.watch import to_sample


def test_dirty_rate_converted_from_pages_to_bytes() -> None:
    s = to_sample(JobStats(active=True, elapsed_ms=500, memory_total_bytes=100,
                           memory_remaining_bytes=40, dirty_rate_pages_s=256, page_size=4096,
                           iteration=2, bandwidth_bytes_s=10, downtime_ms=30))
    assert s.dirty_rate_bytes_s == 1024 * 1024
    assert (s.t_ms, s.iteration, s.memory_remaining_bytes) == (500, 2, 40)
    assert s.expected_downtime_ms == 30
