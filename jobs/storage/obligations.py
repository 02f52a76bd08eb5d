"""The ``obligations`` table: what each person owes each occurrence of a program.

Every function runs in the caller's session and transaction and never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from calendars.notices import ObligationState
from jobs.storage.db import Obligation, ObligationKind, dialect_name

TABLE = cast(Table, Obligation.__table__)


def store(session: Session, states: Sequence[ObligationState], now: datetime) -> None:
    """Upsert each obligation's state (one row per program, occurrence, person and kind).

    A row is rewritten only when its state or due instant changed, so ``updated_at`` says when
    the obligation last moved, not when it was last planned.
    """
    rows = [
        {
            "program": s.program,
            "occurrence": s.occurrence,
            "person_id": s.person_id,
            "kind": ObligationKind(s.kind),
            "state": s.state,
            "due_at": s.due,
            "updated_at": now,
            "details": dict(s.details),
        }
        for s in states
    ]
    insert = postgresql_insert if dialect_name(session) == "postgresql" else sqlite_insert
    for start in range(0, len(rows), 500):
        stmt = insert(TABLE).values(rows[start : start + 500])
        stmt = stmt.on_conflict_do_update(
            index_elements=["program", "occurrence", "person_id", "kind"],
            set_={
                "state": stmt.excluded.state,
                "due_at": stmt.excluded.due_at,
                "details": stmt.excluded.details,
                "updated_at": stmt.excluded.updated_at,
            },
            where=(TABLE.c.state != stmt.excluded.state) | (TABLE.c.due_at != stmt.excluded.due_at),
        )
        session.execute(stmt)
