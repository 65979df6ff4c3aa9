"""A real single-node Ceph cluster for the lab (`ferry lab up --storage ceph`).

One monitor, one manager and one bluestore OSD on a sparse file, cephx on,
pool size 1.  The daemons run in their own network namespace with one lab
address on the lab bridge: the lab hosts' libvirtd and QEMU live in other
namespaces and could not reach the root namespace's loopback, and nothing
outside this machine can reach the bridge.  Bootstrapped by hand with the
Ceph tools (as the Ceph manual deployment guide does); no cephadm, no
containers, nothing under /etc/ceph.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferry.lab import netns
from ferry.lab.layout import NETNS_PREFIX, VETH_PREFIX
from ferry.lab.procs import pid_alive, read_pid, stop_pid
from ferry.lab.run import LabError, run, write_private

NETNS = f"{NETNS_PREFIX}ceph"
VETH = f"{VETH_PREFIX}c"
ADDRESS = "198.18.0.2"
MON_PORT = 6789
RBD_POOL = "rbd"
CLIENT = "ferry"  # the cephx user libvirt and QEMU use
OSD_BYTES = 4 * 1024**3
# Daemons in the order they start; they stop in reverse (OSD before the monitor).
DAEMONS = (("mon", "a"), ("mgr", "x"), ("osd", "0"))


@dataclass(frozen=True)
class CephInfo:
    """What a client needs: monitors, pool, cephx user and key."""

    monitors: list[str]
    pool: str
    user: str
    key: str
    conf: str  # admin config on the controller's machine (lab only)

    def as_dict(self) -> dict[str, Any]:
        return {"monitors": self.monitors, "pool": self.pool, "user": self.user,
                "key": self.key, "conf": self.conf}


def ceph_dir(lab: Path) -> Path:
    return lab / "ceph"


def _conf(d: Path, fsid: str) -> str:
    return f"""[global]
fsid = {fsid}
mon_host = [v2:{ADDRESS}:3300,v1:{ADDRESS}:{MON_PORT}]
public_network = {ADDRESS}/32
cluster_network = {ADDRESS}/32
ms_bind_ipv6 = false
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
auth_allow_insecure_global_id_reclaim = false
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_warn_on_pool_no_redundancy = false
mon_data_avail_warn = 2
mon_data_avail_crit = 1
run_dir = {d}/run
admin_socket = {d}/run/$name.asok
pid_file = {d}/run/$name.pid
log_file = {d}/log/$name.log
mon_data = {d}/mon/$cluster-$id
mgr_data = {d}/mgr/$cluster-$id
osd_data = {d}/osd/$cluster-$id
osd_objectstore = bluestore
bluestore_block_create = true
bluestore_block_size = {OSD_BYTES}
osd_memory_target = 939524096
mgr_initial_modules =

[client]
keyring = {d}/ceph.client.admin.keyring
"""


def ceph(d: Path, *args: str, timeout: float = 60) -> str:
    """Run the `ceph` admin CLI against the lab cluster; stdout."""
    return run(["ceph", "--conf", str(d / "ceph.conf"), "--connect-timeout", "10", *args],
               timeout=timeout).stdout


def _in_ns(*args: str) -> list[str]:
    return ["ip", "netns", "exec", NETNS, *args]


def _spawn(d: Path, kind: str, ident: str) -> int:
    """Start one daemon in the foreground (so its PID is ours) inside the namespace."""
    log = open(d / "log" / f"{kind}.{ident}.out", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        _in_ns(f"ceph-{kind}", "-f", "--conf", str(d / "ceph.conf"), "-i", ident),
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    log.close()
    (d / f"{kind}.{ident}.pid").write_text(f"{proc.pid}\n")
    return proc.pid


def _check_alive(d: Path, kind: str, ident: str) -> None:
    pid = read_pid(d / f"{kind}.{ident}.pid")
    # no command-line check here: mid-exec (ip netns exec -> ceph-*) it can read empty
    if not pid or not pid_alive(pid):
        tail = ""
        for log in (d / "log" / f"{kind}.{ident}.out", d / "log" / f"{kind}.{ident}.log"):
            if log.exists():
                tail += log.read_text(errors="replace")[-1500:]
        raise LabError(f"ceph-{kind} {ident} exited:\n{tail}")


def up(lab: Path) -> CephInfo:
    """Create and start the cluster; wait until every PG is active+clean."""
    d = ceph_dir(lab)
    if (d / "info.json").exists() and healthy(lab):
        return read_info(lab)
    down(lab)
    shutil.rmtree(d, ignore_errors=True)
    for sub in ("run", "log", "mon/ceph-a", "mgr/ceph-x", "osd/ceph-0"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    fsid = str(uuid.uuid4())
    (d / "ceph.conf").write_text(_conf(d, fsid))
    netns.create_netns(NETNS, VETH, ADDRESS)

    mon_kr, admin_kr = d / "mon.keyring", d / "ceph.client.admin.keyring"
    run(["ceph-authtool", "--create-keyring", str(mon_kr), "--gen-key", "-n", "mon.",
         "--cap", "mon", "allow *"])
    run(["ceph-authtool", "--create-keyring", str(admin_kr), "--gen-key", "-n", "client.admin",
         "--cap", "mon", "allow *", "--cap", "osd", "allow *", "--cap", "mgr", "allow *",
         "--cap", "mds", "allow *"])
    run(["ceph-authtool", str(mon_kr), "--import-keyring", str(admin_kr)])
    monmap = d / "monmap"
    run(["monmaptool", "--create", "--fsid", fsid, "--addv", "a",
         f"[v2:{ADDRESS}:3300,v1:{ADDRESS}:{MON_PORT}]", str(monmap)])
    run(_in_ns("ceph-mon", "--conf", str(d / "ceph.conf"), "--mkfs", "-i", "a", "--monmap",
         str(monmap), "--keyring", str(mon_kr)))
    _spawn(d, "mon", "a")
    _wait(d, lambda: bool(ceph(d, "mon", "stat", timeout=20)), "the monitor", ("mon", "a"))

    ceph(d, "auth", "get-or-create", "mgr.x", "mon", "allow profile mgr", "osd", "allow *",
         "mds", "allow *", "-o", str(d / "mgr" / "ceph-x" / "keyring"))
    _spawn(d, "mgr", "x")

    osd_uuid = str(uuid.uuid4())
    osd_id = ceph(d, "osd", "new", osd_uuid).strip()
    if osd_id != "0":
        raise LabError(f"expected OSD id 0, got {osd_id!r}")
    osd_dir = d / "osd" / "ceph-0"
    run(_in_ns("ceph-osd", "--conf", str(d / "ceph.conf"), "-i", "0", "--mkfs", "--mkkey",
               "--no-mon-config", "--osd-uuid", osd_uuid), timeout=120)
    ceph(d, "auth", "add", "osd.0", "osd", "allow *", "mon", "allow profile osd",
         "mgr", "allow profile osd", "-i", str(osd_dir / "keyring"))
    _spawn(d, "osd", "0")

    _wait(d, lambda: _osd_up(d), "the OSD", ("osd", "0"))
    ceph(d, "osd", "pool", "create", RBD_POOL, "8")
    ceph(d, "osd", "pool", "application", "enable", RBD_POOL, "rbd")
    key = ceph(d, "auth", "get-or-create-key", f"client.{CLIENT}", "mon", "profile rbd",
               "osd", f"profile rbd pool={RBD_POOL}", "mgr", f"profile rbd pool={RBD_POOL}").strip()
    _wait(d, lambda: _clean(d), "all placement groups active+clean", ("osd", "0"), 120)
    info = CephInfo(monitors=[f"{ADDRESS}:{MON_PORT}"], pool=RBD_POOL, user=CLIENT, key=key,
                    conf=str(d / "ceph.conf"))
    write_private(d / "info.json", json.dumps(info.as_dict(), indent=2))
    return info


def _wait(d: Path, ready: Any, what: str, daemon: tuple[str, str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        _check_alive(d, *daemon)
        try:
            if ready():
                return
        except LabError as exc:
            last = str(exc)
        time.sleep(0.5)
    raise LabError(f"Ceph: waited {timeout:.0f}s for {what}. {last}")


def _osd_up(d: Path) -> bool:
    stat = json.loads(ceph(d, "osd", "stat", "--format", "json"))
    return int(stat.get("num_up_osds", 0)) >= 1 and int(stat.get("num_in_osds", 0)) >= 1


def _clean(d: Path) -> bool:
    st = json.loads(ceph(d, "status", "--format", "json"))
    pgs = st.get("pgmap", {})
    total = int(pgs.get("num_pgs", 0))
    clean = sum(int(s.get("count", 0)) for s in pgs.get("pgs_by_state", [])
                if s.get("state_name") == "active+clean")
    return bool(st.get("mgrmap", {}).get("available")) and total > 0 and clean == total


def read_info(lab: Path) -> CephInfo:
    raw = json.loads((ceph_dir(lab) / "info.json").read_text())
    return CephInfo(**raw)


def pids(lab: Path) -> dict[str, int | None]:
    d = ceph_dir(lab)
    out: dict[str, int | None] = {}
    for kind, ident in DAEMONS:
        pid = read_pid(d / f"{kind}.{ident}.pid")
        out[f"{kind}.{ident}"] = pid if pid and pid_alive(pid, f"ceph-{kind}") else None
    return out


def healthy(lab: Path) -> bool:
    return all(pids(lab).values())


def osd_pid(lab: Path) -> int | None:
    return pids(lab).get("osd.0")


def down(lab: Path) -> None:
    """Stop the daemons (OSD first) by their recorded PIDs and remove the namespace.

    The data directory goes with the lab directory."""
    d = ceph_dir(lab)
    for kind, ident in reversed(DAEMONS):
        pid = read_pid(d / f"{kind}.{ident}.pid")
        if pid:
            stop_pid(pid, f"ceph-{kind}", timeout=15)
        (d / f"{kind}.{ident}.pid").unlink(missing_ok=True)
    netns.delete_netns(NETNS, VETH)
