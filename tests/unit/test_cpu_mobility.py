"""Which VMs get flagged "restart needed": the decision over per-host verdicts."""

from __future__ import annotations

from ferry.hypervisor.types import CpuVerdict
from ferry.service.inventory import blocked


class Verdicts:
    """Per-host answers as compareHypervisorCPU gave them (recorded)."""

    def __init__(self, answers: dict[str, CpuVerdict | None]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def verdict(self, host: str, uri: str, cpu_xml: str,
                    virt_type: str) -> CpuVerdict | None:
        self.asked.append(host)
        return self.answers[host]


OK = CpuVerdict(True, [], "compatible")


def test_weaker_host_flags_the_vm_with_missing_features() -> None:
    v = Verdicts({"new": OK, "old": CpuVerdict(False, ["avx2", "fma"], "incompatible")})
    flagged = blocked(v.verdict, "<cpu/>", "src", {"src": [], "new": [], "old": []},
                       {h: (f"qemu+tcp://{h}/system", "kvm") for h in ("src", "new", "old")})
    assert flagged == {"old": ["avx2", "fma"]}
    assert "src" not in v.asked  # never compares the VM with its own host


def test_all_hosts_fine_or_unknown_is_not_flagged() -> None:
    v = Verdicts({"a": OK, "b": None})
    hosts = {"a": ("u", "qemu"), "b": ("u", "qemu")}
    assert blocked(v.verdict, "<cpu/>", "src", {"a": [], "b": []}, hosts) == {}
    assert blocked(v.verdict, "", "src", {"a": []}, {"a": ("u", "qemu")}) == {}
