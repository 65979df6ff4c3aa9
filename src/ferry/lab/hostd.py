"""Lab hosts' libvirtd: configuration files, start, readiness, stop.

Each host runs a real libvirtd in its own network + mount + UTS namespace,
listening with TLS on its lab address only: its certificate (server and
client, for its name and address) and the lab's CA sit in its private
/etc/pki, where libvirt looks for them; a client is who the certificate the
lab's CA signed says (auth_tls none).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ferry.lab import pki
from ferry.lab.layout import (
    GUEST_HOST_BRIDGE,
    GUEST_NETWORK,
    LIBVIRT_TLS_PORT,
    PRIVATE_DIRS,
    LabHost,
    cache_dir,
)
from ferry.lab.procs import pid_alive, read_pid, stop_pid
from ferry.lab.run import LabError


def _libvirtd_conf(host: LabHost) -> str:
    return "\n".join([
        "listen_tcp = 0",
        "listen_tls = 1",
        f'listen_addr = "{host.address}"',
        f'tls_port = "{LIBVIRT_TLS_PORT}"',
        # a client is who its certificate (signed by the lab's CA) says
        'auth_tls = "none"',
        'auth_unix_rw = "none"',
        'auth_unix_ro = "none"',
        'unix_sock_group = "root"',
        f'host_uuid = "{host.host_uuid}"',
        'log_outputs = "3:stderr"',
        # a client that stops answering (a source's p2p migration connection across a
        # cut link) is dropped after ~8 s, not ~30 s: the destination then ends its
        # half-arrived guest and answers about it again sooner
        "keepalive_interval = 2",
        "keepalive_count = 3",
        "",
    ])


def _qemu_conf(host: LabHost, shared_dir: Path) -> str:
    # shared_filesystems: the lab's shared pool is one local directory that every
    # lab host really reaches; libvirt cannot detect that and would refuse to
    # live-migrate disks on it as "unsafe" otherwise.
    return "\n".join([
        'user = "root"',
        'group = "root"',
        "dynamic_ownership = 0",
        "remember_owner = 0",
        'security_driver = "none"',
        'stdio_handler = "file"',
        "namespaces = []",
        "cgroup_controllers = []",
        f'migration_address = "{host.address}"',
        f'migration_host = "{host.address}"',
        f'shared_filesystems = [ "{shared_dir}" ]',
        # a p2p migration's connection to the destination is declared broken after
        # ~8 s without an answer (libvirt's default ~30 s): the lab's link cuts are
        # seen sooner (the tests that cut a link wait for it)
        "keepalive_interval = 2",
        "keepalive_count = 3",
        "",
    ])


def prepare(host: LabHost, lab: Path, shared_dir: Path, ca: pki.Authority) -> None:
    """Write the host's private directories, certificates and config; keeps its
    capability cache."""
    root = host.root(lab)
    for path in PRIVATE_DIRS:
        host.private_dir(lab, path).mkdir(parents=True, exist_ok=True)
    pair = pki.issue(ca, host.name, dns=(host.name,), ips=(host.address,), server=True,
                     client=True)
    etc_pki = host.private_dir(lab, "/etc/pki")
    install_certificates(etc_pki, ca, pair)
    # QEMU's own x509 directory (qemu.conf's default_tls_x509_cert_dir): what an
    # encrypted migration stream (VIR_MIGRATE_TLS) uses on both ends
    qemu = etc_pki / "qemu"
    qemu.mkdir(parents=True, exist_ok=True)
    (qemu / "ca-cert.pem").write_bytes(ca.cert_pem)
    for role in ("server", "client"):
        pki.write_pair(pair, qemu / f"{role}-cert.pem", qemu / f"{role}-key.pem")
    host.console_dir(lab).mkdir(parents=True, exist_ok=True)
    etc = host.private_dir(lab, "/etc/libvirt")
    (etc / "qemu.conf").write_text(_qemu_conf(host, shared_dir))
    (etc / "libvirt.conf").write_text("")
    # the guests' network, started by libvirtd itself (autostart) on the host's guest
    # bridge, which the lab created before
    nets = etc / "qemu" / "networks"
    (nets / "autostart").mkdir(parents=True, exist_ok=True)
    (nets / f"{GUEST_NETWORK}.xml").write_text(
        f"<network><name>{GUEST_NETWORK}</name><forward mode='bridge'/>"
        f"<bridge name='{GUEST_HOST_BRIDGE}'/></network>\n")
    link = nets / "autostart" / f"{GUEST_NETWORK}.xml"
    if not link.is_symlink():
        link.symlink_to(f"/etc/libvirt/qemu/networks/{GUEST_NETWORK}.xml")
    (root / "libvirtd.conf").write_text(_libvirtd_conf(host))
    host_cache(host).mkdir(parents=True, exist_ok=True)


def install_certificates(etc_pki: Path, ca: pki.Authority, pair: pki.Pair,
                         server: bool = True) -> list[Path]:
    """The CA and `pair` where libvirt looks for them under `etc_pki` (/etc/pki): as
    a client (clientcert.pem) and, if `server`, as a server (servercert.pem)."""
    ca_file = etc_pki / "CA" / "cacert.pem"
    ca_file.parent.mkdir(parents=True, exist_ok=True)
    ca_file.write_bytes(ca.cert_pem)
    made = [ca_file]
    for role in ("client", "server") if server else ("client",):
        cert = etc_pki / "libvirt" / f"{role}cert.pem"
        key = etc_pki / "libvirt" / "private" / f"{role}key.pem"
        pki.write_pair(pair, cert, key)
        made += [cert, key]
    return made


def host_cache(host: LabHost) -> Path:
    """Per-host libvirt cache kept across labs: saves QEMU's ~7 s capability probe."""
    return cache_dir() / "libvirt" / host.name


def start(host: LabHost, lab: Path, timeout: float = 10) -> int:
    """Start libvirtd in the host's namespaces, under its reaper (`hostexec`); return
    libvirtd's PID (the reaper writes it)."""
    root = host.root(lab)
    pidfile = root / "libvirtd.pid"
    pid = read_pid(pidfile)
    if pid and pid_alive(pid, "libvirtd"):
        return pid
    pidfile.unlink(missing_ok=True)
    log = open(root / "libvirtd.log", "ab")  # noqa: SIM115 - handed to the child
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen(
        ["ip", "netns", "exec", host.netns, "unshare", "--mount", "--uts",
         "--propagation", "private", "--", sys.executable, "-m", "ferry.lab.hostexec",
         host.name, str(root), str(host_cache(host))],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, env=env)
    log.close()
    (root / "reaper.pid").write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + timeout
    while (pid := read_pid(pidfile)) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = (root / "libvirtd.log").read_text(errors="replace")[-2000:]
            raise LabError(f"libvirtd on {host.name} did not start:\n{tail}")
        time.sleep(0.02)
    return pid


def wait_ready(host: LabHost, lab: Path, timeout: float = 60) -> None:
    """Wait until libvirtd accepts connections on the host's address."""
    import libvirt  # lab setup only; the engine reaches hosts through hypervisor/

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        pid = read_pid(host.root(lab) / "libvirtd.pid")
        if not pid or not pid_alive(pid):
            tail = (host.root(lab) / "libvirtd.log").read_text(errors="replace")[-2000:]
            raise LabError(f"libvirtd on {host.name} exited:\n{tail}")
        try:
            conn = libvirt.open(host.uri)
            conn.getVersion()
            conn.close()
            return
        except libvirt.libvirtError as exc:
            last = str(exc)
            time.sleep(0.2)
    raise LabError(f"libvirtd on {host.name} not ready after {timeout:.0f}s: {last}")


def stop(host: LabHost, lab: Path) -> None:
    """Stop the host's libvirtd (guests must be destroyed first); its reaper exits
    with it (stopped too if it lingers)."""
    root = host.root(lab)
    for name, marker in (("libvirtd.pid", "libvirtd"), ("reaper.pid", "ferry.lab.hostexec")):
        pid = read_pid(root / name)
        if pid:
            stop_pid(pid, marker, sig=signal.SIGTERM)
        (root / name).unlink(missing_ok=True)
