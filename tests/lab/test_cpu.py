"""CPU baseline, mode, checks and report on the real lab (three identical hosts)."""

from __future__ import annotations

from tests.lab.conftest import Lab, ferry, ferry_json


def test_baseline_of_live_hosts(lab: Lab) -> None:
    b = ferry_json("cpu", "baseline")
    assert b["hosts"] == ["node1", "node2", "node3"]
    assert b["model"] and b["vendor"]
    assert b["holds_back"] == {"node1": [], "node2": [], "node3": []}  # identical hosts
    assert ferry_json("cpu", "baseline", "--hosts", "node2")["hosts"] == ["node2"]
    nova = ferry("cpu", "baseline", "--format", "nova").stdout
    assert f"cpu_models = {b['model']}" in nova and nova.startswith("[libvirt]\ncpu_mode = custom")
    xml = ferry("cpu", "baseline", "--format", "xml").stdout
    assert f">{b['model']}</model>" in xml
    bad = ferry("cpu", "baseline", "--hosts", "node9", "--json", check=False)
    assert bad.returncode == 4


def test_vm_under_baseline_mode_passes_precheck_and_migrates(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    assert ferry_json("cpu", "mode", "show")["mode"] == "baseline"
    vm = make_vm("node1", memory=128)
    assert ferry_json("vm", "show", vm)["cpu_model"] == ferry_json("cpu", "baseline")["model"]
    check = ferry_json("cpu", "check", vm, "--to", "node2")
    assert check["compatible"] and check["missing_features"] == []
    assert check["compared"] == "guest CPU vs destination hypervisor"
    report = {r["vm"]: r for r in ferry_json("cpu", "report")}
    assert report[vm]["can_move_to"] == ["node2", "node3"] and not report[vm]["restart_needed"]
    assert ferry_json("vm", "show", vm)["mobility"] == "full"
    m = ferry_json("migrate", vm, "--to", "node2", "--wait")
    assert m["state"] == "completed"
    assert any(e["message"] == "guest CPU accepted by the destination"
               for e in ferry_json("migration", "show", str(m["id"]))["events"])


def test_mode_changes_what_new_vms_get(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    try:
        r = ferry("cpu", "mode", "set", "custom:Nonsense", "--json", check=False)
        assert r.returncode == 2 and "not usable" in r.stdout
        r = ferry("cpu", "mode", "set", "host-passthrough", "--json", check=False)
        assert r.returncode == 2 and "needs KVM" in r.stdout
        r = ferry("cpu", "mode", "set", "custom:../x", "--json", check=False)
        assert r.returncode == 2
        assert ferry_json("cpu", "mode", "set", "custom:Westmere+aes")["mode"] == \
            "custom:Westmere+aes"
        # the older name still answers as it did, for scripts written against it
        assert ferry_json("cpu", "policy", "show")["policy"] == "custom:Westmere+aes"
        vm = make_vm("node1", memory=128)
        shown = ferry_json("vm", "show", vm)
        assert shown["cpu_model"] == "Westmere"
        assert ferry_json("cpu", "check", vm, "--to", "node2")["guest_cpu"]["model"] == "Westmere"
        assert ferry_json("migrate", vm, "--to", "node2", "--wait")["state"] == "completed"
    finally:
        ferry("cpu", "policy", "set", "baseline")
    assert ferry_json("cpu", "mode", "show")["mode"] == "baseline"
