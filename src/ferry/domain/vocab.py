"""Closed vocabularies shared by every layer.

Each is a `StrEnum`: stored and sent as its value, shown by the API's
OpenAPI schema as the list of allowed values (a value outside it is a 422),
and compared by identity in code instead of by bare strings.
"""

from __future__ import annotations

from enum import StrEnum


class Policy(StrEnum):
    """How a migration adapts while it runs (see predict/strategy.py)."""

    AUTO = "auto"
    PRECOPY = "precopy"
    AUTOCONVERGE = "autoconverge"
    POSTCOPY = "postcopy"
    STEPPED = "stepped"


class OnTimeout(StrEnum):
    """What a migration does when its time is up."""

    ABORT = "abort"  # the VM stays on the source
    FORCE = "force"  # switch to post-copy and finish on the destination


class AbortReason(StrEnum):
    """Why Ferry aborted a running job."""

    CANCEL = "cancel"
    TIMEOUT = "timeout"
    UNPLANNED = "unplanned"  # a job started before its plan, which could not be made
    HOPELESS = "hopeless"  # pre-copy cannot finish and the job cannot switch to post-copy


class VirtType(StrEnum):
    """What guests on a host run under; `auto` asks the host."""

    AUTO = "auto"
    KVM = "kvm"
    QEMU = "qemu"  # TCG


class VolumeFate(StrEnum):
    """What `vm delete` does with the VM's volumes."""

    DELETE = "delete"
    KEEP = "keep"


class WorkloadPattern(StrEnum):
    """How the lab guest's writes spread over its working set (guest/workload.c):
    one uniform dirtier hides modelling errors that skewed, bursty or streaming
    writers show."""

    UNIFORM = "uniform"  # each write to a random page of the working set
    HOTCOLD = "hotcold"  # 9 in 10 writes to a hot eighth, the rest anywhere in the set
    BURST = "burst"  # 2 s at twice the rate, then 2 s idle
    SEQUENTIAL = "sequential"  # streams through the working set page by page


class CpuModeKind(StrEnum):
    """Which CPU new VMs get (the argument of `ferry cpu mode set`)."""

    BASELINE = "baseline"
    HOST_MODEL = "host-model"
    HOST_PASSTHROUGH = "host-passthrough"
    CUSTOM = "custom"


class EventKind(StrEnum):
    """What a migration event records; `ferry migration show` lists them in order."""

    # request, prechecks, admission
    REQUESTED = "requested"
    PRECHECK = "precheck"
    REFUSED = "refused"
    QUEUED = "queued"  # waiting for admission, and why
    ADMITTED = "admitted"
    # plan: measurement, prediction, chosen parameters
    MEASURED = "measured"
    PREDICTED = "predicted"
    PLAN = "plan"
    # the job and what the policy did to it
    STARTED = "started"
    STAGED = "staged"  # a job started slowly while its link is busy or it is planned...
    RELEASED = "released"  # ...and at its own rate once the link is free and it is planned
    SENT = "sent"  # the source has sent the guest's memory: libvirt finishes, link free
    SET_DOWNTIME = "set_downtime"
    SET_DOWNTIME_FAILED = "set_downtime_failed"
    SET_BANDWIDTH = "set_bandwidth"  # post-copy's share, the drain before the switch
    SET_BANDWIDTH_FAILED = "set_bandwidth_failed"
    START_POSTCOPY = "start_postcopy"
    START_POSTCOPY_FAILED = "start_postcopy_failed"
    CANCEL_REQUESTED = "cancel_requested"
    CANCEL = "cancel"
    TIMEOUT = "timeout"
    ABANDONED = "abandoned"  # a job started before its plan: no plan could be made
    GAVE_UP = "gave_up"  # a compressed stream that would have switched to post-copy
    ABORT_FAILED = "abort_failed"
    JOB_FAILED = "job_failed"
    POSTCOPY_PAUSED = "postcopy_paused"  # post-copy broke; resumed when the link is back
    # settling: where the guest is, and tidying the losing side
    RESOLVED = "resolved"
    UNREACHABLE = "unreachable"
    CLEANED = "cleaned"
    CLEANUP_FAILED = "cleanup_failed"
    RESUMED = "resumed"
    RESUME_FAILED = "resume_failed"
    STORAGE = "storage"
    STORAGE_CLEANUP_FAILED = "storage_cleanup_failed"
    FIGURES = "figures"
    # after a controller restart
    RECOVERING = "recovering"
    REATTACHED = "reattached"
    RECOVER_FAILED = "recover_failed"
    # a bug: the migration still ends in a final state
    ERROR = "error"
