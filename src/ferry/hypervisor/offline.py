"""libvirt's CPU logic without any host: the built-in `test:///default` driver.

Baselines and feature expansion use libvirt's own CPU map, exactly as
`virsh cpu-baseline` does, so offline answers agree with libvirt's.
"""

from __future__ import annotations

import threading

import libvirt

from ferry.hypervisor.errors import HypervisorError

_lock = threading.Lock()
_conn: libvirt.virConnect | None = None


def _connection() -> libvirt.virConnect:
    global _conn
    with _lock:
        if _conn is None:
            libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
            _conn = libvirt.open("test:///default")
        return _conn


def baseline_cpu(cpu_xmls: list[str], *, expand: bool = False) -> str:
    """virConnectBaselineCPU over host-style <cpu> elements (what `virsh cpu-baseline` calls)."""
    flags = libvirt.VIR_CONNECT_BASELINE_CPU_EXPAND_FEATURES if expand else 0
    try:
        return str(_connection().baselineCPU(cpu_xmls, flags))
    except libvirt.libvirtError as exc:
        raise HypervisorError(exc.get_error_message()) from exc
