"""Load what the planners read (people, grants, facts) as the core's value types.

Planning reads the people in chunks (``people_after``, by id) and, for each chunk, only their
grants and facts plus the facts that name no person (an offer's extensions): memory is bounded
by the chunk, not by the company.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from calendars.notices import Fact, GrantView, PersonView, Snapshot, Team
from config.facts import FactKind
from jobs.storage.db import EventLog, OptionGrant, Person

# The event log's kinds of fact, as the plain text stored: imports and other bookkeeping rows
# of the log are left out.
FACT_KINDS = [kind.value for kind in FactKind]


def fact_view(r: EventLog) -> Fact:
    """Return the planners' view of a stored fact."""
    return Fact(
        id=r.id,
        kind=FactKind(r.kind),
        at=r.at,
        program=r.program,
        person_id=r.person_id,
        payload=dict(r.payload or {}),
    )


def load_facts(session: Session) -> list[Fact]:
    rows = session.scalars(
        select(EventLog).where(EventLog.kind.in_(FACT_KINDS)).order_by(EventLog.at, EventLog.id)
    )
    return [fact_view(r) for r in rows]


def load_facts_of(session: Session, person_ids: Collection[int]) -> list[Fact]:
    """Return the facts about ``person_ids`` and those about no person, oldest first."""
    ids = list(person_ids)
    about: ColumnElement[bool] = EventLog.person_id.is_(None)
    if ids:
        about = or_(about, EventLog.person_id.in_(ids))
    rows = session.scalars(
        select(EventLog)
        .where(EventLog.kind.in_(FACT_KINDS), about)
        .order_by(EventLog.at, EventLog.id)
    )
    return [fact_view(r) for r in rows]


def people_after(session: Session, after: int, limit: int) -> list[PersonView]:
    """Return up to ``limit`` people whose id is above ``after``, by id (one chunk of a plan)."""
    rows = session.scalars(select(Person).where(Person.id > after).order_by(Person.id).limit(limit))
    return [person_view(p) for p in rows]


def people_by_id(session: Session, ids: Collection[int]) -> list[PersonView]:
    """Return the people among ``ids`` that exist, by id."""
    rows = session.scalars(select(Person).where(Person.id.in_(list(ids))).order_by(Person.id))
    return [person_view(p) for p in rows]


def updated_at(session: Session, at: datetime) -> list[int]:
    """Return the ids of the people last written at ``at`` (by the import stamped ``at``)."""
    return list(session.scalars(select(Person.id).where(Person.updated_at == at)))


def person_view(p: Person) -> PersonView:
    """Return the planners' view of a stored person."""
    return PersonView(
        id=p.id,
        kind=p.kind.value,
        external_id=p.external_id,
        name=p.name,
        email=p.email,
        country=p.country,
        hire_date=p.hire_date,
        termination_date=p.termination_date,
        is_director=bool(p.is_director),
        is_executive_officer=bool(p.is_executive_officer),
        role=p.role.value if p.role else None,
        manager_email=p.manager_email,
        tier=p.tier.value if p.tier else None,
        owner_email=p.owner_email,
        start_date=p.start_date,
        locale=p.locale,
    )


def load_people(session: Session) -> list[PersonView]:
    return [person_view(p) for p in session.scalars(select(Person).order_by(Person.id))]


def person(session: Session, kind: str, external_id: str) -> PersonView | None:
    """Return the planners' view of the person ``kind:external_id``, or ``None``."""
    row = session.scalar(
        select(Person).where(Person.kind == kind, Person.external_id == external_id)
    )
    return person_view(row) if row is not None else None


def load_grants(
    session: Session, person_id: int | None = None, *, of: Collection[int] | None = None
) -> list[GrantView]:
    """Return every option grant (or ``person_id``'s, or those of the people ``of``), oldest
    first."""
    query = select(OptionGrant).order_by(OptionGrant.id)
    if person_id is not None:
        query = query.where(OptionGrant.person_id == person_id)
    if of is not None:
        query = query.where(OptionGrant.person_id.in_(list(of)))
    return [
        GrantView(
            id=g.id,
            person_id=g.person_id,
            external_id=g.external_id,
            grant_date=g.grant_date,
            unexercised=g.unexercised,
            price=g.price,
        )
        for g in session.scalars(query)
    ]


def of_person(session: Session, row: Person) -> Snapshot:
    """Return what the rules need to judge one person's fact: that person, their grants, and
    the facts about them or about no person (an offer's extensions), oldest first."""
    return Snapshot(
        people=[person_view(row)],
        grants=load_grants(session, row.id),
        facts=load_facts_of(session, [row.id]),
        team=Team(compliance="", compliance_officer=""),
    )


def load_snapshot(session: Session, *, team: Team | None) -> Snapshot:
    """Return people, grants and facts as stored now."""
    return Snapshot(
        people=load_people(session),
        grants=load_grants(session),
        facts=load_facts(session),
        team=team or Team(compliance="", compliance_officer=""),
    )
