"""Request bodies.  Responses are the domain dataclasses, serialised by FastAPI."""

from __future__ import annotations

from pydantic import BaseModel, Field


class HostCreate(BaseModel):
    name: str
    uri: str
    virt_type: str = "auto"


class VmCreate(BaseModel):
    name: str
    host: str
    memory_mib: int = Field(256)
    vcpus: int = 1
    workload_dirty_mib_s: int = 0
    workload_wss_mib: int | None = None
    wait: bool = True


class MigrationCreate(BaseModel):
    vm: str
    to: str
    bandwidth_mib_s: int | None = None
    max_downtime_ms: int | None = None
    policy: str = "auto"
    timeout_per_gib_s: float | None = None
    on_timeout: str = "abort"


class CpuPolicySet(BaseModel):
    policy: str
