"""The ``obligations`` table: what each person owes each occurrence of a program.

Every function runs in the caller's session and transaction and never commits.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from calendars.notices import ObligationState
from jobs.storage.db import Obligation, ObligationKind, dialect_name

TABLE = cast(Table, Obligation.__table__)
#: The state of an obligation planning no longer produces (its person left the program's
#: scope, a fact recorded before its person arrived was re-read): kept as history, with the
#: state it had and why in ``details``, and counted nowhere. Planning it again revives it.
RETIRED = "retired"
#: (program, occurrence, person id, kind): one obligation.
Key = tuple[str, str, int, str]


def key_of(state: ObligationState) -> Key:
    return (state.program, state.occurrence, state.person_id, str(state.kind))


#: What ``live`` gives of an obligation: its state, details and due instant.
Stored = tuple[str, dict[str, Any], datetime | None]


def live(
    session: Session, programs: Collection[str], person_ids: Collection[int]
) -> dict[Key, Stored]:
    """Return the state, details and due instant of each obligation of ``person_ids`` under
    ``programs`` that is not retired."""
    c = TABLE.c
    rows = session.execute(
        select(c.program, c.occurrence, c.person_id, c.kind, c.state, c.details, c.due_at).where(
            c.program.in_(list(programs)),
            c.person_id.in_(list(person_ids)),
            c.state != RETIRED,
        )
    )
    return {
        (program, occurrence, person_id, str(kind)): (state, dict(details or {}), due_at)
        for program, occurrence, person_id, kind, state, details, due_at in rows
    }


def changed(
    states: Sequence[ObligationState], stored: Mapping[Key, Stored]
) -> list[ObligationState]:
    """Return the obligations among ``states`` that differ from ``stored`` (or are new)."""
    out = []
    for s in states:
        was = stored.get(key_of(s))
        if was is None or (was[0], was[2], was[1]) != (s.state, s.due, dict(s.details)):
            out.append(s)
    return out


def retire(
    session: Session,
    rows: Mapping[Key, Stored],
    reason: str,
    now: datetime,
) -> int:
    """Retire the obligations ``rows`` (from ``live``); return how many were."""
    c = TABLE.c
    stmt = (
        update(TABLE)
        .where(
            c.program == bindparam("b_program"),
            c.occurrence == bindparam("b_occurrence"),
            c.person_id == bindparam("b_person"),
            c.kind == bindparam("b_kind"),
            c.state != RETIRED,
        )
        .values(state=RETIRED, details=bindparam("b_details"), updated_at=now)
    )
    params = [
        {
            "b_program": program,
            "b_occurrence": occurrence,
            "b_person": person_id,
            "b_kind": ObligationKind(kind),
            "b_details": {**details, "retired": reason, "was": state},
        }
        for (program, occurrence, person_id, kind), (state, details, _due) in rows.items()
    ]
    if not params:
        return 0
    return int(session.connection().execute(stmt, params).rowcount or 0)


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
    if not rows:
        return
    insert = postgresql_insert if dialect_name(session) == "postgresql" else sqlite_insert
    # One statement executed many times, not multi-VALUES text: SQLAlchemy compiled a
    # 500-row VALUES list afresh for every chunk (most of a plan's time at 1,000 people).
    stmt = insert(TABLE)
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
    for start in range(0, len(rows), 500):
        session.connection().execute(stmt, rows[start : start + 500])


def people_due_between(session: Session, after: datetime, until: datetime) -> set[int]:
    """Return the people with an obligation due in (after, until]: it may be overdue now."""
    c = TABLE.c
    rows = session.scalars(
        select(c.person_id).where(c.due_at > after, c.due_at <= until).distinct()
    )
    return {int(p) for p in rows}
