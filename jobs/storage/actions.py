"""Reads of the action pages: the person a link names and their facts in one program."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from calendars.notices import Fact, PersonView
from jobs.storage.db import EventLog, Person
from jobs.storage.snapshot import FACT_KINDS, fact_view, person_view


def person_by_id(session: Session, person_id: int) -> PersonView | None:
    """Return the planners' view of the person ``person_id``, or ``None``."""
    row = session.get(Person, person_id)
    return person_view(row) if row is not None else None


def facts_of(session: Session, *, program: str, person_id: int) -> list[Fact]:
    """Return one person's facts in one program and the program's own (an offer's extensions),
    oldest first: what an action page shows and judges."""
    rows = session.scalars(
        select(EventLog)
        .where(
            EventLog.kind.in_(FACT_KINDS),
            EventLog.program == program,
            or_(EventLog.person_id == person_id, EventLog.person_id.is_(None)),
        )
        .order_by(EventLog.at, EventLog.id)
    )
    return [fact_view(r) for r in rows]
