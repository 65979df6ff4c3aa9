"""Every error case through the API, with the status and reason an operator needs."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import httpx
import libvirt
import pytest

from tests.lab.conftest import (
    CLIENT_CONFIG,
    FERRY,
    URIS,
    Lab,
    ferry,
    ferry_json,
    wait_finished,
    wait_samples,
)


def test_requires_token(lab: Lab) -> None:
    with lab.api(token="wrong-token-wrong-token") as api:
        assert api.get("/hosts").status_code == 401
    with lab.api(auth=False) as anonymous:
        for path in ("/vms", "/health", "/openapi.json", "/migrations/1"):
            assert anonymous.get(path).status_code == 401, path
    with lab.api() as api, lab.api(auth=False) as anonymous:
        for path in ("/docs", "/redoc"):  # no doc pages at all, with or without a token
            assert anonymous.get(path).status_code == 401, path
            assert api.get(path).status_code == 404, path
        schema = api.get("/openapi.json").json()
    assert "/migrations" in schema["paths"] and "/hosts/{name}/refresh" in schema["paths"]


def test_the_api_answers_https_only_with_a_certificate_of_the_lab_ca(lab: Lab) -> None:
    assert lab.url.startswith("https://127.0.0.1:")
    with lab.api() as api:
        assert api.get("/health").status_code == 200
    plain = "http://" + lab.url.removeprefix("https://")
    with pytest.raises(httpx.HTTPError):  # no HTTP answer at all: TLS is expected
        httpx.get(f"{plain}/health", headers={"Authorization": f"Bearer {lab.token}"},
                  timeout=10)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{lab.url}/health", timeout=10)  # the system CAs do not know the lab's
    # the CLI verifies the server too: a config without the CA is refused
    cfg = json.loads(CLIENT_CONFIG.read_text())
    bare = Path(tempfile.mkdtemp()) / "client.json"
    bare.write_text(json.dumps({"url": cfg["url"], "token": cfg["token"]}))
    r = subprocess.run([FERRY, "host", "list"], capture_output=True, text=True, check=False,
                       env=dict(os.environ, FERRY_CONFIG=str(bare)))
    assert r.returncode == 8 and "CERTIFICATE_VERIFY_FAILED" in r.stdout + r.stderr, r


def test_unknown_vm_and_host_are_404(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    vm = make_vm("node1", memory=128)
    with lab.api() as api:
        r = api.post("/migrations", json={"vm": "nosuchvm", "to": "node2"})
        assert r.status_code == 404 and r.json()["error"] == "not_found"
        r = api.post("/migrations", json={"vm": vm, "to": "node9"})
        assert r.status_code == 404 and "node9" in r.json()["message"]
        assert api.get("/vms/nosuchvm").status_code == 404
        assert api.get("/hosts/nosuchhost").status_code == 404
        assert api.get("/migrations/999999").status_code == 404
    assert ferry("migrate", "nosuchvm", "--to", "node2", check=False).returncode == 4


def test_same_host_is_400(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    vm = make_vm("node1", memory=128)
    with lab.api() as api:
        r = api.post("/migrations", json={"vm": vm, "to": "node1"})
    assert r.status_code == 400
    assert "same host" in r.json()["message"]


def test_bad_names_are_400(lab: Lab) -> None:
    with lab.api() as api:
        r = api.post("/vms", json={"name": "../../etc", "host": "node1"})
        assert r.status_code == 400
        r = api.post("/hosts", json={"name": "h1", "uri": "qemu+tcp://x/system;rm -rf"})
        assert r.status_code == 400
        r = api.post("/migrations", json={"vm": "a/b", "to": "node2"})
        assert r.status_code == 400


def test_second_migration_of_migrating_vm_is_409(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    vm = make_vm("node1", memory=128, dirty=2, wss=16)
    with lab.api() as api:
        r = api.post("/migrations", json={"vm": vm, "to": "node2", "bandwidth_mib_s": 2})
        assert r.status_code == 201, r.text
        mid = r.json()["id"]
        wait_samples(lab, mid)
        r2 = api.post("/migrations", json={"vm": vm, "to": "node2"})
        assert r2.status_code == 409
        assert r2.json()["details"]["migration"] == mid
        assert api.post(f"/migrations/{mid}/cancel").status_code == 200
    assert wait_finished(lab, mid)["state"] == "cancelled"


def test_disk_not_on_shared_storage_is_refused_before_transfer(lab: Lab) -> None:
    """A guest defined outside Ferry with its disk in a host-local directory is
    found by reconciliation and refused (422) with the reason and the disk."""
    name = "localdisk"
    conn = libvirt.open(URIS["node1"])
    xml = f"""<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory>
      <vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os>
      <devices><disk type='file' device='disk'><driver name='qemu' type='raw' cache='none'/>
        <source file='/var/lib/libvirt/localdisk.img'/><target dev='vda' bus='virtio'/></disk>
      <memballoon model='none'/></devices></domain>"""
    pool = conn.storagePoolLookupByName("shared")
    # a raw image in node1's private /var/lib/libvirt: only node1 has it
    vol_xml = ("<volume><name>localdisk.img</name><capacity unit='bytes'>1048576</capacity>"
               "<target><format type='raw'/></target></volume>")
    local = conn.storagePoolCreateXML(
        "<pool type='dir'><name>outside</name><target><path>/var/lib/libvirt</path></target>"
        "</pool>", 0)
    local.createXML(vol_xml, 0)
    dom = conn.defineXML(xml)
    try:
        dom.create()
        ferry("host", "refresh", "node1")
        with lab.api() as api:
            r = api.post("/migrations", json={"vm": name, "to": "node2"})
        assert r.status_code == 422, r.text
        body = r.json()
        assert body["error"] == "refused"
        assert body["details"]["reason"] == "storage_not_shared"
        assert list(body["details"]["disks"]) == ["/var/lib/libvirt/localdisk.img"]
        assert "no pool Ferry knows" in body["details"]["disks"]["/var/lib/libvirt/localdisk.img"]
        assert name not in {d.name() for d in libvirt.open(URIS["node2"]).listAllDomains()}
        assert dom.isActive()
        refused = ferry_json("migration", "list", "--vm", name)[0]
        assert refused["state"] == "failed" and "neither be shared" in refused["error"]
        assert ferry("migrate", name, "--to", "node2", check=False).returncode == 5
    finally:
        if dom.isActive():
            dom.destroy()
        dom.undefine()
        local.storageVolLookupByName("localdisk.img").delete(0)
        local.destroy()
        assert pool.isActive()
        ferry("host", "refresh", "node1")


def test_cpu_precheck_names_features_the_destination_lacks(lab: Lab, make_vm) -> None:  # type: ignore[no-untyped-def]
    """The CPU precheck compares the guest's own CPU with the destination's
    hypervisor.  The lab's hosts are identical, so no live guest can differ; the
    guest CPU here is the definition a guest started with host-model on an
    AVX-512 host carries, judged by the real destination libvirt."""
    from ferry.errors import MigrationRefused
    from ferry.hypervisor.drivers import open_libvirt
    from ferry.migration.prechecks import check_cpu

    guest_cpu = ("<cpu mode='custom' match='exact'><model fallback='forbid'>qemu64</model>"
                 "<feature policy='require' name='avx512f'/>"
                 "<feature policy='require' name='avx512bw'/></cpu>")
    dest = open_libvirt(URIS["node2"])
    try:
        with pytest.raises(MigrationRefused) as err:
            check_cpu(guest_cpu, dest, "qemu")
        assert err.value.reason == "cpu_incompatible"
        assert set(err.value.details["missing_features"]) == {"avx512f", "avx512bw"}
        # a real Ferry VM's live CPU (the cluster baseline) is accepted
        vm = make_vm("node1", memory=128)
        live = open_libvirt(URIS["node1"])
        try:
            cpu = live.domain(vm).cpu_xml
        finally:
            live.close()
        assert "<model" in cpu
        check_cpu(cpu, dest, "qemu")
    finally:
        dest.close()
