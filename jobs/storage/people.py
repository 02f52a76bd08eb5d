"""People, option grants and the event log: the rows that imports and recorded facts write.

Every function runs in the caller's session and transaction and never commits.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from jobs.storage.db import Base, EventLog, OptionGrant, Person, PersonKind


def find(session: Session, kind: PersonKind, external_id: str) -> Person | None:
    """Return the person ``kind:external_id``, or ``None``."""
    return session.scalar(
        select(Person).where(Person.kind == kind, Person.external_id == external_id)
    )


def of_kind(session: Session, kind: PersonKind, external_ids: Collection[str]) -> dict[str, Person]:
    """Return the people of ``kind`` among ``external_ids`` (a batch of an import), by external
    id."""
    rows = session.scalars(
        select(Person).where(Person.kind == kind, Person.external_id.in_(external_ids))
    )
    return {p.external_id: p for p in rows}


def employee_ids(session: Session, external_ids: Collection[str]) -> dict[str, int]:
    """Return the database ids of the employees among ``external_ids``, by external id."""
    rows = session.execute(
        select(Person.external_id, Person.id).where(
            Person.kind == PersonKind.EMPLOYEE, Person.external_id.in_(external_ids)
        )
    )
    return {external_id: id_ for external_id, id_ in rows}


def external_ids(session: Session, ids: Collection[int]) -> dict[int, str]:
    """Return the external ids of the people ``ids``, by database id."""
    rows = session.execute(select(Person.id, Person.external_id).where(Person.id.in_(ids)))
    return {id_: external_id for id_, external_id in rows}


def grants(session: Session, external_ids: Collection[str]) -> dict[str, OptionGrant]:
    """Return the option grants among ``external_ids``, by external id."""
    rows = session.scalars(select(OptionGrant).where(OptionGrant.external_id.in_(external_ids)))
    return {g.external_id: g for g in rows}


def add(session: Session, row: Base) -> None:
    """Add a new row (a person, a grant, an event); it is written at the next flush."""
    session.add(row)


def insert(session: Session, row: Base) -> None:
    """Add a new row and write it at once, so that it has its id."""
    session.add(row)
    session.flush()


def flush(session: Session) -> None:
    """Write the changes made to loaded rows so far (a progress bar follows the database)."""
    session.flush()


def event_exists(
    session: Session, *, kind: str, program: str | None, person_id: int | None, at: datetime
) -> bool:
    """Tell whether the event log already holds this fact (same kind, program, person, time)."""
    found = session.scalar(
        select(EventLog.id)
        .where(
            EventLog.kind == kind,
            EventLog.program.is_not_distinct_from(program),
            EventLog.person_id.is_not_distinct_from(person_id),
            EventLog.at == at,
        )
        .limit(1)
    )
    return found is not None
