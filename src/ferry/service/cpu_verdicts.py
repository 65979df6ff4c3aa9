"""compareHypervisorCPU answers, cached per (host, guest CPU): they change only when
the host's hypervisor does (`host refresh` forgets them)."""

from __future__ import annotations

import hashlib
import threading

from ferry.hypervisor.errors import HypervisorError
from ferry.hypervisor.types import CpuVerdict
from ferry.service.connections import HostConnections


class CpuVerdicts:
    def __init__(self, conns: HostConnections) -> None:
        self._conns = conns
        self._cache: dict[tuple[str, str, str], CpuVerdict] = {}
        self._lock = threading.Lock()

    def verdict(self, host_name: str, uri: str, cpu_xml: str,
                virt_type: str) -> CpuVerdict | None:
        """None when the host cannot be asked now."""
        key = (host_name, hashlib.sha256(cpu_xml.encode()).hexdigest(), virt_type)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        try:
            verdict = self._conns.get(uri).compare_cpu(cpu_xml, virt_type)
        except HypervisorError:
            return None
        with self._lock:
            self._cache[key] = verdict
        return verdict

    def forget(self, host_name: str | None = None) -> None:
        with self._lock:
            for key in [k for k in self._cache if host_name in (None, k[0])]:
                del self._cache[key]
