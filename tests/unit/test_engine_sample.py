from ferry.hypervisor.types import JobStats
from ferry.migration.watch import to_sample


def test_dirty_rate_converted_from_pages_to_bytes() -> None:
    s = to_sample(JobStats(active=True, elapsed_ms=500, memory_total_bytes=100,
                           memory_remaining_bytes=40, dirty_rate_pages_s=256, page_size=4096,
                           iteration=2, bandwidth_bytes_s=10, downtime_ms=30))
    assert s.dirty_rate_bytes_s == 1024 * 1024
    assert (s.t_ms, s.iteration, s.memory_remaining_bytes) == (500, 2, 40)
    assert s.expected_downtime_ms == 30


class _Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[object, str]] = []

    def event(self, kind: object, message: str) -> None:
        self.events.append((kind, message))

    def sample(self, _sample: object) -> None:
        pass


class _Source:
    def __init__(self, stats: list[JobStats]) -> None:
        self.stats = stats

    def job_stats(self, _vm: str) -> JobStats:
        return self.stats.pop(0)


def test_a_round_that_ends_with_nothing_left_is_not_the_end() -> None:
    """QEMU's remaining reads 0 at the end of each round, before the bitmap sync adds
    what was dirtied meanwhile (lab: a `sent` said then let a drain's next move onto
    a link whose job ran three more rounds).  Only the guest stopping is the end."""
    import threading
    from typing import Any, cast

    from ferry.domain.vocab import EventKind
    from ferry.migration.watch import Watch
    from ferry.simulated.clock import SimClock

    mib = 2**20

    def at(iteration: int, remaining_mib: int) -> JobStats:
        return JobStats(active=True, elapsed_ms=1000 * iteration, memory_total_bytes=256 * mib,
                        memory_processed_bytes=200 * mib, iteration=iteration,
                        memory_remaining_bytes=remaining_mib * mib,
                        bandwidth_bytes_s=48 * mib)

    rec = _Recorder()
    source = _Source([at(2, 20), at(2, 0), at(3, 35), at(3, 10)])
    told: list[bool] = []
    clock = SimClock()
    w = Watch("vm", cast(Any, source), cast(Any, None), cast(Any, rec), threading.Event(),
              600.0, clock)
    w.on_sent = lambda: told.append(True)
    for _ in range(4):
        w.step()
    assert not w.sent and not told
    assert EventKind.SENT not in [k for k, _ in rec.events]
    w.stopped()  # libvirt: the source guest stopped for the switchover
    clock.advance(0.5)  # its last 10 MiB went (at 48 MiB/s)
    w.step()
    assert w.sent and told == [True]


def test_postcopy_frees_the_link_once_its_pages_have_all_gone() -> None:
    """In post-copy the background copy re-sends nothing: once a sample taken after
    the switch says nothing remains, the link is free (lab: a drain's next move
    waited 2.4 s more, for libvirt's finish).  Not before the switch's first sample,
    nor on a pre-copy sample that ends a round."""
    import threading
    from typing import Any, cast

    from ferry.domain.vocab import EventKind
    from ferry.migration.watch import Watch
    from ferry.simulated.clock import SimClock

    mib = 2**20

    def at(iteration: int, remaining_mib: float) -> JobStats:
        return JobStats(active=True, elapsed_ms=1000 * iteration, memory_total_bytes=256 * mib,
                        memory_processed_bytes=200 * mib, iteration=iteration,
                        memory_remaining_bytes=round(remaining_mib * mib),
                        bandwidth_bytes_s=10 * mib)

    rec = _Recorder()
    source = _Source([at(3, 0), at(4, 80), at(4, 30), at(4, 0)])
    told: list[bool] = []
    w = Watch("vm", cast(Any, source), cast(Any, None), cast(Any, rec), threading.Event(),
              600.0, SimClock())
    w.on_sent = lambda: told.append(True)
    clock = cast(SimClock, w.clock)
    w.step()  # pre-copy: a round's end is not the end
    w.postcopy = True  # switched
    w.step()
    w.stopped()  # libvirt: the source guest stopped (for post-copy, not the end)
    clock.advance(2.0)
    w.step()
    assert not w.sent and not told
    w.step()
    assert w.sent and told == [True]
    assert [k for k, _ in rec.events].count(EventKind.SENT) == 1


def test_postcopy_whose_job_ends_between_samples_frees_the_link() -> None:
    """The job ends (libvirt's statistics then fail) after a post-copy sample with
    under two samples' worth left: everything went."""
    import threading
    from typing import Any, cast

    from ferry.hypervisor.errors import HypervisorError
    from ferry.migration.watch import Watch
    from ferry.simulated.clock import SimClock

    mib = 2**20

    class _Ending(_Source):
        def job_stats(self, _vm: str) -> JobStats:
            if not self.stats:
                raise HypervisorError("domain is not running")
            return self.stats.pop(0)

    def left(remaining_mib: float) -> JobStats:
        return JobStats(active=True, elapsed_ms=9000, memory_total_bytes=256 * mib,
                        memory_processed_bytes=200 * mib, iteration=4,
                        memory_remaining_bytes=round(remaining_mib * mib),
                        bandwidth_bytes_s=10 * mib)

    for last, sent in ((40.0, False), (0.5, True)):
        w = Watch("vm", cast(Any, _Ending([left(last)])), cast(Any, None),
                  cast(Any, _Recorder()), threading.Event(), 600.0, SimClock())
        w.postcopy = True
        w.step()
        w.step()
        assert w.sent == sent


def test_a_staged_jobs_set_up_is_read_at_the_trickle_rate_qemu_reports() -> None:
    """A 1 MiB/s cap trickles at ~1.25 MiB/s (lab, domjobinfo): at 4.09 s, 4.64 MiB
    sent says 0.39 s of set-up (0 at the cap's nominal rate, which history then took
    for every staged job)."""
    from ferry.migration.watch import _setup_s

    st = JobStats(active=True, elapsed_ms=4088, memory_total_bytes=256 << 20,
                  memory_processed_bytes=round(4.637 * 2**20), iteration=1,
                  bandwidth_bytes_s=round(1.253 * 2**20))
    assert abs(_setup_s(st) - 0.387) < 0.01


def test_a_job_that_returns_before_the_pauses_estimate_has_sent_everything() -> None:
    """libvirt's finish can end the job sooner than the last pages' estimated time
    after the switchover (lab: ~0.2 s once its QEMUs were reaped at once): the call
    returning without an error says everything went (a lab drain test found no
    `sent` on the first move).  Not in post-copy, whose samples say it."""
    import threading
    from typing import Any, cast

    from ferry.domain.vocab import EventKind
    from ferry.migration.watch import Watch
    from ferry.simulated.clock import SimClock

    mib = 2**20
    st = JobStats(active=True, elapsed_ms=3000, memory_total_bytes=256 * mib,
                  memory_processed_bytes=200 * mib, iteration=3,
                  memory_remaining_bytes=12 * mib, bandwidth_bytes_s=16 * mib)
    for postcopy in (False, True):
        rec = _Recorder()
        w = Watch("vm", cast(Any, _Source([st])), cast(Any, None), cast(Any, rec),
                  threading.Event(), 600.0, SimClock())
        w.step()
        w.postcopy = postcopy
        w.stopped()  # 12 MiB at 16 MiB/s: 0.75 s by the estimate
        w.ended()  # the call returned at once
        assert w.sent is not postcopy
        assert (EventKind.SENT in [k for k, _ in rec.events]) is not postcopy
