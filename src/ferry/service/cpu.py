"""CPU use cases: the cluster baseline, the CPU policy, the mobility report, checks.

Every verdict comes from libvirt on the hosts involved: the baseline from
`baselineHypervisorCPU` over the hosts' host-model CPUs, compatibility from
`compareHypervisorCPU` of a VM's own live CPU on each destination.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ferry.cpu import policy as cpu_policy
from ferry.cpu.baseline import holds_back
from ferry.cpu.model import feature_names, nova_conf, summarize
from ferry.db.models import HostRow, SettingRow, VmRow
from ferry.domain.models import HostState
from ferry.errors import InvalidRequest, NotFound, Unavailable
from ferry.hypervisor.errors import HypervisorError
from ferry.service.controller import Controller

POLICY_KEY = "cpu_policy"


def get_policy(ctx: Controller) -> cpu_policy.CpuPolicy:
    with ctx.session() as s:
        row = s.get(SettingRow, POLICY_KEY)
        return cpu_policy.parse(row.value) if row else cpu_policy.DEFAULT


def set_policy(ctx: Controller, text: str) -> cpu_policy.CpuPolicy:
    """Validate against the registered hosts, store, re-evaluate VM mobility."""
    pol = cpu_policy.parse(text)
    with ctx.session() as s:
        hosts = [(h.name, h.virt_type, list(h.cpu_models or [])) for h in
                 s.scalars(select(HostRow).where(HostRow.state == HostState.UP))]
    if pol.kind == "host-passthrough":
        tcg = [n for n, vt, _ in hosts if vt != "kvm"]
        if tcg:
            raise InvalidRequest("host-passthrough needs KVM; these hosts run guests under "
                                 f"TCG: {', '.join(tcg)}")
    if pol.kind == "custom":
        lacking = [n for n, _, models in hosts if pol.model not in models]
        if lacking:
            raise InvalidRequest(f"CPU model {pol.model} is not usable on: {', '.join(lacking)}",
                                 {"hosts": lacking})
    with ctx.session() as s:
        row = s.get(SettingRow, POLICY_KEY)
        if row is None:
            s.add(SettingRow(key=POLICY_KEY, value=str(pol)))
        else:
            row.value = str(pol)
    from ferry.service.hosts import reconcile

    reconcile(ctx)
    return pol


def _up_hosts(ctx: Controller, names: list[str] | None) -> list[HostRow]:
    with ctx.session() as s:
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
        raise Unavailable(f"hosts down: {', '.join(down)}")
    if not chosen:
        raise InvalidRequest("no hosts registered")
    return chosen


def cluster_baseline_xml(ctx: Controller) -> str | None:
    """The baseline CPU of every up host, or None if no host is up."""
    try:
        hosts = _up_hosts(ctx, None)
    except (InvalidRequest, Unavailable):
        hosts = []
    hosts = [h for h in hosts if h.cpu_xml]
    if not hosts:
        return None
    return ctx.host(hosts[0].uri).baseline_cpu([h.cpu_xml for h in hosts], hosts[0].virt_type)


def baseline(ctx: Controller, names: list[str] | None = None) -> dict[str, Any]:
    """The common CPU of the hosts, and per host what it lacks that others have."""
    hosts = _up_hosts(ctx, names)
    virt = hosts[0].virt_type
    try:
        conn = ctx.host(hosts[0].uri)
        xml = conn.baseline_cpu([h.cpu_xml for h in hosts], virt)
        features = {h.name: feature_names(ctx.host(h.uri).baseline_cpu([h.cpu_xml], virt,
                                                                        expand=True))
                    for h in hosts}
    except HypervisorError as exc:
        raise InvalidRequest(f"libvirt cannot compute a baseline: {exc}") from exc
    summary = summarize(xml)
    return {**summary.as_dict(), "hosts": [h.name for h in hosts], "virt_type": virt,
            "holds_back": holds_back(features), "xml": xml, "nova": nova_conf(summary)}


def guest_cpu_for_new_vm(ctx: Controller) -> str:
    return cpu_policy.guest_cpu_xml(get_policy(ctx), cluster_baseline_xml(ctx))


def check(ctx: Controller, vm: str, to: str) -> dict[str, Any]:
    """The precheck's CPU verdict for VM on host `to`, with the guest's own CPU."""
    with ctx.session() as s:
        vrow = s.scalar(select(VmRow).where(VmRow.name == vm))
        hrow = s.scalar(select(HostRow).where(HostRow.name == to))
    if vrow is None:
        raise NotFound(f"no VM named {vm!r}")
    if hrow is None:
        raise NotFound(f"no host named {to!r}")
    if not vrow.cpu_xml:
        raise InvalidRequest(f"VM {vm} has no CPU definition recorded (is it running?)")
    try:
        verdict = ctx.host(hrow.uri).compare_cpu(vrow.cpu_xml, hrow.virt_type)
    except HypervisorError as exc:
        raise Unavailable(f"cannot ask {to}: {exc}") from exc
    guest = summarize(vrow.cpu_xml)
    return {"vm": vm, "to": to, "compatible": verdict.compatible,
            "missing_features": verdict.missing_features, "message": verdict.message,
            "guest_cpu": guest.as_dict(), "compared": "guest CPU vs destination hypervisor"}


def report(ctx: Controller) -> list[dict[str, Any]]:
    """For every VM: the hosts it can move to, those it cannot, and why."""
    from ferry.service.hosts import reconcile

    reconcile(ctx)
    with ctx.session() as s:
        hosts = [h.name for h in s.scalars(select(HostRow).where(HostRow.state == HostState.UP)
                                           .order_by(HostRow.name))]
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
