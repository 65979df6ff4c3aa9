"""The controller's database: schema brought up to date at start, and units of work."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ferry.db.engine import make_engine, session_factory, upgrade
from ferry.errors import Conflict


class Database:
    def __init__(self, url: str) -> None:
        upgrade(url)
        self.engine = make_engine(url)
        self._sessions = session_factory(self.engine)

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed on success, rolled back on error."""
        s = self._sessions()
        try:
            yield s
            s.commit()
        except IntegrityError as exc:
            s.rollback()
            # a concurrent request made the same record first; no values are quoted back
            raise Conflict("a record with that name already exists (created concurrently)") \
                from exc
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    def dispose(self) -> None:
        self.engine.dispose()
