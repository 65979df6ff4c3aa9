"""Drains in the database: a drain's request, its moves (as planned, and what became
of each) and its state, read and written whole."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from ferry.clock import Clock
from ferry.db.models import DrainRow, HostRow
from ferry.errors import Conflict, NotFound
from ferry.service.database import Database

UNFINISHED = ("planning", "running", "cancelling")
FINAL = ("completed", "failed", "cancelled")


def _ms(a: datetime | None, b: datetime | None) -> int | None:
    if a is None or b is None:
        return None
    return round((aware(b) - aware(a)).total_seconds() * 1000)


def _planned(moves: list[dict[str, Any]], blocked: list[dict[str, str]], eta_ms: int) -> str:
    return f"{len(moves)} moves, {len(blocked)} VMs stay, ETA {eta_ms / 1000:.1f} s"


def aware(t: datetime) -> datetime:
    """SQLite hands back naive datetimes; they were stored as UTC."""
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def as_dict(r: DrainRow, now: datetime) -> dict[str, Any]:
    """A drain as the API and `ferry drain show --json` give it."""
    return {"id": r.id, "host": r.host, "state": r.state, "request": r.request,
            "moves": r.moves, "blocked": r.blocked, "events": r.events or [],
            "eta_ms": r.eta_ms,
            "planned_eta_ms": r.planned_eta_ms, "error": r.error,
            "cancel_requested": r.cancel_requested,
            "created_at": aware(r.created_at).isoformat(),
            "started_at": aware(r.started_at).isoformat() if r.started_at else None,
            "finished_at": aware(r.finished_at).isoformat() if r.finished_at else None,
            "elapsed_ms": _ms(r.started_at, r.finished_at or now)}


class DrainStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db, self.clock = db, clock

    def create(self, host: str, request: dict[str, Any], moves: list[dict[str, Any]],
               blocked: list[dict[str, str]], eta_ms: int | None) -> int:
        """Record a drain and put its host in maintenance, unless another drain of the
        same host is unfinished.  Without an ETA it is `planning`: its guests are being
        measured (`planned` stores the plan)."""
        with self.db.session() as s:
            busy = s.scalar(select(DrainRow).where(DrainRow.host == host,
                                                   DrainRow.state.in_(UNFINISHED)))
            if busy is not None:
                raise Conflict(f"host {host} is already being drained (drain {busy.id})",
                               {"drain": busy.id})
            now = self.clock.now()
            if eta_ms is None:
                first = {"at": now.isoformat(), "kind": "planning", "message": (
                    f"{len(moves)} VMs placed, {len(blocked)} stay; measuring the guests "
                    "(a quiet one starts moving at once)")}
            else:
                first = {"at": now.isoformat(), "kind": "planned",
                         "message": _planned(moves, blocked, eta_ms)}
            row = DrainRow(host=host, state="running" if eta_ms is not None else "planning",
                           request=request, moves=moves, blocked=blocked, eta_ms=eta_ms,
                           planned_eta_ms=eta_ms, created_at=now, started_at=now,
                           events=[first])
            s.add(row)
            if not request.get("return"):
                s.execute(update(HostRow).where(HostRow.name == host)
                          .values(maintenance=True))
            s.flush()
            return int(row.id)

    def planned(self, did: int, moves: list[dict[str, Any]], blocked: list[dict[str, str]],
                eta_ms: int, planned_eta_ms: int, transfers: int | None = None) -> None:
        """A planning drain's plan: its moves, the VMs that stay, the ETA from now, the
        whole drain's predicted length (from its start, planning included) and how many
        moves transfer at once on a link (kept with the request: the runner and its
        link gate keep to it)."""
        with self.db.session() as s:
            r = s.get(DrainRow, did)
            assert r is not None
            r.request = {**r.request, "transfers": transfers}
            r.moves, r.blocked = [dict(m) for m in moves], list(blocked)
            r.eta_ms, r.planned_eta_ms = eta_ms, planned_eta_ms
            if r.state == "planning":
                r.state = "running"
            r.events = [*(r.events or []), {"at": self.clock.now().isoformat(),
                                            "kind": "planned",
                                            "message": _planned(moves, blocked,
                                                                planned_eta_ms)}]

    def get(self, did: int) -> dict[str, Any]:
        with self.db.session() as s:
            r = s.get(DrainRow, did)
            if r is None:
                raise NotFound(f"no drain {did}")
            return as_dict(r, self.clock.now())

    def all(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.db.session() as s:
            rows = s.scalars(select(DrainRow).order_by(DrainRow.id.desc()).limit(limit))
            return [as_dict(r, self.clock.now()) for r in rows]

    def unfinished(self) -> list[int]:
        with self.db.session() as s:
            return list(s.scalars(select(DrainRow.id).where(DrainRow.state.in_(UNFINISHED))))

    def save(self, did: int, moves: list[dict[str, Any]], eta_ms: int | None,
             state: str | None = None, error: str | None = None) -> None:
        with self.db.session() as s:
            r = s.get(DrainRow, did)
            assert r is not None
            r.moves = [dict(m) for m in moves]  # a new list: JSON columns compare by value
            r.eta_ms = eta_ms
            if error is not None:
                r.error = error
            if state is not None and r.state not in FINAL:
                r.state = state
                if state in FINAL:
                    r.finished_at = self.clock.now()

    def event(self, did: int, kind: str, message: str) -> None:
        with self.db.session() as s:
            r = s.get(DrainRow, did)
            if r is not None:
                r.events = [*(r.events or []), {"at": self.clock.now().isoformat(),
                                                "kind": kind, "message": message}]

    def request_cancel(self, did: int) -> None:
        with self.db.session() as s:
            r = s.get(DrainRow, did)
            if r is None:
                raise NotFound(f"no drain {did}")
            if r.state in FINAL:
                raise Conflict(f"drain {did} already {r.state}")
            r.cancel_requested = True

    def cancel_requested(self, did: int) -> bool:
        with self.db.session() as s:
            return bool(s.scalar(select(DrainRow.cancel_requested).where(DrainRow.id == did)))

    def last_of(self, host: str) -> dict[str, Any] | None:
        """The newest drain that emptied `host` (not a return to it)."""
        with self.db.session() as s:
            for r in s.scalars(select(DrainRow).where(DrainRow.host == host)
                               .order_by(DrainRow.id.desc())):
                if not r.request.get("return"):
                    return as_dict(r, self.clock.now())
        return None

    def set_maintenance(self, host: str, on: bool) -> None:
        with self.db.session() as s:
            res = s.execute(update(HostRow).where(HostRow.name == host)
                            .values(maintenance=on))
            if getattr(res, "rowcount", 0) != 1:
                raise NotFound(f"no host named {host!r}")
