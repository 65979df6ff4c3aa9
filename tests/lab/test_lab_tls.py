"""The lab's libvirt is reached over TLS only: no host listens on libvirt's plain
TCP port, every host is registered as qemu+tls, and root's plain `virsh` still
reaches every host with the client certificate the lab put in /etc/pki."""

from __future__ import annotations

import subprocess

from tests.lab.conftest import URIS, Lab, ferry_json


def _listening(netns: str) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, "ss", "-Hltn"], capture_output=True,
                          text=True, check=True).stdout


def test_libvirt_listens_with_tls_only_and_virsh_still_works(lab: Lab) -> None:
    for host, uri in URIS.items():
        ports = _listening(f"ferry-{host}")
        assert ":16514 " in ports and ":16509 " not in ports, (host, ports)
        assert uri.startswith("qemu+tls://")
        shown = ferry_json("host", "show", host)
        assert shown["uri"] == uri and shown["state"] == "up", shown
        r = subprocess.run(["virsh", "-c", uri, "hostname"], capture_output=True, text=True,
                           check=False, timeout=60)
        assert r.returncode == 0 and r.stdout.strip() == host, r
        plain = subprocess.run(["virsh", "-c", uri.replace("qemu+tls", "qemu+tcp"),
                                "hostname"], capture_output=True, text=True, check=False,
                               timeout=60)
        assert plain.returncode != 0  # nobody answers in clear
