"""The controller's database: schema brought up to date at start, units of work, and
what happens while it does not answer.

A database that stops answering (PostgreSQL restarted, its host unreachable,
a SQLite file locked for longer than the busy timeout) is `DatabaseUnavailable`,
a 503 to API callers.  Work already under way does not stop for it: the
migration workers write through `durably`, which tries again (backing off to
every 10 s) until the database is back or `outage_s` has passed; the job on
the hosts goes on meanwhile and its samples and events wait in memory
(`MigrationStore`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import TypeVar

from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from ferry.clock import Clock
from ferry.db.engine import make_engine, session_factory, upgrade
from ferry.errors import Conflict, DatabaseUnavailable

T = TypeVar("T")
log = logging.getLogger("ferry.database")

FIRST_GAP_S = 1.0
MAX_GAP_S = 10.0


class Database:
    def __init__(self, url: str, outage_s: float = 3600.0) -> None:
        upgrade(url)
        self.engine = make_engine(url)
        self._sessions = session_factory(self.engine)
        self.outage_s = outage_s

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
        except (OperationalError, InterfaceError) as exc:
            with contextlib.suppress(Exception):  # the connection may be gone already
                s.rollback()
            raise DatabaseUnavailable("the database does not answer: "
                                      f"{type(exc.orig).__name__}") from exc
        except BaseException:
            s.rollback()
            raise
        finally:
            with contextlib.suppress(Exception):
                s.close()

    def durably(self, work: Callable[[], T], clock: Clock, what: str) -> T:
        """`work` (its own units of work), again and again while the database does not
        answer, for up to `outage_s`; then the last `DatabaseUnavailable` is raised."""
        gap, deadline, said = FIRST_GAP_S, clock.monotonic() + self.outage_s, False
        while True:
            try:
                result = work()
            except DatabaseUnavailable as exc:
                if clock.monotonic() + gap > deadline:
                    log.error("database still unavailable after %.0f s (%s): giving up",
                              self.outage_s, what)
                    raise
                if not said:
                    log.warning("%s (%s): trying again until it answers", exc.message, what)
                    said = True
                clock.sleep(gap)
                gap = min(2 * gap, MAX_GAP_S)
                continue
            if said:
                log.warning("database answers again (%s)", what)
            return result

    def dispose(self) -> None:
        self.engine.dispose()
