"""Which VMs get flagged "restart needed": the decision over per-host verdicts."""

from __future__ import annotations

from ferry.hypervisor.types import CpuVerdict
from ferry.service.hosts import _blocked


class Verdicts:
    """Per-host answers as compareHypervisorCPU gave them (recorded)."""

    def __init__(self, answers: dict[str, CpuVerdict | None]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def cpu_verdict(self, host: str, uri: str, cpu_xml: str,
                    virt_type: str) -> CpuVerdict | None:
        self.asked.append(host)
        return self.answers[host]


OK = CpuVerdict(True, [], "compatible")


def test_weaker_host_flags_the_vm_with_missing_features() -> None:
    v = Verdicts({"new": OK, "old": CpuVerdict(False, ["avx2", "fma"], "incompatible")})
    blocked = _blocked(v, "<cpu/>", "src", {"src": [], "new": [], "old": []},  # type: ignore[arg-type]
                       {h: (f"qemu+tcp://{h}/system", "kvm") for h in ("src", "new", "old")})
    assert blocked == {"old": ["avx2", "fma"]}
    assert "src" not in v.asked  # never compares the VM with its own host


def test_all_hosts_fine_or_unknown_is_not_flagged() -> None:
    v = Verdicts({"a": OK, "b": None})
    hosts = {"a": ("u", "qemu"), "b": ("u", "qemu")}
    assert _blocked(v, "<cpu/>", "src", {"a": [], "b": []}, hosts) == {}  # type: ignore[arg-type]
    assert _blocked(v, "", "src", {"a": []}, {"a": ("u", "qemu")}) == {}  # type: ignore[arg-type]
