"""Every branch of the where-is-the-guest table in migration/outcome.py."""

from ferry.hypervisor.types import DomainInfo, DomainState, PostcopyState
from ferry.migration.outcome import Verdict, resolve


def dom(state: DomainState, *, migrating: bool = False, persistent: bool = True) -> DomainInfo:
    return DomainInfo(name="v", uuid="u", state=state, persistent=persistent, memory_mib=256,
                      vcpus=1, cpu_xml="", migrating=migrating)


def test_job_still_running_is_in_progress() -> None:
    r = resolve(dom(DomainState.RUNNING, migrating=True), dom(DomainState.PAUSED))
    assert r.verdict == Verdict.IN_PROGRESS
    assert not r.clean_destination


def test_running_on_destination_only_is_completed() -> None:
    r = resolve(None, dom(DomainState.RUNNING))
    assert r.verdict == Verdict.COMPLETED
    assert not r.clean_source


def test_completed_with_inactive_source_leftover_cleans_source() -> None:
    r = resolve(dom(DomainState.SHUTOFF), dom(DomainState.RUNNING))
    assert r.verdict == Verdict.COMPLETED
    assert r.clean_source and not r.clean_destination


def test_source_running_no_destination_is_failed_without_cleanup() -> None:
    r = resolve(dom(DomainState.RUNNING), None)
    assert r.verdict == Verdict.FAILED
    assert not r.clean_destination and not r.resume_source


def test_source_running_paused_destination_leftover_is_cleaned() -> None:
    r = resolve(dom(DomainState.RUNNING), dom(DomainState.PAUSED))
    assert r.verdict == Verdict.FAILED
    assert r.clean_destination


def test_paused_source_without_destination_is_resumed() -> None:
    r = resolve(dom(DomainState.PAUSED), None)
    assert r.verdict == Verdict.FAILED
    assert r.resume_source and not r.clean_destination


def test_handover_is_transitional_not_split() -> None:
    """Destination resumed, source paused awaiting libvirt's confirm phase."""
    r = resolve(dom(DomainState.PAUSED), dom(DomainState.RUNNING))
    assert r.verdict == Verdict.IN_PROGRESS
    assert not (r.clean_destination or r.clean_source or r.resume_source)


def test_paused_source_with_leftover_destination_waits_then_cleans() -> None:
    assert resolve(dom(DomainState.PAUSED), dom(DomainState.SHUTOFF)).verdict == \
        Verdict.IN_PROGRESS
    r = resolve(dom(DomainState.PAUSED), dom(DomainState.SHUTOFF), deadline_passed=True)
    assert r.verdict == Verdict.FAILED
    assert r.resume_source and r.clean_destination


def test_destination_not_yet_resumed_is_transitional() -> None:
    assert resolve(None, dom(DomainState.PAUSED)).verdict == Verdict.IN_PROGRESS
    r = resolve(None, dom(DomainState.PAUSED), deadline_passed=True)
    assert r.verdict == Verdict.LOST and not r.clean_destination


def test_both_paused_after_deadline_is_split_and_touches_nothing() -> None:
    r = resolve(dom(DomainState.PAUSED), dom(DomainState.PAUSED), deadline_passed=True)
    assert r.verdict == Verdict.SPLIT
    assert not (r.clean_destination or r.clean_source or r.resume_source)


def test_running_on_both_hosts_is_split_and_touches_nothing() -> None:
    for late in (False, True):
        r = resolve(dom(DomainState.RUNNING), dom(DomainState.RUNNING), deadline_passed=late)
        assert r.verdict == Verdict.SPLIT
        assert not (r.clean_destination or r.clean_source or r.resume_source)


def test_nowhere_is_lost() -> None:
    assert resolve(None, None).verdict == Verdict.LOST
    assert resolve(dom(DomainState.SHUTOFF), None).verdict == Verdict.LOST


def pc(state: DomainState, postcopy: PostcopyState) -> DomainInfo:
    return DomainInfo(name="v", uuid="u", state=state, persistent=True, memory_mib=256,
                      vcpus=1, cpu_xml="", postcopy=postcopy)


def test_broken_postcopy_is_paused_and_touches_nothing() -> None:
    r = resolve(pc(DomainState.PAUSED, PostcopyState.FAILED),
                pc(DomainState.RUNNING, PostcopyState.FAILED), deadline_passed=True)
    assert r.verdict == Verdict.POSTCOPY_PAUSED
    assert not (r.resume_source or r.clean_source or r.clean_destination)


def test_source_in_postcopy_without_destination_is_lost_never_resumed() -> None:
    for phase in (PostcopyState.ACTIVE, PostcopyState.FAILED):
        r = resolve(pc(DomainState.PAUSED, phase), None, deadline_passed=True)
        assert r.verdict == Verdict.LOST and not r.resume_source, phase
    # before the switch the same picture is an ordinary failure: resume the source
    assert resolve(pc(DomainState.PAUSED, PostcopyState.NONE), None).resume_source
