"""One migration, start to end: request → prechecks → job → plan → settle → record.

Read top to bottom, this is everything Ferry does to move a VM.  The service
claims the migration first (a stored row, the VM locked: `Claim`) and
releases the VM afterwards; in between it hands over to `precheck` (in the
request, so a refusal answers at once), queues it until the concurrency
limits admit it, then calls `run` (in a worker: prechecks again if it
waited; the job started staged, at a trickle, while the guest is measured and the
plan made, so that libvirt's set-up overlaps the measurement; released at its own
rate with the plan's settings; settle, record).  After a controller restart, `resume`
follows what an earlier process left running.

The pipeline reaches hosts only through `Hypervisor`s, time only through its
`Clock`, and the database only through `MigrationRecords`, a port the
service implements; it calls nothing above itself.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from ferry.clock import Clock
from ferry.domain.models import MigrationState
from ferry.domain.vocab import EventKind, Policy
from ferry.errors import DatabaseUnavailable, FerryError, MigrationRefused, Unavailable
from ferry.hypervisor.base import Connector
from ferry.hypervisor.errors import HostUnreachable, HypervisorError
from ferry.hypervisor.types import MigrationOptions
from ferry.migration.copies import CopiedVolume, tidy_copies
from ferry.migration.engine import Prepared, follow_job, run_job
from ferry.migration.figures import Final, final_of
from ferry.migration.measure import measure
from ferry.migration.outcome import Verdict, resolve
from ferry.migration.planning import (
    Plan,
    compressed_inputs,
    first_options,
    hard_stop_s,
    make_plan,
    timeout_s,
    why_in_clear,
)
from ferry.migration.policies import Adapter
from ferry.migration.postcopy_resume import PostcopyResumer
from ferry.migration.prechecks import PrecheckResult, run_prechecks, stream_tls
from ferry.migration.requests import (
    Claim,
    Hooks,
    HostRef,
    MigrationRecords,
    Timeouts,
    Unfinished,
)
from ferry.migration.settling import JobResult, settle
from ferry.predict.dirty import MIB
from ferry.predict.inputs import build_inputs, link_bytes_s, nonzero_bytes

HOLD_POLL_S = 0.2  # a move that cannot be staged waits for its link, asking this often


class MigrationPipeline:
    def __init__(self, hosts: Connector, records: MigrationRecords, clock: Clock,
                 timeouts: Timeouts) -> None:
        self.hosts, self.records, self.clock, self.timeouts = hosts, records, clock, timeouts
        self.postcopy = PostcopyResumer(hosts, records, clock, timeouts.postcopy_auto_resume)

    # -- in the request: prechecks ---------------------------------------------
    def precheck(self, claim: Claim) -> PrecheckResult:
        """Everything that must hold before any byte moves.  On a refusal (or any
        error) the migration is finished (failed) and the error raised, so the caller
        answers with it at once."""
        rec = self.records.recorder(claim.id)
        req = claim.request
        rec.event(EventKind.REQUESTED, f"{req.vm}: {claim.source.name} -> "
                                       f"{claim.destination.name}")
        return self._checked(claim)

    def _checked(self, claim: Claim) -> PrecheckResult:
        rec = self.records.recorder(claim.id)
        try:
            checked = self._precheck(claim)
        except DatabaseUnavailable:
            raise  # nothing was started; the request answers 503, a restart tidies
        except FerryError as exc:
            rec.event(EventKind.REFUSED, exc.message)
            self.records.finish(claim.id, Final(MigrationState.FAILED, error=exc.message))
            raise
        except Exception as exc:
            self._failed(claim.id, exc)
            raise
        for line in checked.checks:
            rec.event(EventKind.PRECHECK, line)
        return checked

    def _failed(self, mid: int, exc: Exception) -> None:
        """A bug or an unexpected error: recorded, and the migration ends failed."""
        self.records.recorder(mid).event(EventKind.ERROR, f"{type(exc).__name__}: {exc}")
        self.records.finish(mid, Final(MigrationState.FAILED, error=f"internal error: {exc}"))

    def _precheck(self, claim: Claim) -> PrecheckResult:
        dest = claim.destination
        if not dest.up:
            raise MigrationRefused("destination_unreachable",
                                   f"destination host {dest.name} is unreachable")
        if dest.maintenance:
            raise MigrationRefused("destination_maintenance",
                                   f"destination host {dest.name} is in maintenance (it takes "
                                   f"no incoming migrations until `ferry host activate "
                                   f"{dest.name}`)")
        self._tls(claim)  # refused before any host is asked
        try:
            return run_prechecks(claim.request.vm, self.hosts(claim.source.uri),
                                 self.hosts(dest.uri), source_name=claim.source.name,
                                 destination_name=dest.name, dest_virt_type=dest.virt_type,
                                 catalog=self.records.storage_catalog(),
                                 reserved_mib=self.records.incoming_mib(dest.name, claim.id))
        except HostUnreachable as exc:
            raise Unavailable(f"a host does not answer: {exc}") from exc
        except HypervisorError as exc:
            raise Unavailable(f"a host failed a precheck: {exc}") from exc

    def _tls(self, claim: Claim) -> bool:
        return stream_tls(claim.source.name, claim.source.migration_tls,
                          claim.destination.name, claim.destination.migration_tls,
                          claim.request.tls)

    def _plan(self, claim: Claim, timeout: float, copy_targets: tuple[str, ...],
              copy_mib: int, hooks: Hooks, staged: bool = False) -> Plan:
        """Measure the guest and predict (except for precopy), then choose parameters.
        `staged`: its job already runs staged, set up by the time it is released, so
        the prediction counts no set-up (its time counts from the release)."""
        req = claim.request
        inputs, m, squeezed = None, None, None
        if req.policy != Policy.PRECOPY:
            h = self.records.history(req.vm, claim.source.name, claim.destination.name,
                                     encrypted=self._tls(claim))
            if req.link_mib_s is not None:
                h = replace(h, link_bytes_s=req.link_mib_s * MIB,
                            link_how=f"{req.link_mib_s:g} MiB/s as given")
            if hooks.measured is not None:
                m = hooks.measured
                self.records.recorder(claim.id).event(
                    EventKind.MEASURED, f"measured {hooks.measured_age_s:.0f} s ago, for the "
                    "drain's plan: not measured again")
            else:
                m = measure(self.hosts(claim.source.uri), req.vm, claim.memory_mib,
                            self.clock,
                            bandwidth_bytes_s=link_bytes_s(h, req.bandwidth_mib_s)[0],
                            before_move=True, move_now=True)
            inputs, link_how = build_inputs(m, h, claim.memory_mib, req.bandwidth_mib_s,
                                            req.max_downtime_ms, timeout)
            # (a staged job's flags were set before its guest was measured: in clear)
            squeezed = None if staged else compressed_inputs(
                req.policy, inputs, m, h, copies=bool(copy_targets),
                allowed=self.timeouts.compress, asked=req.compress)
            if req.compress and squeezed is None:
                self.records.recorder(claim.id).event(
                    EventKind.PLAN, "asked to compress, in clear: "
                    + why_in_clear(m, bool(copy_targets)))
            inputs = squeezed or inputs
            if staged:
                inputs = replace(inputs, setup_s=0.0)
            nonzero, source = nonzero_bytes(m, h, claim.memory_mib)
            self.records.recorder(claim.id).event(
                EventKind.MEASURED,
                f"{m.curve.said()}; {nonzero / MIB:.0f} MiB non-zero "
                f"({source}, compressing to {m.wire_share:.0%}); link {link_how}")
        plan = make_plan(req.policy, claim.destination.uri, claim.memory_mib,
                         bandwidth_mib_s=req.bandwidth_mib_s,
                         max_downtime_ms=req.max_downtime_ms, timeout=timeout,
                         on_timeout=req.on_timeout, inputs=inputs,
                         copy_disks=copy_targets, copy_mib=copy_mib,
                         compress=squeezed is not None)
        if plan.prediction is not None and m is not None:
            self.records.store_prediction(claim.id, plan.prediction, m)
        if self._tls(claim):
            plan = replace(plan, options=replace(plan.options, tls=True))
            self.records.recorder(claim.id).event(
                EventKind.PLAN, "the stream is encrypted (TLS, the hosts' QEMU certificates)")
        return plan

    # -- in a worker, once admitted: plan, run, settle, tidy, record --------------
    def run(self, claim: Claim, cancel: threading.Event,
            checked: PrecheckResult | None = None, hooks: Hooks | None = None) -> None:
        """Plan and run the job to its end; the migration always ends in a final state.
        `checked` is the request's precheck when it was admitted at once; a migration
        that waited in the queue is checked again (hosts change).  `hooks.may_transfer`
        is asked once the guest is measured and the plan made (a drain stages a move
        until its link is free)."""
        hooks = hooks or Hooks()
        try:
            self._run(claim, cancel, checked, hooks)
        finally:
            if hooks.ended is not None:
                hooks.ended()

    def _run(self, claim: Claim, cancel: threading.Event, checked: PrecheckResult | None,
             hooks: Hooks) -> None:
        rec = self.records.recorder(claim.id)
        try:
            if checked is None:
                try:
                    checked = self._checked(claim)
                except FerryError:
                    return  # refused: recorded by _checked
            if self._cancelled(claim.id, cancel, "before its job started"):
                return
            if self._stages_first(claim, checked, hooks):
                self._run_staged_first(claim, cancel, checked, hooks)
                return
            plan, copies = self._plan_for(claim, checked, hooks)
            hold = hooks.may_transfer
            if hold is not None and plan.options.copy_disks:
                # not staged (engine.run_job): its job starts once its link is free
                while not hold() and not cancel.is_set():
                    self.clock.sleep(HOLD_POLL_S)
                hold = None
            if self._cancelled(claim.id, cancel, "before its job started"):
                return
            source, destination = self.hosts(claim.source.uri), self.hosts(claim.destination.uri)
            result = run_job(claim.request.vm, source, destination, plan.options, rec, cancel,
                             plan.hard_stop_s, self.clock, Adapter(plan.policy), hold=hold,
                             sent=hooks.sent)
            self._conclude(claim.id, claim.request.vm, result, copies, claim.source,
                           claim.destination, plan.options, cancel)
        except DatabaseUnavailable:
            raise  # not a verdict: the job may have ended well; a restart settles it
        except FerryError as exc:  # e.g. the guest could not be measured
            self.records.finish(claim.id, Final(MigrationState.FAILED, error=exc.message))
        except Exception as exc:  # never leave a migration "running" because of a bug
            self._failed(claim.id, exc)

    @staticmethod
    def _stages_first(claim: Claim, checked: PrecheckResult, hooks: Hooks) -> bool:
        """Is the guest measured here, for a job whose options do not depend on it?
        (Not `precopy`: neither measured nor planned; not a job that copies disks:
        it cannot be staged, `engine.run_job`; not one asked to compress: whether it
        can depends on the measurement.)"""
        return claim.request.policy != Policy.PRECOPY and hooks.measured is None \
            and not checked.storage.copy_targets and claim.request.compress is not True

    def _run_staged_first(self, claim: Claim, cancel: threading.Event,
                          checked: PrecheckResult, hooks: Hooks) -> None:
        """Start the job staged, then measure and plan while libvirt sets it up (the
        destination QEMU starting: ~1 s of a lone move on the lab, ~2 s under load);
        it goes at its own rate once planned (and its link free, in a drain)."""
        req = claim.request
        rec = self.records.recorder(claim.id)
        first = replace(first_options(req.policy, claim.destination.uri,
                                      bandwidth_mib_s=req.bandwidth_mib_s,
                                      max_downtime_ms=req.max_downtime_ms),
                        tls=self._tls(claim))
        planned: list[Plan] = []

        def prepare() -> Prepared:
            plan, _copies = self._plan_for(claim, checked, hooks, staged=True)
            planned.append(plan)
            return Prepared(Adapter(plan.policy), plan.options.max_downtime_ms)

        source, destination = self.hosts(claim.source.uri), self.hosts(claim.destination.uri)
        result = run_job(req.vm, source, destination, first, rec, cancel,
                         hard_stop_s(self._timeout(claim, checked)), self.clock,
                         hold=hooks.may_transfer, sent=hooks.sent, prepare=prepare)
        self._conclude(claim.id, req.vm, result, [], claim.source, claim.destination,
                       planned[0].options if planned else first, cancel)

    def _cancelled(self, mid: int, cancel: threading.Event, when: str) -> bool:
        if not cancel.is_set():
            return False
        self.records.finish(mid, Final(MigrationState.CANCELLED,
                                       error=f"cancelled {when}; the VM runs on the source"))
        return True

    def _timeout(self, claim: Claim, checked: PrecheckResult) -> float:
        return timeout_s(claim.memory_mib, checked.storage.copy_bytes // MIB,
                         claim.request.timeout_per_gib_s or self.timeouts.per_gib_s,
                         self.timeouts.min_s)

    def _plan_for(self, claim: Claim, checked: PrecheckResult, hooks: Hooks,
                  staged: bool = False) -> tuple[Plan, list[CopiedVolume]]:
        timeout = self._timeout(claim, checked)
        plan = self._plan(claim, timeout, checked.storage.copy_targets,
                          checked.storage.copy_bytes // MIB, hooks, staged)
        rec = self.records.recorder(claim.id)
        for kind, message in plan.events:
            rec.event(kind, message)
        copies = [CopiedVolume(d.pool, d.volume) for d in checked.storage.disks if d.copy]
        self.records.record_plan(claim.id, timeout, plan.policy, plan.options, copies)
        return plan, copies

    # -- after a controller restart ---------------------------------------------
    def still_paused(self, u: Unfinished) -> bool:
        """A quiet look at a postcopy-paused migration: False once the hosts say
        otherwise (QEMU resumed it by itself when its connection survived the cut, or
        someone resumed it with virsh), so that it is settled and recorded."""
        if u.source is None or u.destination is None:
            return True
        try:
            src = self.hosts(u.source.uri).find_domain(u.vm)
            dst = self.hosts(u.destination.uri).find_domain(u.vm)
        except HypervisorError:
            return True
        return resolve(src, dst).verdict in (Verdict.POSTCOPY_PAUSED, Verdict.IN_PROGRESS)

    def resume(self, u: Unfinished, cancel: threading.Event,
               why: str = "controller restarted; asking both hosts") -> None:
        """Follow a job an earlier process started (if still running), then settle,
        tidy copied disks and record the true outcome."""
        rec = self.records.recorder(u.id)
        rec.event(EventKind.RECOVERING, why)
        if u.state == MigrationState.PRECHECKING:
            self.records.finish(u.id, Final(MigrationState.FAILED, error=(
                "the controller restarted during the prechecks; nothing was started")))
            return
        if u.source is None or u.destination is None:
            self.records.finish(u.id, Final(MigrationState.FAILED,
                                            error="host no longer registered"))
            return
        planned = u.timeout_s or timeout_s(u.memory_mib, 0, self.timeouts.per_gib_s,
                                           self.timeouts.min_s)
        spent = (self.clock.now() - u.started_at).total_seconds() if u.started_at else 0.0
        try:
            source, destination = self.hosts(u.source.uri), self.hosts(u.destination.uri)
            if u.state == MigrationState.POSTCOPY_PAUSED:
                result = settle(u.vm, source, destination, rec, self.clock, error="",
                                aborted_for=None)
            else:
                result = follow_job(u.vm, source, destination, rec, cancel,
                                    hard_stop_s(planned), self.clock,
                                    Adapter(u.policy) if u.policy else None, spent,
                                    staged=u.staged, bandwidth_mib_s=(
                                        u.options.bandwidth_mib_s if u.options else None))
            self._conclude(u.id, u.vm, result, u.copies, u.source, u.destination,
                           u.options, cancel)
        except DatabaseUnavailable:
            raise  # not a verdict: the next restart asks the hosts again
        except Exception as exc:
            rec.event(EventKind.RECOVER_FAILED, f"{type(exc).__name__}: {exc}")
            self.records.finish(u.id, Final(MigrationState.FAILED,
                                            error=f"internal error while recovering: {exc}"))

    def _conclude(self, mid: int, vm: str, result: JobResult, copies: list[CopiedVolume],
                  source: HostRef, destination: HostRef, options: MigrationOptions | None,
                  cancel: threading.Event) -> None:
        """Tidy and record; a post-copy that broke is resumed first (never the source
        rolled back: the guest's newest memory is on the destination)."""
        if result.resolution.verdict == Verdict.POSTCOPY_PAUSED:
            resumed = self.postcopy.resume(mid, vm, source.uri, destination.uri, options,
                                           cancel)
            if resumed is None:
                return  # still paused: the VM stays locked; `ferry migration recover`
            result = resumed
        self._tidy(mid, copies, result.resolution.verdict, source, destination)
        self._record(mid, final_of(result))

    def _tidy(self, mid: int, copies: list[CopiedVolume], verdict: Verdict,
              source: HostRef, destination: HostRef) -> None:
        tidied = tidy_copies(copies, verdict, self.hosts(source.uri),
                                       self.hosts(destination.uri))
        rec = self.records.recorder(mid)
        for kind, message in tidied.events:
            rec.event(kind, message)
        if tidied.moved:
            self.records.volumes_moved(tidied.moved, destination.name)

    def _record(self, mid: int, final: Final) -> None:
        if final.note is not None:
            self.records.recorder(mid).event(*final.note)
        self.records.finish(mid, final)
