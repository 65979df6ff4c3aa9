"""SQLAlchemy tables.  Schema changes go through Alembic (Alembic, db/schema/versions)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class HostRow(Base):
    __tablename__ = "hosts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    uri: Mapped[str] = mapped_column(String(512))
    state: Mapped[str] = mapped_column(String(16))
    virt_type: Mapped[str] = mapped_column(String(16))
    cpu_model: Mapped[str] = mapped_column(String(64), default="")
    cpu_vendor: Mapped[str] = mapped_column(String(64), default="")
    cpu_xml: Mapped[str] = mapped_column(Text, default="")  # host-model for virt_type
    host_cpu_xml: Mapped[str] = mapped_column(Text, default="")  # as `virsh capabilities`
    cpu_models: Mapped[list[str]] = mapped_column(JSON, default=list)  # usable named models
    cpus: Mapped[int] = mapped_column(Integer, default=0)
    memory_total_mib: Mapped[int] = mapped_column(Integer, default=0)
    memory_free_mib: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # set by a drain (or `ferry host drain`), cleared by `ferry host activate`
    maintenance: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # {"networks": {name: active} | None, "interfaces": {name: type} | None}; None: not read
    networks: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # registered with QEMU migration certificates: streams to and from it are encrypted
    migration_tls: Mapped[bool] = mapped_column(Boolean, default=False,
                                                server_default=false())
    # the host's CPU counters at the last reconcile that read them, and how busy it was
    # (0-1, all its CPUs) since the reading before: what earlier migrations teach is
    # read from those that ran at a like load
    cpu_busy_ns: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    cpu_total_ns: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    cpu_busy: Mapped[float | None] = mapped_column(Float, nullable=True)


class VmRow(Base):
    __tablename__ = "vms"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    uuid: Mapped[str | None] = mapped_column(String(36), nullable=True)  # libvirt's
    host: Mapped[str | None] = mapped_column(String(64), nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    memory_mib: Mapped[int] = mapped_column(Integer)
    vcpus: Mapped[int] = mapped_column(Integer)
    cpu_model: Mapped[str] = mapped_column(String(64), default="")
    cpu_xml: Mapped[str] = mapped_column(Text, default="")
    disks: Mapped[list[str]] = mapped_column(JSON, default=list)
    # [{"kind", "source", "mac"}] as its domain XML says
    nics: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list, server_default="[]")
    address: Mapped[str] = mapped_column(String(64), default="", server_default="")  # lab's
    # up hosts that cannot run this VM's CPU, with what each lacks
    cpu_blocked: Mapped[dict[str, list[str]]] = mapped_column(JSON, default=dict)
    workload_dirty_mib_s: Mapped[int] = mapped_column(Integer, default=0)
    workload_wss_mib: Mapped[int] = mapped_column(Integer, default=0)
    workload_pattern: Mapped[str] = mapped_column(String(16), default="uniform")
    managed: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PoolRow(Base):
    """A storage pool Ferry defines on hosts (dir-shared, local or rbd)."""

    __tablename__ = "pools"
    # two pools on one directory would hand out the same files twice
    __table_args__ = (Index("uq_pools_path", "path", unique=True,
                            sqlite_where=text("path != ''"),
                            postgresql_where=text("path != ''")),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(512), default="")  # dir-shared, local
    hosts: Mapped[list[str]] = mapped_column(JSON, default=list)  # [] = every host
    monitors: Mapped[list[str]] = mapped_column(JSON, default=list)  # rbd: "host:port"
    rbd_pool: Mapped[str] = mapped_column(String(128), default="")
    user: Mapped[str] = mapped_column(String(64), default="")
    key: Mapped[str] = mapped_column(Text, default="")  # cephx key; never returned by the API
    secret_uuid: Mapped[str] = mapped_column(String(36), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class VolumeRow(Base):
    """A volume Ferry created; `host` is where a local volume lives now."""

    __tablename__ = "volumes"
    __table_args__ = (UniqueConstraint("pool", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pool: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(64))
    capacity_bytes: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(String(1024))
    host: Mapped[str | None] = mapped_column(String(64), nullable=True)
    vm: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    target: Mapped[str] = mapped_column(String(16), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SettingRow(Base):
    """Cluster-wide settings changed at run time (e.g. the CPU mode)."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


UNFINISHED_SQL = "state IN ('queued', 'prechecking', 'running', 'postcopy-paused')"


class MigrationRow(Base):
    __tablename__ = "migrations"
    # one unfinished migration per VM, held by the database itself: it holds across
    # several controllers on one PostgreSQL
    __table_args__ = (Index("uq_migrations_active_vm", "vm", unique=True,
                            sqlite_where=text(UNFINISHED_SQL),
                            postgresql_where=text(UNFINISHED_SQL)),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vm: Mapped[str] = mapped_column(String(64), index=True)
    # which VM exactly (a name can be reused) and its size then: history is per identity
    vm_uuid: Mapped[str | None] = mapped_column(String(36), nullable=True)
    memory_mib: Mapped[int | None] = mapped_column(Integer, nullable=True)
    source: Mapped[str] = mapped_column(String(64))
    destination: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), index=True)
    bandwidth_mib_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_downtime_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # the link's speed as the operator gave it (a drain's --link): predictions use it
    # instead of history; not a cap
    link_mib_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    total_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    downtime_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    transferred_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    disk_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # block copy
    rounds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # libvirt's set-up of a staged job (before its release), as its trickle showed it
    setup_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    wall_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    policy: Mapped[str] = mapped_column(String(16), default="precopy")
    # asked: True --tls, False --no-tls, None the default; done: the stream was encrypted
    tls_requested: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    encrypted: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    # asked: True --compress, False --no-compress, None where it pays; done: the stream
    # went through zstd (its round 1 then says nothing of the guest's pages)
    compress_requested: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    compressed: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    predicted_converges: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    predicted_total_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    predicted_downtime_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    measured_rate_mib_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    measured_wss_mib: Mapped[float | None] = mapped_column(Float, nullable=True)
    # how busy the source host was (its CPUs, 0-1) when the job started
    source_busy: Mapped[float | None] = mapped_column(Float, nullable=True)
    # as asked and as planned, so a queued migration starts, and a restarted controller
    # follows the job, with the same limits
    timeout_per_gib_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    timeout_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    on_timeout: Mapped[str] = mapped_column(String(16), default="abort")
    # the policy as planned (PolicyConfig.as_dict), resumed after a restart
    plan: Mapped[dict[str, object] | None] = mapped_column(JSON, nullable=True)
    # asked through any controller; the one running the job aborts it
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False,
                                                   server_default=false())
    # volumes a block migration copies: [{"pool": ..., "volume": ...}]
    copies: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)


class SampleRow(Base):
    __tablename__ = "samples"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    migration_id: Mapped[int] = mapped_column(ForeignKey("migrations.id", ondelete="CASCADE"),
                                              index=True)
    t_ms: Mapped[int] = mapped_column(Integer)
    iteration: Mapped[int] = mapped_column(Integer)
    memory_total_bytes: Mapped[int] = mapped_column(BigInteger)
    memory_processed_bytes: Mapped[int] = mapped_column(BigInteger)
    memory_remaining_bytes: Mapped[int] = mapped_column(BigInteger)
    dirty_rate_bytes_s: Mapped[int] = mapped_column(BigInteger)
    bandwidth_bytes_s: Mapped[int] = mapped_column(BigInteger)
    expected_downtime_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    throttle_pct: Mapped[int] = mapped_column(Integer, default=0)


class EventRow(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    migration_id: Mapped[int] = mapped_column(ForeignKey("migrations.id", ondelete="CASCADE"),
                                              index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)


class DrainRow(Base):
    """A host being emptied: its plan's moves and their fate (JSON: a drain is read
    and written whole, by the one controller running it)."""

    __tablename__ = "drains"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    request: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    moves: Mapped[list[dict[str, object]]] = mapped_column(JSON, default=list)
    blocked: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    # what happened, in order: [{"at", "kind", "message"}]
    events: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    eta_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    planned_eta_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False,
                                                   server_default=false())
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
