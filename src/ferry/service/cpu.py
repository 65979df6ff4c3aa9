"""CPU use cases: the cluster baseline, the CPU mode for new VMs, the mobility report,
checks.

Every verdict comes from the hypervisors involved: the baseline from
`baselineHypervisorCPU` over the hosts' host-model CPUs, compatibility from
`compareHypervisorCPU` of a VM's own live CPU on each destination.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ferry.cpu import mode as cpu_mode
from ferry.cpu.baseline import holds_back
from ferry.cpu.model import feature_names, nova_conf, summarize
from ferry.db.models import HostRow, SettingRow, VmRow
from ferry.domain.models import HostState
from ferry.domain.vocab import CpuModeKind
from ferry.errors import InvalidRequest, NotFound, Unavailable
from ferry.hypervisor.errors import HypervisorError
from ferry.service.connections import HostConnections
from ferry.service.database import Database
from ferry.service.inventory import Inventory

MODE_KEY = "cpu_mode"


class CpuService:
    def __init__(self, db: Database, conns: HostConnections, inventory: Inventory) -> None:
        self.db, self.conns, self.inventory = db, conns, inventory

    def get_mode(self) -> cpu_mode.CpuMode:
        with self.db.session() as s:
            row = s.get(SettingRow, MODE_KEY)
            return cpu_mode.parse(row.value) if row else cpu_mode.DEFAULT

    def set_mode(self, text: str) -> cpu_mode.CpuMode:
        """Validate against the registered hosts, store, re-evaluate VM mobility."""
        mode = cpu_mode.parse(text)
        with self.db.session() as s:
            hosts = [(h.name, h.virt_type, list(h.cpu_models or [])) for h in
                     s.scalars(select(HostRow).where(HostRow.state == HostState.UP))]
        if mode.kind == CpuModeKind.HOST_PASSTHROUGH:
            tcg = [n for n, vt, _ in hosts if vt != "kvm"]
            if tcg:
                raise InvalidRequest("host-passthrough needs KVM; these hosts run guests "
                                     f"under TCG: {', '.join(tcg)}")
        if mode.kind == CpuModeKind.CUSTOM:
            lacking = [n for n, _, models in hosts if mode.model not in models]
            if lacking:
                raise InvalidRequest(f"CPU model {mode.model} is not usable on: "
                                     f"{', '.join(lacking)}", {"hosts": lacking})
        with self.db.session() as s:
            row = s.get(SettingRow, MODE_KEY)
            if row is None:
                s.add(SettingRow(key=MODE_KEY, value=str(mode)))
            else:
                row.value = str(mode)
        self.inventory.reconcile()
        return mode

    def _up_hosts(self, names: list[str] | None) -> list[HostRow]:
        with self.db.session() as s:
            rows = {h.name: h for h in s.scalars(select(HostRow).order_by(HostRow.name))}
        if names:
            unknown = [n for n in names if n not in rows]
            if unknown:
                raise NotFound(f"no host named {', '.join(unknown)}")
            chosen = [rows[n] for n in names]
        else:
            chosen = list(rows.values())
        down = [h.name for h in chosen if h.state != HostState.UP]
        if down:
            raise Unavailable(f"hosts unreachable: {', '.join(down)}")
        if not chosen:
            raise InvalidRequest("no hosts registered")
        return chosen

    def cluster_baseline_xml(self) -> str | None:
        """The baseline CPU of every registered host (an unreachable one still counts: a
        guest started on a newer CPU could never move to it), computed by an up host;
        None if no host is up."""
        with self.db.session() as s:
            rows = list(s.scalars(select(HostRow).order_by(HostRow.name)))
        cpus = [h.cpu_xml for h in rows if h.cpu_xml]
        up = [h for h in rows if h.state == HostState.UP]
        if not cpus or not up:
            return None
        return self.conns.get(up[0].uri).baseline_cpu(cpus, up[0].virt_type)

    def baseline(self, names: list[str] | None = None) -> dict[str, Any]:
        """The common CPU of the hosts, and per host what it lacks that others have."""
        hosts = self._up_hosts(names)
        virt = hosts[0].virt_type
        try:
            first = self.conns.get(hosts[0].uri)
            xml = first.baseline_cpu([h.cpu_xml for h in hosts], virt)
            features = {h.name: feature_names(self.conns.get(h.uri).baseline_cpu(
                [h.cpu_xml], virt, expand=True)) for h in hosts}
        except HypervisorError as exc:
            raise InvalidRequest(f"libvirt cannot compute a baseline: {exc}") from exc
        summary = summarize(xml)
        return {**summary.as_dict(), "hosts": [h.name for h in hosts], "virt_type": virt,
                "holds_back": holds_back(features), "xml": xml, "nova": nova_conf(summary)}

    def guest_cpu_for_new_vm(self) -> str:
        return cpu_mode.guest_cpu_xml(self.get_mode(), self.cluster_baseline_xml())

    def check(self, vm: str, to: str) -> dict[str, Any]:
        """The precheck's CPU verdict for VM on host `to`, with the guest's own CPU."""
        with self.db.session() as s:
            vrow = s.scalar(select(VmRow).where(VmRow.name == vm))
            hrow = s.scalar(select(HostRow).where(HostRow.name == to))
        if vrow is None:
            raise NotFound(f"no VM named {vm!r}")
        if hrow is None:
            raise NotFound(f"no host named {to!r}")
        if not vrow.cpu_xml:
            raise InvalidRequest(f"VM {vm} has no CPU definition recorded (is it running?)")
        try:
            verdict = self.conns.get(hrow.uri).compare_cpu(vrow.cpu_xml, hrow.virt_type)
        except HypervisorError as exc:
            raise Unavailable(f"cannot ask {to}: {exc}") from exc
        guest = summarize(vrow.cpu_xml)
        return {"vm": vm, "to": to, "compatible": verdict.compatible,
                "missing_features": verdict.missing_features, "message": verdict.message,
                "guest_cpu": guest.as_dict(), "compared": "guest CPU vs destination hypervisor"}

    def report(self) -> list[dict[str, Any]]:
        """For every VM: the hosts it can move to, those it cannot, and why."""
        self.inventory.reconcile()
        with self.db.session() as s:
            hosts = [h.name for h in s.scalars(select(HostRow).where(
                HostRow.state == HostState.UP).order_by(HostRow.name))]
            vms = list(s.scalars(select(VmRow).order_by(VmRow.name)))
        out = []
        for v in vms:
            blocked = dict(v.cpu_blocked or {})
            out.append({
                "vm": v.name, "host": v.host, "cpu_model": summarize(v.cpu_xml).model
                if v.cpu_xml else "",
                "can_move_to": [h for h in hosts if h != v.host and h not in blocked],
                "cannot_move_to": {h: {"missing_features": f} for h, f in blocked.items()},
                "restart_needed": bool(blocked),
            })
        return out
