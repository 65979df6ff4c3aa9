"""The FastAPI application: routes map 1:1 to use cases of `Services`.

Every route needs `Authorization: Bearer <token>`.  FerryError subclasses
become JSON errors `{"error": code, "message": ..., "details": {...}}` with
their HTTP status, defined once in ferry.errors; a host error that escaped
a use case is a 503, never a bare 500.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from ferry import __version__
from ferry.api import ui
from ferry.api.guard import Guard
from ferry.api.metrics import CONTENT_TYPE as METRICS_TYPE
from ferry.api.metrics import render
from ferry.api.schemas import (
    CpuModeSet,
    CpuPolicySet,
    DrainCreate,
    HostActivate,
    HostCreate,
    MigrationCreate,
    PoolCreate,
    VmCreate,
    VolumeCreate,
)
from ferry.domain.models import Host, Migration, Pool, Sample, Vm, Volume
from ferry.domain.vocab import VolumeFate
from ferry.errors import FerryError, Unavailable
from ferry.hypervisor.errors import HypervisorError
from ferry.service.drain_plan import DrainRequest
from ferry.service.wiring import Services

_bearer = HTTPBearer(auto_error=False)
Id = Annotated[int, Path(ge=1, le=2**63 - 1)]
_HTTP_CODES = {401: "auth", 404: "not_found", 405: "invalid", 413: "too_large"}


def _error(exc: FerryError) -> JSONResponse:
    return JSONResponse(status_code=exc.status, content={
        "error": exc.code, "message": exc.message, "details": exc.details})


def create_app(svc: Services, *, start_background: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if start_background:
            svc.start()
        yield
        svc.shutdown()

    # No unauthenticated schema or doc pages: /openapi.json is served below, with the token.
    app = FastAPI(title="Ferry", version=__version__, lifespan=lifespan, openapi_url=None,
                  docs_url=None, redoc_url=None)

    def auth(cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        if cred is None or not hmac.compare_digest(cred.credentials.encode(),
                                                   svc.settings.token.encode()):
            raise HTTPException(401, "missing or wrong API token",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(FerryError)
    async def ferry_error(_req: Request, exc: FerryError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(HypervisorError)
    async def host_error(_req: Request, exc: HypervisorError) -> JSONResponse:
        return _error(Unavailable(f"a host failed: {exc}"))

    @app.exception_handler(RequestValidationError)
    async def invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        # location and message only: never the input back (it may be a key)
        errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")),
                   "type": str(e.get("type", ""))} for e in exc.errors()]
        text = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors)
        return JSONResponse(status_code=422, content={
            "error": "invalid", "message": f"invalid request: {text}",
            "details": {"errors": errors}})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, headers=exc.headers, content={
            "error": _HTTP_CODES.get(exc.status_code, "error"), "message": str(exc.detail),
            "details": {}})

    app.add_middleware(Guard, token=svc.settings.token,
                       scrape_token=svc.settings.metrics_token, scrape_paths=("/metrics",),
                       public_paths=ui.PUBLIC_PATHS)
    app.include_router(ui.router)

    dep = [Depends(auth)]

    @app.get("/openapi.json", dependencies=dep, include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.get("/health", dependencies=dep)
    async def health() -> dict[str, str]:
        """On the event loop, not a worker thread: it answers even when every worker
        waits on a host."""
        return {"status": "ok", "version": __version__}

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        """Prometheus' text format (the Guard took the API or the scrape token)."""
        return Response(render(svc.metrics.snapshot), media_type=METRICS_TYPE)

    @app.get("/hosts", dependencies=dep)
    def list_hosts() -> list[Host]:
        return svc.hosts.list_hosts()

    @app.post("/hosts", dependencies=dep, status_code=201)
    def add_host(body: HostCreate) -> Host:
        return svc.hosts.add(body.name, body.uri, body.virt_type, body.migration_tls)

    @app.get("/hosts/{name}", dependencies=dep)
    def get_host(name: str) -> Host:
        return svc.hosts.get(name)

    @app.post("/hosts/{name}/refresh", dependencies=dep)
    def refresh_host(name: str) -> Host:
        return svc.hosts.refresh(name)

    @app.post("/hosts/{name}/drain", dependencies=dep)
    def drain_host(name: str, body: DrainCreate) -> dict[str, Any]:
        req = DrainRequest(name, tuple(body.to), body.max_parallel, body.link_mib_s,
                           body.max_downtime_ms, body.tls, body.compress)
        return svc.drains.plan(req) if body.dry_run else svc.drains.start(req)

    @app.post("/hosts/{name}/activate", dependencies=dep)
    def activate_host(name: str, body: HostActivate) -> dict[str, Any]:
        return svc.drains.activate(name, body.back, body.max_parallel)

    @app.get("/drains", dependencies=dep)
    def list_drains(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
        return svc.drains.drains.all(limit)

    @app.get("/drains/{did}", dependencies=dep)
    def get_drain(did: Id) -> dict[str, Any]:
        return svc.drains.drains.get(did)

    @app.post("/drains/{did}/cancel", dependencies=dep)
    def cancel_drain(did: Id) -> dict[str, Any]:
        return svc.drains.cancel(did)

    @app.get("/vms", dependencies=dep)
    def list_vms() -> list[Vm]:
        return svc.vms.list_vms()

    @app.post("/vms", dependencies=dep, status_code=201)
    def create_vm(body: VmCreate) -> Vm:
        return svc.vms.create(body.name, body.host, body.memory_mib, body.vcpus,
                              body.workload_dirty_mib_s, body.workload_wss_mib, body.wait,
                              body.boot_pool, [(d.pool, d.size_gib) for d in body.disks],
                              body.workload_fill, body.workload_pattern, body.network)

    @app.get("/vms/{name}", dependencies=dep)
    def get_vm(name: str) -> Vm:
        return svc.vms.get(name)

    @app.delete("/vms/{name}", dependencies=dep, status_code=204)
    def delete_vm(name: str, volumes: VolumeFate | None = None) -> None:
        svc.vms.delete(name, volumes)

    @app.get("/pools", dependencies=dep)
    def list_pools() -> list[Pool]:
        return svc.pools.list_pools()

    @app.post("/pools", dependencies=dep, status_code=201)
    def add_pool(body: PoolCreate) -> Pool:
        return svc.pools.add(body.name, body.kind, body.path, body.hosts, body.monitors,
                             body.rbd_pool, body.user, body.key)

    @app.get("/pools/{name}", dependencies=dep)
    def show_pool(name: str) -> dict[str, Any]:
        return svc.pools.status(name)

    @app.delete("/pools/{name}", dependencies=dep, status_code=204)
    def remove_pool(name: str) -> None:
        svc.pools.remove(name)

    @app.get("/volumes", dependencies=dep)
    def list_volumes(pool: str | None = None) -> list[Volume]:
        return svc.volumes.list_volumes(pool)

    @app.post("/pools/{pool}/volumes", dependencies=dep, status_code=201)
    def create_volume(pool: str, body: VolumeCreate) -> Volume:
        return svc.volumes.create(pool, body.name, body.size_gib, body.host, body.from_volume)

    @app.get("/pools/{pool}/volumes/{name}", dependencies=dep)
    def get_volume(pool: str, name: str) -> Volume:
        return svc.volumes.get(pool, name)

    @app.delete("/pools/{pool}/volumes/{name}", dependencies=dep, status_code=204)
    def delete_volume(pool: str, name: str) -> None:
        svc.volumes.delete(pool, name)

    @app.get("/migrations", dependencies=dep)
    def list_migrations(vm: str | None = None,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[Migration]:
        return svc.store.list_migrations(vm, limit)

    @app.post("/migrations", dependencies=dep, status_code=201)
    def start_migration(body: MigrationCreate) -> Migration:
        return svc.drains.migrate(body.vm, body.to, bandwidth_mib_s=body.bandwidth_mib_s,
                                  max_downtime_ms=body.max_downtime_ms, policy=body.policy,
                                  timeout_per_gib_s=body.timeout_per_gib_s,
                                  on_timeout=body.on_timeout, tls=body.tls,
                                  compress=body.compress)

    @app.get("/migrations/{mid}", dependencies=dep)
    def get_migration(mid: Id) -> Migration:
        return svc.store.get(mid)

    @app.get("/migrations/{mid}/samples", dependencies=dep)
    def get_samples(mid: Id, after_ms: Annotated[int, Query(ge=-1, le=2**62)] = -1
                    ) -> list[Sample]:
        return svc.store.samples(mid, after_ms)

    @app.post("/migrations/{mid}/cancel", dependencies=dep)
    def cancel_migration(mid: Id) -> Migration:
        return svc.migrations.cancel(mid)

    @app.post("/migrations/{mid}/recover", dependencies=dep)
    def recover_migration(mid: Id) -> Migration:
        return svc.migrations.resume_postcopy(mid)

    @app.get("/predict", dependencies=dep)
    def predict_migration(vm: str, to: str, bandwidth_mib_s: int | None = None,
                          max_downtime_ms: int | None = None) -> dict[str, Any]:
        return svc.migrations.predict(vm, to, bandwidth_mib_s, max_downtime_ms)

    @app.get("/cpu/baseline", dependencies=dep)
    def cpu_baseline(hosts: str | None = None) -> dict[str, Any]:
        names = [h for h in hosts.split(",") if h] if hosts else None
        return svc.cpu.baseline(names)

    @app.get("/cpu/mode", dependencies=dep)
    def cpu_mode_get() -> dict[str, str]:
        return {"mode": str(svc.cpu.get_mode())}

    @app.put("/cpu/mode", dependencies=dep)
    def cpu_mode_set(body: CpuModeSet) -> dict[str, str]:
        return {"mode": str(svc.cpu.set_mode(body.mode))}

    # the older name, for scripts written before the CPU mode had its own word
    @app.get("/cpu/policy", dependencies=dep, include_in_schema=False)
    def cpu_policy_get() -> dict[str, str]:
        return {"policy": str(svc.cpu.get_mode())}

    @app.put("/cpu/policy", dependencies=dep, include_in_schema=False)
    def cpu_policy_set(body: CpuPolicySet) -> dict[str, str]:
        return {"policy": str(svc.cpu.set_mode(body.policy))}

    @app.get("/cpu/report", dependencies=dep)
    def cpu_report() -> list[dict[str, Any]]:
        return svc.cpu.report()

    @app.get("/cpu/check", dependencies=dep)
    def cpu_check(vm: str, to: str) -> dict[str, Any]:
        return svc.cpu.check(vm, to)

    return app
