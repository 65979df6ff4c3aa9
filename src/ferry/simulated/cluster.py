"""A simulated cluster: hosts, their links, shared storage, Ceph, and migrations.

The cluster owns the state all hosts share and moves migrations forward:
`tick()` brings every job to the clock's time and applies what ended
(the guest on the destination, or back to running on the source).  Faults
a test injects here, at once or at a virtual time with `clock.call_at`:
`kill_domain` (a QEMU process dies), `crash_host`, `link_down`/`link_up`,
`set_link` (its speed); per host: `unreachable`, `hangs` (see host.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from ferry.hypervisor.base import Connector, MigrationJob
from ferry.hypervisor.errors import HypervisorError, MigrationJobError
from ferry.hypervisor.types import DomainState, MigrationOptions, PostcopyState
from ferry.predict.dirty import MIB
from ferry.predict.precopy import Guest
from ferry.simulated.clock import SimClock
from ferry.simulated.domain import SimDomain, Workload
from ferry.simulated.host import JobHandle, SimHost
from ferry.simulated.jobs import Outcome, SimJob
from ferry.simulated.storage import Ceph, Files, HostStorage

DEFAULT_LINK_MIB_S = 100.0
KEEPALIVE_S = 27.0  # a cut link fails a libvirt job after this (measured ~27 s)
SETUP_S = 0.5  # before the first byte moves: the destination QEMU starts (measured)
CALL_TIMEOUT_S = 30.0  # how long a hung host's call blocks its caller


class SimCluster:
    def __init__(self, clock: SimClock | None = None, *,
                 link_mib_s: float = DEFAULT_LINK_MIB_S, setup_s: float = SETUP_S,
                 keepalive_s: float = KEEPALIVE_S,
                 call_timeout_s: float = CALL_TIMEOUT_S, call_latency_s: float = 0.0) -> None:
        self.clock = clock or SimClock()
        self.hosts: dict[str, SimHost] = {}
        self.files = Files()
        self.ceph = Ceph()
        self.workloads: dict[str, Workload] = {}  # by VM name, instead of its cmdline
        self.default_link_mib_s = link_mib_s
        self.links: dict[frozenset[str], float] = {}
        self.down_links: set[frozenset[str]] = set()
        self.setup_s, self.keepalive_s, self.call_timeout_s = setup_s, keepalive_s, \
            call_timeout_s
        self.call_latency_s = call_latency_s  # every driver call takes this long
        # libvirt's migration call runs in its own thread: until it has begun its job
        # the domain has none (statistics inactive, an abort refused); 0 unless a test
        # asks for that window
        self.begin_s = 0.0
        # libvirt's finish after QEMU's last byte (lab: ~1.7 s, statistics failing
        # meanwhile); 0 unless a test asks for it
        self.finish_s = 0.0
        self.jobs: list[SimJob] = []

    # -- building it ------------------------------------------------------------------
    def add_host(self, name: str, *, cpu_model: str = "Haswell", vendor: str = "Intel",
                 extra_features: Iterable[str] = (), cpus_n: int = 16,
                 memory_mib: int = 65536, virt_type: str = "kvm",
                 disk_gib: int = 2048, networks: Iterable[str] = (),
                 bridges: Iterable[str] = ()) -> SimHost:
        """A host; `networks` (active libvirt networks) and `bridges` are what guests'
        interfaces can plug into there."""
        if name in self.hosts:
            raise ValueError(f"host {name} exists")
        h = SimHost(self, name, cpu_model=cpu_model, vendor=vendor,
                    extra_features=set(extra_features), cpus_n=cpus_n, memory_mib=memory_mib,
                    virt_type=virt_type, storage=HostStorage(disk_bytes=disk_gib * 2**30))
        h.networks = dict.fromkeys(networks, True)
        h.interfaces = dict.fromkeys(bridges, "bridge")
        self.hosts[name] = h
        return h

    def add_shared_dir(self, path: str) -> None:
        """A directory every host mounts (NFS, CephFS)."""
        self.files.shared.add(path.rstrip("/"))

    def add_ceph_pool(self, rbd_pool: str, user: str, key: str) -> None:
        self.ceph.pools.setdefault(rbd_pool, {})
        self.ceph.keys[user] = key

    def connect(self, uri: str) -> SimHost:
        """The cluster's `Connector`: the host registered at `uri`."""
        for h in self.hosts.values():
            if h.uri == uri:
                return h
        raise HypervisorError(f"{uri}: no such simulated host")

    @property
    def connector(self) -> Connector:
        """`connect`, typed as what the object graph takes (mypy checks the interface)."""
        return self.connect

    def host(self, name: str) -> SimHost:
        return self.hosts[name]

    # -- faults -----------------------------------------------------------------------
    def set_link(self, a: str, b: str, mib_s: float) -> None:
        self.links[frozenset((a, b))] = mib_s

    def link_mib_s(self, a: str, b: str) -> float:
        return self.links.get(frozenset((a, b)), self.default_link_mib_s)

    def link_down(self, a: str, b: str) -> None:
        self.tick()
        self.down_links.add(frozenset((a, b)))
        for job in self._jobs_between(a, b):
            job.frozen_since = job.elapsed

    def link_up(self, a: str, b: str) -> None:
        self.tick()
        self.down_links.discard(frozenset((a, b)))
        for job in self._jobs_between(a, b):
            if job.frozen_since is not None:
                job.frozen_total += job.elapsed - job.frozen_since
                job.frozen_since = None

    def _jobs_between(self, a: str, b: str) -> list[SimJob]:
        return [j for j in self.jobs if j.active and {j.source, j.destination} == {a, b}]

    def kill_domain(self, host: str, vm: str) -> None:
        """The guest's QEMU process on `host` dies (SIGKILL)."""
        self.tick()
        h = self.hosts[host]
        d = h.domains.get(vm)
        if d is None:
            raise ValueError(f"no domain {vm} on {host}")
        if d.incoming:
            self.incoming_died(host, vm)
            return
        if d.job is not None and d.job.active:
            self.end_job(d.job, d.job.fail("QEMU unexpectedly closed the monitor"))
        d.state = DomainState.SHUTOFF
        if not d.persistent:
            del h.domains[vm]

    def crash_host(self, name: str) -> None:
        """The whole host dies: its guests with it; its daemon no longer answers."""
        self.tick()
        h = self.hosts[name]
        for vm in list(h.domains):
            d = h.domains[vm]
            if d.state in (DomainState.RUNNING, DomainState.PAUSED):
                self.kill_domain(name, vm)
        h.alive = False

    # -- time -----------------------------------------------------------------------------
    def tick(self) -> None:
        """Bring every running job to the clock's time; apply those that ended."""
        now = self.clock.monotonic()
        for job in list(self.jobs):
            if not job.active:
                continue
            if job.frozen_since is not None and \
                    now - job.started_at - job.frozen_since >= self.keepalive_s:
                job.advance(job.frozen_since)
                if job.active:
                    self.end_job(job, job.fail("Unable to read from socket: Connection reset "
                                               "by peer (keepalive timeout)"))
                continue
            ended = job.advance(now - job.started_at)
            if job.stopped and job.on_stop is not None:
                tell, job.on_stop = job.on_stop, None
                tell()
            if ended is not None:
                self.end_job(job, ended)
            else:
                self._show_phase(job)

    def _show_phase(self, job: SimJob) -> None:
        src = self.hosts[job.source].domains.get(job.vm)
        dst = self.hosts[job.destination].domains.get(job.vm)
        if src is not None and job.source_paused():
            src.state = DomainState.PAUSED
            src.postcopy = PostcopyState.ACTIVE if job.postcopy else PostcopyState.NONE
        if dst is not None and job.destination_running():
            dst.state, dst.postcopy = DomainState.RUNNING, PostcopyState.ACTIVE

    # -- jobs -------------------------------------------------------------------------------
    def start_job(self, source: SimHost, d: SimDomain, opts: MigrationOptions) -> MigrationJob:
        """Begin a job the way libvirt's p2p protocol does; a refusal by the destination
        ends it at once with libvirt's error."""
        def refused(msg: str) -> JobHandle:
            return JobHandle(self, None, source, early_error=MigrationJobError(msg))

        if opts.postcopy_resume:
            return self._resume_postcopy(source, d, opts)
        if d.state != DomainState.RUNNING:
            raise HypervisorError("Requested operation is not valid: domain is not running")
        if d.job is not None and d.job.active:
            raise HypervisorError("Requested operation is not valid: another migration job "
                                  "is already running")
        try:
            dest = self.connect(opts.dest_uri)
        except HypervisorError as exc:
            return refused(str(exc))
        if not dest.alive or dest.unreachable or dest.hangs or \
                frozenset((source.name, dest.name)) in self.down_links:
            return refused(f"unable to connect to server at '{dest.name}': Connection refused")
        if opts.compress and opts.postcopy:  # as QEMU 10.0 answers libvirt
            return refused("internal error: unable to execute QEMU command "
                           "'migrate-set-capabilities': Postcopy is not yet compatible "
                           "with multifd")
        copied = [src for src, tgt in d.disks.items() if tgt in opts.copy_disks]
        problem = dest.cannot_run(d, frozenset(copied))
        if problem:
            return refused(problem)
        disk_bytes = 0
        for src in copied:
            problem = self._precreate(source, dest, src)
            if problem:
                return refused(problem)
            disk_bytes += self.files.dir(source.name, src.rsplit("/", 1)[0]).get(
                src.rsplit("/", 1)[1], 0)
        link = self.link_mib_s(source.name, dest.name) * MIB
        squeeze = d.workload.wire_share if opts.compress else 1.0  # round 1's pages
        guest = Guest(d.memory_mib * MIB, d.nonzero_mib * MIB * squeeze,
                      d.workload.curve(self.clock.monotonic() - d.started_at))
        downtime = opts.max_downtime_ms if opts.max_downtime_ms is not None \
            else d.max_downtime_ms
        job = SimJob(d.name, source.name, dest.name, opts, guest, link, downtime,
                     d.workload.cpu_bound, self.setup_s, disk_bytes, self.clock.monotonic())
        job.finish_s = self.finish_s
        d.job, d.max_downtime_ms = job, downtime
        dest.domains[d.name] = SimDomain(
            name=d.name, uuid=d.uuid, memory_mib=d.memory_mib, vcpus=d.vcpus,
            cpu_xml=d.cpu_xml, disks=dict(d.disks), network_disks=set(d.network_disks),
            workload=d.workload, started_at=d.started_at, state=DomainState.PAUSED,
            persistent=False, incoming=True, busy=d.busy, nics=d.nics)
        self.jobs.append(job)
        return JobHandle(self, job, source)

    def _resume_postcopy(self, source: SimHost, d: SimDomain, opts: MigrationOptions
                         ) -> MigrationJob:
        """Take up a post-copy that broke: both sides must still be there, and the
        destination reachable over the link again."""
        prev = d.job
        if d.postcopy != PostcopyState.FAILED or prev is None:
            raise HypervisorError("Requested operation is not valid: no failed post-copy "
                                  "migration to resume")
        dest = self.connect(opts.dest_uri)
        dst = dest.domains.get(d.name)
        if dst is None or dst.postcopy != PostcopyState.FAILED:
            return JobHandle(self, None, source, early_error=MigrationJobError(
                "the destination has no paused post-copy migration of this domain"))
        if not dest.alive or dest.unreachable or \
                frozenset((source.name, dest.name)) in self.down_links:
            return JobHandle(self, None, source, early_error=MigrationJobError(
                f"unable to connect to server at '{dest.name}': Connection refused"))
        job = prev.resume_postcopy(self.clock.monotonic(), self.setup_s)
        d.job = job
        d.postcopy = dst.postcopy = PostcopyState.ACTIVE
        self.jobs.append(job)
        return JobHandle(self, job, source)

    def _precreate(self, source: SimHost, dest: SimHost, path: str) -> str:
        """Block migration: libvirt creates the disk in the destination's pool of the
        same directory before copying into it."""
        directory, name = path.rsplit("/", 1)
        pools = [spec for spec, active in dest.own_storage.pools.values()
                 if active and spec.kind == "dir" and spec.path.rstrip("/") == directory]
        if not pools:
            return f"no storage pool on {dest.name} holds {directory}: cannot create {path}"
        target = self.files.dir(dest.name, directory)
        if self.files.scope(dest.name, directory) == self.files.scope(source.name, directory):
            return f"{path} is on storage both hosts share: it must not be copied"
        if name in target:
            return f"storage volume {name} already exists in {directory} on {dest.name}"
        target[name] = self.files.dir(source.name, directory).get(name, 0)
        return ""

    def end_job(self, job: SimJob, outcome: Outcome) -> None:
        """Apply a job's end to both domains."""
        src_host, dst_host = self.hosts[job.source], self.hosts[job.destination]
        src, dst = src_host.domains.get(job.vm), dst_host.domains.get(job.vm)
        if outcome.completed:
            if src is not None:
                if job.opts.undefine_source:
                    del src_host.domains[job.vm]
                else:
                    src.state, src.job = DomainState.SHUTOFF, None
            if dst is not None:
                dst.state, dst.incoming = DomainState.RUNNING, False
                dst.postcopy = PostcopyState.NONE
                dst.persistent = job.opts.persist_dest
                dst.completed = outcome.stats
                dst.started_at = self.clock.monotonic()
            return
        if outcome.both_paused:  # broken in post-copy: nobody has the whole guest
            if src is not None:
                src.state, src.postcopy = DomainState.PAUSED, PostcopyState.FAILED
            if dst is not None:  # libvirt shows it running; its vCPUs wait for pages
                dst.state, dst.postcopy = DomainState.RUNNING, PostcopyState.FAILED
            return
        if src is not None and src.state == DomainState.PAUSED:
            src.state = DomainState.RUNNING  # libvirt resumes the source of a failed job
        if dst is not None and dst.incoming:
            del dst_host.domains[job.vm]  # its QEMU exits after a failed incoming migration

    def incoming_died(self, host: str, vm: str) -> None:
        """The incoming QEMU on `host` is gone; its job fails."""
        dst_host = self.hosts[host]
        dst_host.domains.pop(vm, None)
        for job in self.jobs:
            if job.active and job.destination == host and job.vm == vm:
                self.end_job(job, job.fail("QEMU unexpectedly closed the monitor (destination)"))

    # -- looking ------------------------------------------------------------------------------
    def where(self, vm: str) -> dict[str, str]:
        """{host: state} for every host that has the domain (as a test checks the truth)."""
        self.tick()
        return {h.name: h.domains[vm].state.value for h in self.hosts.values()
                if vm in h.domains}

    def run_until(self, t: float, step_s: float = 0.25) -> None:
        """Let virtual time pass to `t` (jobs advance, scheduled faults fire)."""
        while self.clock.monotonic() < t - 1e-9:
            self.clock.sleep(min(step_s, t - self.clock.monotonic()))
            self.tick()
