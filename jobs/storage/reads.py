"""Read-only pages for the API: people, obligations and the event log, by keyset.

Each page is ``WHERE id > after ORDER BY id LIMIT n`` on the table's primary key plus the
filters: its cost does not grow with the page number, and nothing loads a table (100,000 people
are 1,000 requests of 100, each an index range scan). Rows come back as JSON-ready dicts.
Every function runs in the caller's session and never writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from typing import Any

from sqlalchemy import String, select, type_coerce
from sqlalchemy.orm import Session

from jobs.storage.db import EventLog, Obligation, Person, PersonKind


def _json(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


_PERSON_FIELDS = (
    "kind", "external_id", "name", "email", "country", "hire_date", "termination_date",
    "role", "tier", "manager_email", "owner_email", "start_date", "updated_at",
)  # fmt: skip


def people(
    session: Session, *, kind: PersonKind | None = None, after: int = 0, limit: int = 100
) -> list[dict[str, Any]]:
    """Return up to ``limit`` people with an id above ``after``, by id."""
    # Columns, not ORM objects: a page is read-only, and identity-mapping 1,000 people cost
    # several times the query.
    columns = [Person.id, *(getattr(Person, f) for f in _PERSON_FIELDS)]
    stmt = select(*columns).where(Person.id > after).order_by(Person.id).limit(limit)
    if kind is not None:
        stmt = stmt.where(Person.kind == kind)
    out = []
    for id_, *values in session.execute(stmt):
        row = {"id": id_, "key": f"{values[0]}:{values[1]}"}
        row.update(zip(_PERSON_FIELDS, map(_json, values), strict=True))
        out.append(row)
    return out


def person_id(session: Session, key: str) -> int | None:
    """Return the id of the person ``KIND:ID``, or None."""
    kind, _, external = key.partition(":")
    if kind not in {k.value for k in PersonKind}:
        return None
    return session.scalar(
        select(Person.id).where(Person.kind == PersonKind(kind), Person.external_id == external)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ObligationFilters:
    program: str | None = None
    person_id: int | None = None
    state: str | None = None
    kind: str | None = None
    due_from: datetime | None = None
    due_to: datetime | None = None  # exclusive


_PERSON_KEY = (type_coerce(Person.kind, String()) + ":" + Person.external_id).label("person")


def obligations(
    session: Session, filters: ObligationFilters, *, after: int = 0, limit: int = 100
) -> list[dict[str, Any]]:
    """Return up to ``limit`` obligations matching ``filters`` with an id above ``after``."""
    o = Obligation
    stmt = (
        select(o.id, o.program, o.occurrence, _PERSON_KEY, o.kind, o.state, o.due_at, o.details)
        .join(Person, Person.id == o.person_id)
        .where(o.id > after)
        .order_by(o.id)
        .limit(limit)
    )
    if filters.program is not None:
        stmt = stmt.where(o.program == filters.program)
    if filters.person_id is not None:
        stmt = stmt.where(o.person_id == filters.person_id)
    if filters.state is not None:
        stmt = stmt.where(o.state == filters.state)
    if filters.kind is not None:
        stmt = stmt.where(o.kind == filters.kind)
    if filters.due_from is not None:
        stmt = stmt.where(o.due_at >= filters.due_from)
    if filters.due_to is not None:
        stmt = stmt.where(o.due_at < filters.due_to)
    return [
        {name: _json(value) for name, value in row._mapping.items()}
        for row in session.execute(stmt)
    ]


def events(
    session: Session,
    *,
    program: str | None = None,
    person_id: int | None = None,
    kind: str | None = None,
    after: int = 0,
    limit: int = 100,
    newest: bool = False,
) -> list[dict[str, Any]]:
    """Return up to ``limit`` event-log rows (facts and operators' actions) above ``after``,
    by id; ``newest``: the last ``limit`` of them, newest first (a timeline's)."""
    order = EventLog.id.desc() if newest else EventLog.id
    stmt = select(EventLog).where(EventLog.id > after).order_by(order).limit(limit)
    if program is not None:
        stmt = stmt.where(EventLog.program == program)
    if person_id is not None:
        stmt = stmt.where(EventLog.person_id == person_id)
    if kind is not None:
        stmt = stmt.where(EventLog.kind == kind)
    fields = ("id", "at", "received_at", "actor", "source", "kind", "program", "person_id")
    return [
        {f: _json(getattr(e, f)) for f in fields} | {"backfill": e.backfill, "payload": e.payload}
        for e in session.scalars(stmt)
    ]
