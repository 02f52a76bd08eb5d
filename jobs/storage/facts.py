"""Reads of the event log that wake the daemon and stamp the feeds (facts are written by
``jobs.record`` through ``jobs.storage.people``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from jobs.storage.db import EventLog
from jobs.storage.snapshot import FACT_KINDS


def last_id(session: Session) -> int:
    """Return the id of the newest event-log row (0 when empty): it grows with every write."""
    return int(session.scalar(select(func.max(EventLog.id))) or 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One event-log row as the planner's change feed reads it."""

    id: int
    kind: str  # a FactKind's value, or "import"
    at: datetime
    program: str | None
    person_id: int | None
    imported: str | None  # what an import wrote: "employees", "grants", …


def changes_after(session: Session, after: int, limit: int) -> list[Change]:
    """Return up to ``limit`` event-log rows whose id is above ``after``, by id."""
    rows = session.execute(
        select(
            EventLog.id,
            EventLog.kind,
            EventLog.at,
            EventLog.program,
            EventLog.person_id,
            EventLog.payload,
        )
        .where(EventLog.id > after)
        .order_by(EventLog.id)
        .limit(limit)
    )
    return [
        Change(
            id=id_,
            kind=kind,
            at=at,
            program=program,
            person_id=person_id,
            imported=str(payload.get("kind")) if kind == "import" and payload else None,
        )
        for id_, kind, at, program, person_id, payload in rows
    ]


def dated_between(
    session: Session, after: datetime, until: datetime
) -> list[tuple[str | None, int | None]]:
    """Return the (program, person id) of the facts dated in (after, until]: a fact dated
    ahead of the clock when it was recorded takes effect now."""
    rows = session.execute(
        select(EventLog.program, EventLog.person_id)
        .where(EventLog.at > after, EventLog.at <= until, EventLog.kind.in_(FACT_KINDS))
        .distinct()
    )
    return [(program, person_id) for program, person_id in rows]


def next_after(session: Session, now: datetime) -> datetime | None:
    """Return the instant of the first fact dated after ``now`` (a simulation's next stop)."""
    return session.scalar(
        select(func.min(EventLog.at)).where(EventLog.at > now, EventLog.kind.in_(FACT_KINDS))
    )


def programs_between(session: Session, after: datetime, until: datetime) -> set[str | None]:
    """Return the programs of the facts dated in (after, until]; ``None`` for a fact about a
    person (a termination, a hire) that may concern every program."""
    rows = session.scalars(
        select(EventLog.program)
        .where(EventLog.at > after, EventLog.at <= until, EventLog.kind.in_(FACT_KINDS))
        .distinct()
    )
    return set(rows)


def latest_at(session: Session, *, program: str | None, person_id: int | None) -> datetime | None:
    """Return the date of the latest fact of ``person_id`` in ``program`` (either may be
    ``None``: a termination names no program, an extension no person), or None."""
    return session.scalar(
        select(func.max(EventLog.at)).where(
            EventLog.kind.in_(FACT_KINDS),
            EventLog.program.is_not_distinct_from(program),
            EventLog.person_id.is_not_distinct_from(person_id),
        )
    )


def received_at(session: Session, event_id: int) -> datetime:
    """Return the server's time at which the event ``event_id`` was recorded."""
    return session.execute(select(EventLog.received_at).where(EventLog.id == event_id)).scalar_one()
