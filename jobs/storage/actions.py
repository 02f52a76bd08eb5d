"""Reads of the action pages: the person a link names and their facts in one program."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from calendars.notices import Fact, GrantView, PersonView
from config.facts import FactKind
from jobs.storage.db import EventLog, OptionGrant, Person
from jobs.storage.snapshot import FACT_KINDS, person_view


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
    return [
        Fact(
            id=r.id,
            kind=FactKind(r.kind),
            at=r.at,
            program=r.program,
            person_id=r.person_id,
            payload=dict(r.payload or {}),
        )
        for r in rows
    ]


def grants_of(session: Session, person_id: int) -> list[GrantView]:
    """Return the option grants of ``person_id``, oldest first."""
    rows = session.scalars(
        select(OptionGrant).where(OptionGrant.person_id == person_id).order_by(OptionGrant.id)
    )
    return [
        GrantView(
            id=g.id,
            person_id=g.person_id,
            external_id=g.external_id,
            grant_date=g.grant_date,
            unexercised=g.unexercised,
            price=g.price,
        )
        for g in rows
    ]
