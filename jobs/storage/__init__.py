"""Storage: every SQL statement of Tickler, the tables, the engine and the migrations.

The rooms above (the jobs, the shell) hold a ``Session`` as a unit of work and call the
functions of this package; they never build a query themselves (the ``sql`` contract of
``lint-imports`` fails the build when one does). These names are what they need to type it.
"""

from __future__ import annotations

from sqlalchemy import Engine as Engine
from sqlalchemy.exc import DBAPIError as DatabaseError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session as Session
from sqlalchemy.orm import sessionmaker

SessionFactory = sessionmaker[Session]

#: What a database that cannot be used right now raises: refused or lost connections, an
#: SQLite file that cannot be opened or stays locked, no pooled connection free in time.
#: A request that meets one is answered 503 (try again), not 500 (a bug).
UNAVAILABLE: tuple[type[Exception], ...] = (OperationalError, InterfaceError, PoolTimeout)

__all__ = ["UNAVAILABLE", "DatabaseError", "Engine", "Session", "SessionFactory"]
