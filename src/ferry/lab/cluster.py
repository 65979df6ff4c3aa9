"""`ferry lab up / down / status`: the whole local cluster as one unit.

`up` builds the guest image, probes the accelerator, creates the bridges
(hosts' and guests') and one namespace + libvirtd per host, starts the
console logger, the network probe and the Ferry controller on loopback with
a fresh token, registers the hosts, and writes the client config.  `down`
removes all of it, by recorded PIDs and by the names in layout.py, and works
after a crash (every step tolerates absence).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from ferry.lab import ceph, hostd, netns, pki
from ferry.lab.accel import probe
from ferry.lab.image import build_image
from ferry.lab.layout import (
    GUEST_NETWORK,
    GUEST_SUBNET,
    MAX_HOSTS,
    PROBE_NETNS,
    LabHost,
    cache_dir,
    lab_dir,
    lab_host,
)
from ferry.lab.procs import cmdline, pid_alive, read_pid, stop_pid
from ferry.lab.run import LabError, write_private

CONTROLLER_PORT = 8470
ROOT_PKI = Path("/etc/pki")  # where libvirt's clients run by root look for certificates
STORAGE = ("dir", "ceph")
# Inside each host's private /var/lib/libvirt: the same path, different storage per host.
LOCAL_POOL_PATH = "/var/lib/libvirt/ferry-local"
Say = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


def _free_port(start: int) -> int:
    for port in range(start, start + 100):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise LabError("no free loopback port for the controller")


def state_path() -> Path:
    return lab_dir() / "state.json"


def read_state() -> dict[str, Any] | None:
    try:
        return dict(json.loads(state_path().read_text()))
    except (OSError, ValueError):
        return None


def _spawn(args: list[str], log: Path, pidfile: Path) -> int:
    with open(log, "ab") as out:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True)
    pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


def up(n_hosts: int = 2, client_config: Path | None = None, say: Say = _quiet,
       storage: str = "dir") -> dict[str, Any]:
    """Bring the lab up (idempotent: an existing healthy lab is returned as is, and
    gets a Ceph cluster if `storage` asks for one it lacks)."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, mounts, libvirtd)")
    if not 1 <= n_hosts <= MAX_HOSTS:
        raise LabError(f"--hosts must be 1..{MAX_HOSTS}")
    if storage not in STORAGE:
        raise LabError(f"--storage must be one of {', '.join(STORAGE)}")
    current = read_state()
    if current and status().get("healthy"):
        if len(current["hosts"]) != n_hosts:
            raise LabError(f"a lab with {len(current['hosts'])} hosts is up; "
                           "run `ferry lab down` first")
        if storage == "ceph" and current.get("storage") != "ceph":
            _add_ceph(lab_dir(), current, say)
            state_path().write_text(json.dumps(current, indent=2))
        return current
    if current:
        say("a previous lab is unhealthy: removing it first")
        down(say)
    lab = lab_dir()
    lab.mkdir(parents=True, exist_ok=True)
    shared = lab / "shared"
    (shared / "images").mkdir(parents=True, exist_ok=True)

    say("building the guest image (cached after the first run)")
    image = build_image(cache_dir())
    kernel, initrd = shared / "images" / "vmlinuz", shared / "images" / "initrd.gz"
    shutil.copyfile(image.kernel, kernel)
    shutil.copyfile(image.initrd, initrd)
    virt_type, accel_reason = probe(image, cache_dir())
    say(f"accelerator: {'KVM' if virt_type == 'kvm' else 'TCG'} — {accel_reason}")

    hosts = [lab_host(i) for i in range(1, n_hosts + 1)]
    ca = _authority(lab)
    _install_root_client(lab, ca)
    netns.create_bridge()
    netns.create_guest_segment()
    for h in hosts:
        netns.create_host_netns(h)
        hostd.prepare(h, lab, shared, ca)
        hostd.start(h, lab)
    for h in hosts:
        say(f"waiting for libvirtd on {h.name} ({h.address})")
        hostd.wait_ready(h, lab)

    console_pid = read_pid(lab / "console.pid")
    if not (console_pid and pid_alive(console_pid, "ferry.lab.console")):
        _spawn([sys.executable, "-m", "ferry.lab.console", str(lab)], lab / "console.log",
               lab / "console.pid")
    probe_pid = read_pid(lab / "probe.pid")
    if not (probe_pid and pid_alive(probe_pid, "ferry.lab.probe")):
        _spawn(["ip", "netns", "exec", PROBE_NETNS, sys.executable, "-m", "ferry.lab.probe",
                str(lab)], lab / "probe.log", lab / "probe.pid")

    ctl = lab / "controller"
    ctl.mkdir(exist_ok=True)
    port = _free_port(CONTROLLER_PORT)
    token = secrets.token_urlsafe(32)
    scrape = secrets.token_urlsafe(24)  # Prometheus' (docs/metrics.md): /metrics only
    write_private(ctl / "metrics.token", scrape)
    settings = {
        "db_url": f"sqlite:///{ctl / 'ferry.db'}",
        "listen_host": "127.0.0.1",
        "listen_port": port,
        "token": token,
        "metrics_token": scrape,
        "boot_pool": "shared",
        "guest_network": GUEST_NETWORK,
        "guest_subnet": GUEST_SUBNET,
        "guest_image": {"kernel": str(kernel), "initrd": str(initrd)},
        "console_dir": "/var/lib/libvirt/ferry-console",
        "heartbeat_glob": str(lab / "hosts" / "*" / "var-lib-libvirt" / "ferry-console"),
        # the lab's guests are small: a --timeout-per-gib asked for ends a move of one
        # in seconds, not at the 30 s floor meant for real guests
        "migration_timeout_min_s": 10.0,
        **_api_certificate(lab, ca),
    }
    conf = ctl / "settings.json"
    write_private(conf, json.dumps(settings, indent=2))
    url = f"https://127.0.0.1:{port}"
    say(f"starting the Ferry controller on {url}")
    start_controller(lab)
    client = {"url": url, "token": token, "ca": str(pki_dir(lab) / "ca-cert.pem")}
    _wait_health(client, lab)
    with _api(client) as http:
        for h in hosts:
            say(f"registering {h.name}")
            r = http.post("/hosts", json={"name": h.name, "uri": h.uri, "virt_type": virt_type,
                                          "migration_tls": True})
            if r.status_code not in (201, 409):
                raise LabError(f"registering {h.name} failed: {r.text}")
        for pool in ({"name": "shared", "kind": "dir-shared", "path": str(shared)},
                     {"name": "local", "kind": "local", "path": LOCAL_POOL_PATH}):
            say(f"registering pool {pool['name']} ({pool['kind']})")
            _register_pool(http, pool)
    configs = [lab / "client.json"]
    if client_config is not None:
        configs.append(client_config)
    for path in configs:
        write_private(path, json.dumps(client, indent=2))
    state = {"hosts": [h.name for h in hosts], "controller": url, "virt_type": virt_type,
             "accelerator_reason": accel_reason, "client_configs": [str(p) for p in configs],
             "storage": "dir"}
    if storage == "ceph":
        _add_ceph(lab, state, say)
    state_path().write_text(json.dumps(state, indent=2))
    return state


def _register_pool(http: httpx.Client, pool: dict[str, Any]) -> None:
    r = http.post("/pools", json=pool)
    if r.status_code not in (201, 409):
        raise LabError(f"registering pool {pool['name']} failed: {r.text}")


def _add_ceph(lab: Path, state: dict[str, Any], say: Say) -> None:
    """Start the lab's Ceph cluster and register its rbd pool as `ceph`."""
    say("starting a single-node Ceph cluster (mon, mgr, one OSD)")
    info = ceph.up(lab)
    say("registering pool ceph (rbd)")
    with _api(json.loads((lab / "client.json").read_text())) as http:
        _register_pool(http, {"name": "ceph", "kind": "rbd", "monitors": info.monitors,
                              "rbd_pool": info.pool, "user": info.user, "key": info.key})
    state["storage"] = "ceph"


def start_controller(lab: Path) -> int:
    """(Re)start the controller process of the lab; returns its PID."""
    ctl = lab / "controller"
    return _spawn([sys.executable, "-m", "ferry.cli.main", "serve", "--config",
                   str(ctl / "settings.json")], ctl / "controller.log", ctl / "controller.pid")


def stop_controller(lab: Path, sig: int = signal.SIGTERM) -> None:
    pid = read_pid(lab / "controller" / "controller.pid")
    if pid:
        stop_pid(pid, "ferry.cli.main serve", sig=sig)


def controller_running(lab: Path) -> int | None:
    pid = read_pid(lab / "controller" / "controller.pid")
    return pid if pid and pid_alive(pid, "ferry.cli.main serve") else None


def controller_start(lab: Path) -> int:
    """Start the lab's controller with its settings (if it is not running) and wait
    until it answers; returns its PID."""
    if not (lab / "controller" / "settings.json").exists():
        raise LabError("the lab is down: `ferry lab up` first")
    pid = controller_running(lab) or start_controller(lab)
    _wait_health(json.loads((lab / "client.json").read_text()), lab)
    return pid


def controller_stop(lab: Path, kill: bool = False) -> int | None:
    """Stop the lab's controller (SIGTERM, or SIGKILL as a crash would); returns the
    PID it had, None if it was not running."""
    pid = controller_running(lab)
    if pid is not None:
        stop_controller(lab, signal.SIGKILL if kill else signal.SIGTERM)
    return pid


def pki_dir(lab: Path) -> Path:
    return lab / "pki"


def _authority(lab: Path) -> pki.Authority:
    """The lab's CA: made with the lab, kept until `lab down`."""
    d = pki_dir(lab)
    if (d / "ca-cert.pem").exists():
        return pki.load_authority(d)
    ca = pki.new_authority()
    pki.write_authority(ca, d)
    return ca


def _api_certificate(lab: Path, ca: pki.Authority) -> dict[str, str]:
    """The controller's HTTPS certificate for 127.0.0.1: the settings that make `ferry
    serve` answer HTTPS only."""
    d = pki_dir(lab)
    pki.write_pair(pki.issue(ca, "ferry-controller", dns=("localhost",), ips=("127.0.0.1",),
                             server=True), d / "controller-cert.pem", d / "controller-key.pem")
    return {"tls_cert_file": str(d / "controller-cert.pem"),
            "tls_key_file": str(d / "controller-key.pem")}


def _installed_record(lab: Path) -> Path:
    return pki_dir(lab) / "installed.json"


def _install_root_client(lab: Path, ca: pki.Authority) -> None:
    """The lab's client certificate where libvirt's clients run by root look for it
    (/etc/pki), so the controller and a plain `virsh -c qemu+tls://198.18.0.11/system`
    reach every lab host.  Files the lab did not put there are never replaced; `lab
    down` removes exactly what it put there (if unchanged since)."""
    record = _installed_record(lab)
    ours = json.loads(record.read_text()) if record.exists() else {}
    targets = [ROOT_PKI / "CA" / "cacert.pem", ROOT_PKI / "libvirt" / "clientcert.pem",
               ROOT_PKI / "libvirt" / "private" / "clientkey.pem"]
    foreign = [str(t) for t in targets if t.exists() and str(t) not in ours]
    if foreign:
        raise LabError(f"{', '.join(foreign)} exist and are not the lab's: the lab will not "
                       "replace them (move them away to run the lab)")
    dirs = [d for d in (ROOT_PKI / "libvirt" / "private", ROOT_PKI / "libvirt",
                        ROOT_PKI / "CA", ROOT_PKI) if not d.exists()]
    made = hostd.install_certificates(ROOT_PKI, ca, pki.issue(ca, "ferry-lab-root",
                                                              client=True), server=False)
    record.write_text(json.dumps({str(p): _digest(p) for p in made} |
                                 {str(d): "dir" for d in dirs if str(d) not in ours}
                                 | {k: v for k, v in ours.items() if v == "dir"}, indent=1))


def _remove_root_client(lab: Path) -> None:
    record = _installed_record(lab)
    if not record.exists():
        return
    made = json.loads(record.read_text())
    for path, digest in made.items():
        p = Path(path)
        if digest != "dir" and p.is_file() and _digest(p) == digest:
            p.unlink()
    for path in sorted((p for p, d in made.items() if d == "dir"), key=len, reverse=True):
        with contextlib.suppress(OSError):  # not empty: someone else's files are there
            Path(path).rmdir()
    record.unlink()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _api(client: dict[str, str], timeout: float = 120) -> httpx.Client:
    """The lab's controller over HTTPS, verified against the lab's CA."""
    return httpx.Client(base_url=client["url"], timeout=timeout,
                        verify=ssl.create_default_context(cafile=client.get("ca")),
                        headers={"Authorization": f"Bearer {client['token']}"})


def _wait_health(client: dict[str, str], lab: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = read_pid(lab / "controller" / "controller.pid")
        if not pid or not pid_alive(pid):
            log = (lab / "controller" / "controller.log").read_text(errors="replace")[-3000:]
            raise LabError(f"the controller exited:\n{log}")
        try:
            with _api(client, timeout=2) as http:
                r = http.get("/health")
            if r.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise LabError(f"the controller did not answer on {client['url']} within {timeout:.0f}s")


def _lab_hosts(lab: Path) -> list[LabHost]:
    found = []
    for d in sorted((lab / "hosts").glob("node*")) if (lab / "hosts").exists() else []:
        if d.name[4:].isdigit():
            found.append(lab_host(int(d.name[4:])))
    return found


def _kill_guests(h: LabHost, lab: Path) -> int:
    """Stop QEMU processes this host's libvirtd started (their PID files)."""
    killed = 0
    qdir = h.private_dir(lab, "/run/libvirt") / "qemu"
    for pidfile in qdir.glob("*.pid") if qdir.exists() else []:
        pid = read_pid(pidfile)
        if pid and pid_alive(pid, "qemu-system"):
            stop_pid(pid, "qemu-system", sig=signal.SIGKILL)
            killed += 1
    return killed


def down(say: Say = _quiet) -> dict[str, Any]:
    """Remove everything the lab made; safe to run twice or after a crash."""
    lab = lab_dir()
    state = read_state() or {}
    hosts = _lab_hosts(lab)
    stop_controller(lab)
    for h in hosts:
        n = _kill_guests(h, lab)
        if n:
            say(f"{h.name}: stopped {n} guest(s)")
        hostd.stop(h, lab)
    for name, marker in (("console", "ferry.lab.console"), ("probe", "ferry.lab.probe")):
        pid = read_pid(lab / f"{name}.pid")
        if pid:
            stop_pid(pid, marker)
    if ceph.ceph_dir(lab).exists():
        say("stopping Ceph")
        ceph.down(lab)
    netns.delete_all()
    _remove_root_client(lab)
    for path in state.get("client_configs", []):
        Path(path).unlink(missing_ok=True)
    if lab.exists():
        shutil.rmtree(lab, ignore_errors=True)
    say("lab removed")
    return {"removed": True, "hosts": [h.name for h in hosts]}


def status() -> dict[str, Any]:
    lab = lab_dir()
    state = read_state()
    if state is None:
        return {"up": False, "healthy": False, "hosts": []}
    hosts = []
    healthy = True
    for name in state["hosts"]:
        h = lab_host(int(name[4:]))
        pid = read_pid(h.root(lab) / "libvirtd.pid")
        alive = bool(pid and pid_alive(pid, "libvirtd"))
        healthy &= alive
        hosts.append({"name": name, "address": h.address, "uri": h.uri,
                      "libvirtd_pid": pid, "libvirtd_running": alive})
    cpid = read_pid(lab / "controller" / "controller.pid")
    c_alive = bool(cpid and pid_alive(cpid, "ferry.cli.main serve"))
    lpid = read_pid(lab / "console.pid")
    l_alive = bool(lpid and pid_alive(lpid, "ferry.lab.console"))
    ppid = read_pid(lab / "probe.pid")
    p_alive = bool(ppid and pid_alive(ppid, "ferry.lab.probe"))
    storage = state.get("storage", "dir")
    ceph_ok = storage != "ceph" or ceph.healthy(lab)
    return {"up": True, "healthy": healthy and c_alive and l_alive and p_alive and ceph_ok,
            "hosts": hosts, "network_probe_running": p_alive,
            "storage": storage, "ceph": ceph.pids(lab) if storage == "ceph" else None,
            "controller": state["controller"], "controller_running": c_alive,
            "console_logger_running": l_alive, "virt_type": state.get("virt_type"),
            "accelerator_reason": state.get("accelerator_reason")}


def qemu_pid(host: str, vm: str) -> int | None:
    """PID of the QEMU that `host`'s libvirtd runs for `vm` (its libvirt PID file)."""
    h = lab_host(int(host[4:]))
    pid = read_pid(h.private_dir(lab_dir(), "/run/libvirt") / "qemu" / f"{vm}.pid")
    if pid and pid_alive(pid, "qemu-system") and f"guest={vm}" in cmdline(pid):
        return pid
    return None
