"""The cluster CPU policy: which CPU new VMs get (pure).

| policy                    | new VMs get                                        |
|---------------------------|----------------------------------------------------|
| baseline (default)        | the common CPU of every registered host            |
| host-model                | their first host's model (may pin them to it)      |
| host-passthrough          | the host CPU as is (KVM only; least mobile)        |
| custom:MODEL[+f1,f2...]   | exactly MODEL plus the listed features             |
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from ferry.errors import InvalidRequest

KINDS = ("baseline", "host-model", "host-passthrough", "custom")
_CUSTOM = re.compile(r"^custom:([A-Za-z0-9_.-]+)(?:\+([a-z0-9_.,-]+))?$")


@dataclass(frozen=True)
class CpuPolicy:
    kind: str
    model: str = ""
    features: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if self.kind != "custom":
            return self.kind
        return f"custom:{self.model}" + (f"+{','.join(self.features)}" if self.features else "")


DEFAULT = CpuPolicy("baseline")


def parse(text: str) -> CpuPolicy:
    """Parse a policy string; raise InvalidRequest with the accepted forms."""
    text = text.strip()
    if text in ("baseline", "host-model", "host-passthrough"):
        return CpuPolicy(text)
    m = _CUSTOM.match(text)
    if m:
        feats = [f for f in (m.group(2) or "").split(",") if f]
        return CpuPolicy("custom", m.group(1), feats)
    raise InvalidRequest(f"invalid CPU policy {text!r}: use baseline, host-model, "
                         "host-passthrough or custom:MODEL[+feature,...]")


def guest_cpu_xml(policy: CpuPolicy, baseline_xml: str | None) -> str:
    """The <cpu> element a new VM gets under `policy`."""
    if policy.kind == "baseline":
        if not baseline_xml:
            raise InvalidRequest("no baseline CPU: no host is up")
        return baseline_xml
    if policy.kind in ("host-model", "host-passthrough"):
        return f"<cpu mode='{policy.kind}'/>"
    cpu = ET.Element("cpu", mode="custom", match="exact")
    ET.SubElement(cpu, "model", fallback="forbid").text = policy.model
    for name in policy.features:
        ET.SubElement(cpu, "feature", policy="require", name=name)
    return ET.tostring(cpu, encoding="unicode")
