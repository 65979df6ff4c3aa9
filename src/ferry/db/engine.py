"""Database engine and schema upgrade (Alembic), SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

SCHEMA_DIR = Path(__file__).parent / "schema"  # Alembic: one file per schema version


def make_engine(url: str) -> Engine:
    """Parameters are never logged (a row may hold a key), not even in an error.  SQLite
    waits 10 s for a lock (writes are short; longer is an outage: see Database)."""
    if url.startswith("sqlite"):
        private_file(url)
        eng = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10},
                            hide_parameters=True)

        @event.listens_for(eng, "connect")
        def _pragmas(dbapi_conn: Any, _rec: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return eng
    return create_engine(url, pool_pre_ping=True, hide_parameters=True)


def private_file(url: str) -> None:
    """A SQLite database file readable by its owner only (SQLite gives its WAL and
    shared-memory files the same mode)."""
    path = make_url(url).database
    if not path or path == ":memory:":
        return
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


def upgrade(url: str) -> None:
    """Bring the schema to the newest Alembic revision."""
    if url.startswith("sqlite"):
        private_file(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(SCHEMA_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, "head")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
