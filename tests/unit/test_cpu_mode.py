import xml.etree.ElementTree as ET

import pytest

from ferry.cpu.mode import CpuMode, guest_cpu_xml, parse
from ferry.cpu.model import CpuSummary, nova_conf
from ferry.domain.vocab import CpuModeKind as K
from ferry.errors import InvalidRequest


@pytest.mark.parametrize("text, mode", [
    ("baseline", CpuMode(K.BASELINE)),
    ("host-model", CpuMode(K.HOST_MODEL)),
    ("host-passthrough", CpuMode(K.HOST_PASSTHROUGH)),
    ("custom:Westmere", CpuMode(K.CUSTOM, "Westmere")),
    ("custom:Westmere+aes,pcid", CpuMode(K.CUSTOM, "Westmere", ["aes", "pcid"])),
])
def test_parse_and_print(text: str, mode: CpuMode) -> None:
    assert parse(text) == mode
    assert str(mode) == text


@pytest.mark.parametrize("text", ["", "custom", "custom:", "custom:West mere", "host",
                                  "custom:Westmere+AES;rm", "custom:<x>"])
def test_invalid_modes(text: str) -> None:
    with pytest.raises(InvalidRequest):
        parse(text)


def test_guest_cpu_for_each_mode() -> None:
    base = "<cpu mode='custom' match='exact'><model>Westmere</model></cpu>"
    assert guest_cpu_xml(parse("baseline"), base) == base
    assert ET.fromstring(guest_cpu_xml(parse("host-model"), None)).get("mode") == "host-model"
    cpu = ET.fromstring(guest_cpu_xml(parse("custom:Nehalem+aes"), None))
    assert cpu.findtext("model") == "Nehalem"
    assert [(f.get("name"), f.get("policy")) for f in cpu.findall("feature")] == [
        ("aes", "require")]
    with pytest.raises(InvalidRequest):
        guest_cpu_xml(parse("baseline"), None)


def test_nova_conf() -> None:
    text = nova_conf(CpuSummary("Opteron_G4", "AMD", ["pcid", "vmx"], ["xop"]))
    assert text == ("[libvirt]\ncpu_mode = custom\ncpu_models = Opteron_G4\n"
                    "cpu_model_extra_flags = +pcid, +vmx, -xop\n")
