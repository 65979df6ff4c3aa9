"""Offline CPU logic on recorded host CPUs, checked against `virsh cpu-baseline`.

Runs libvirt's own CPU code through its test driver: no host, no daemon.
"""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ferry.cpu.baseline import holds_back, offline_baseline
from ferry.cpu.compat import check_offline
from ferry.cpu.model import host_model_guest, summarize
from ferry.cpu.xmlinput import CpuInputError, extract_cpus

FIX = Path(__file__).parents[1] / "fixtures" / "cpu"


def read(*names: str) -> list[tuple[str, str]]:
    return [(n, (FIX / n).read_text()) for n in names]


def virsh_baseline(tmp_path: Path, *names: str) -> dict[str, object]:
    """What `virsh cpu-baseline` says for the concatenation of the files."""
    f = tmp_path / "input.xml"
    f.write_text("".join((FIX / n).read_text() for n in names))
    out = subprocess.run(["virsh", "-c", "test:///default", "cpu-baseline", str(f)],
                         capture_output=True, text=True, check=True).stdout
    cpu = ET.fromstring(out)
    return {"model": cpu.findtext("model"), "vendor": cpu.findtext("vendor"),
            "features": [e.get("name") for e in cpu.findall("feature[@policy='require']")],
            "disabled": [e.get("name") for e in cpu.findall("feature[@policy='disable']")]}


@pytest.mark.parametrize("names, model", [
    (("sandybridge-e5-2670.xml", "westmere-x5650.xml"), "Westmere"),
    (("haswell-e5-2680v3.xml", "sandybridge-e5-2670.xml", "westmere-x5650.xml"), "Westmere"),
    (("haswell-e5-2680v3.xml", "sandybridge-e5-2670.xml"), "SandyBridge"),
    (("opteron-6234.xml", "epyc-7601.xml"), "Opteron_G4"),  # EPYC lacks G4's xop, fma4
    (("two-intel-cpus.xml",), "Westmere"),
])
def test_baseline_agrees_with_virsh(tmp_path: Path, names: tuple[str, ...], model: str) -> None:
    summary, _xml = offline_baseline(read(*names))
    assert summary.model == model
    assert summary.as_dict() == virsh_baseline(tmp_path, *names)


def test_amd_baseline_disables_what_the_newer_host_dropped() -> None:
    summary, _ = offline_baseline(read("opteron-6234.xml", "epyc-7601.xml"))
    assert {"xop", "fma4"} <= set(summary.disabled)


def test_vendor_mix_is_an_error() -> None:
    with pytest.raises(CpuInputError, match="vendors do not match"):
        offline_baseline(read("westmere-x5650.xml", "epyc-7601.xml"))


@pytest.mark.parametrize("name, message", [("malformed.xml", "malformed XML"),
                                           ("no-cpu.xml", "no CPU definition")])
def test_bad_input_is_an_error(name: str, message: str) -> None:
    with pytest.raises(CpuInputError, match=message):
        offline_baseline(read(name))


def test_extract_from_capabilities_ignores_topology_cpus() -> None:
    cpus = extract_cpus((FIX / "westmere-x5650.xml").read_text())
    assert len(cpus) == 1 and "<model>Westmere</model>" in cpus[0]
    assert len(extract_cpus((FIX / "two-intel-cpus.xml").read_text())) == 2


def test_holds_back_names_the_weaker_hosts_features() -> None:
    from ferry.cpu.baseline import expanded_features

    feats = {n: expanded_features(extract_cpus((FIX / f).read_text())[0]) for n, f in (
        ("node-sb", "sandybridge-e5-2670.xml"), ("node-wm", "westmere-x5650.xml"))}
    back = holds_back(feats)
    assert {"avx", "xsave"} <= set(back["node-wm"])  # Sandy Bridge has AVX, Westmere not
    assert back["node-sb"] == sorted(feats["node-wm"] - feats["node-sb"])


class TestThe2015Bug:
    """Newer source (Haswell), older destination (Westmere).  The question is
    whether the *guest's* CPU runs on the destination — not whether the source
    host's CPU does (which is what Nova compared for years)."""

    src = (FIX / "haswell-e5-2680v3.xml").read_text()
    dst_caps = (FIX / "westmere-x5650.xml").read_text()

    def dst(self) -> str:
        return extract_cpus(self.dst_caps)[0]

    def test_guest_on_cluster_baseline_may_move_to_the_older_host(self) -> None:
        _s, baseline_xml = offline_baseline([("src", self.src), ("dst", self.dst_caps)])
        verdict = check_offline(baseline_xml, self.dst())
        assert verdict.compatible, verdict.message
        # A host-vs-host comparison would have refused this guest:
        host_vs_host = check_offline(host_model_guest(extract_cpus(self.src)[0]), self.dst())
        assert not host_vs_host.compatible

    def test_guest_on_newer_hosts_host_model_is_refused_naming_features(self) -> None:
        guest = host_model_guest(extract_cpus(self.src)[0])
        verdict = check_offline(guest, self.dst())
        assert not verdict.compatible
        assert {"avx", "avx2", "fma", "movbe", "bmi1", "bmi2"} <= set(verdict.missing_features)
        assert "avx2" in verdict.message

    def test_disabled_feature_is_not_required(self) -> None:
        guest = ("<cpu mode='custom' match='exact'><model fallback='forbid'>Westmere</model>"
                 "<vendor>Intel</vendor><feature policy='require' name='avx'/>"
                 "<feature policy='disable' name='aes'/></cpu>")
        v = check_offline(guest, self.dst())
        assert v.missing_features == ["avx"]

    def test_vendor_mismatch_refused(self) -> None:
        epyc = extract_cpus((FIX / "epyc-7601.xml").read_text())[0]
        v = check_offline(host_model_guest(epyc), self.dst())
        assert not v.compatible and "vendor" in v.message


def test_summary_of_guest_cpu() -> None:
    s = summarize("<cpu mode='custom'><model>Westmere</model><vendor>Intel</vendor>"
                  "<feature policy='require' name='vmx'/>"
                  "<feature policy='disable' name='x'/></cpu>")
    assert s.as_dict() == {"model": "Westmere", "vendor": "Intel", "features": ["vmx"],
                           "disabled": ["x"]}
