"""Controller settings, read from a JSON file (the lab writes one)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from pydantic import BaseModel, Field, model_validator
from sqlalchemy import make_url


def _loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: nothing outside this machine reaches it."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class GuestImage(BaseModel):
    """Kernel + initramfs that `vm create` boots, at paths every host reads."""

    kernel: str
    initrd: str


class Settings(BaseModel):
    db_url: str = "sqlite:///ferry.db"
    listen_host: str = "127.0.0.1"
    listen_port: int = 8470
    token: str = Field(min_length=16)
    boot_pool: str = "shared"  # where `vm create` puts boot disks unless told otherwise
    guest_image: GuestImage | None = None
    console_dir: str = "/var/lib/libvirt/ferry-console"
    # the NIC `vm create` gives a guest unless told: a libvirt network NAME,
    # "bridge:BR", or "" for none; and the subnet whose addresses guests give their NIC
    # (the lab's guest segment); "" gives none
    guest_network: str = ""
    guest_subnet: str = ""
    # Where heartbeat logs of guests show up (lab: the console logger's files).
    heartbeat_glob: str | None = None
    reconcile_interval_s: float = 15.0
    # a migration gives up (or forces) after per-GiB x guest RAM, at least the minimum
    migration_timeout_min_s: float = 30.0
    migration_timeout_per_gib_s: float = 300.0
    # how many migrations run at once (more wait, queued): see docs/architecture.md
    migrations_per_source: int = Field(2, ge=1, le=64)
    migrations_per_destination: int = Field(2, ge=1, le=64)
    migrations_per_cluster: int = Field(4, ge=1, le=1024)
    # resume a post-copy that broke without being asked (off: libvirt 11.3 crashed the
    # destination's daemon on POSTCOPY_RESUME in our lab; `ferry migration recover` asks)
    postcopy_auto_resume: bool = False
    # compress a migration's stream (zstd over two channels) where its guest's pages
    # compress and pre-copy alone finishes (docs/drain.md); off: every stream in clear
    compress_streams: bool = True
    # memory of a lab guest its workload may not take (kernel, initramfs), plus 1/32
    # of its memory (the kernel's page tables grow with it): bench/results/guest_memory.md
    guest_reserved_mib: int = Field(72, ge=0, le=4096)
    # how long migration workers wait for a database that stopped answering (then give
    # up; a restart's recovery settles what they were doing)
    database_outage_s: float = Field(3600.0, ge=0, le=86_400)
    # the key that seals stored secrets (cephx keys); default: beside a SQLite database
    secret_key_file: str | None = None
    # HTTPS for the API: a certificate (chain) and its key, both or neither; with a
    # client CA every client must also present a certificate it signed (mutual TLS).
    # Plain HTTP is served on a loopback address only, unless allow_plain_http says
    # the network in between is trusted.
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None
    allow_plain_http: bool = False
    # a second token that reads /metrics only (Prometheus' scrape config holds it, not
    # the API token); "" = /metrics takes the API token only
    metrics_token: str = Field("", pattern=r"^$|^.{16,}$")

    @model_validator(mode="after")
    def _tls(self) -> Settings:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("settings: tls_cert_file and tls_key_file go together")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ValueError("settings: tls_client_ca_file needs tls_cert_file and "
                             "tls_key_file (mutual TLS is TLS first)")
        if not self.tls_cert_file and not self.allow_plain_http and \
                not _loopback(self.listen_host):
            raise ValueError(f"settings: the API would listen on {self.listen_host} in "
                             "plain HTTP (the token would cross the network in clear): set "
                             "tls_cert_file and tls_key_file, or allow_plain_http")
        return self

    def secret_key_path(self) -> Path:
        if self.secret_key_file:
            return Path(self.secret_key_file)
        url = make_url(self.db_url)
        if url.drivername.startswith("sqlite") and url.database not in (None, "", ":memory:"):
            return Path(url.database).resolve().parent / "secret.key"
        raise ValueError("settings: secret_key_file is required with this database (where "
                         "the controller's key for stored secrets lives, e.g. "
                         "/etc/ferry/secret.key)")

    @classmethod
    def load(cls, path: Path) -> Settings:
        return cls.model_validate(json.loads(path.read_text()))
