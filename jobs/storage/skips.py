"""The ``planning_skips`` table: what the last plan of each program left out, and why.

Every function runs in the caller's session and transaction and never commits.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from jobs.storage.db import PlanningSkip

#: ``Skipped.person`` of a program left out as a whole.
WHOLE_PROGRAM = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Skipped:
    """A program (``person`` empty), or one person under it, that planning left out."""

    program: str
    person: str  # "employee:E1001", or WHOLE_PROGRAM
    person_id: int | None
    error: str  # "OverflowError: date value out of range"


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredSkip:
    program: str
    person: str
    error: str
    since: datetime


def replace(
    session: Session,
    programs: Collection[str],
    skipped: Sequence[Skipped],
    now: datetime,
    *,
    people: Collection[str] | None = None,
) -> None:
    """Make ``skipped`` the skips of ``programs`` (just planned); keep ``since`` of those that
    last, drop those that are gone. Other programs' rows are left as they are, and so are the
    rows of people not in ``people`` (person keys, ``WHOLE_PROGRAM`` for the program itself)
    when a part of the programs was planned."""
    if not programs:
        return
    query = select(PlanningSkip).where(PlanningSkip.program.in_(list(programs)))
    if people is not None:
        query = query.where(PlanningSkip.person.in_(list(people)))
    stored = {(row.program, row.person): row for row in session.scalars(query)}
    wanted = {(s.program, s.person): s for s in skipped if people is None or s.person in people}
    for key, row in stored.items():
        if key not in wanted:
            session.execute(
                delete(PlanningSkip).where(
                    PlanningSkip.program == row.program, PlanningSkip.person == row.person
                )
            )
        elif row.error != wanted[key].error:
            row.error = wanted[key].error
    for key, skip in wanted.items():
        if key not in stored:
            session.add(
                PlanningSkip(program=skip.program, person=skip.person, error=skip.error, since=now)
            )
    session.flush()


def current(session: Session) -> list[StoredSkip]:
    """Return every skip of the last plans, by program then person."""
    rows = session.scalars(select(PlanningSkip).order_by(PlanningSkip.program, PlanningSkip.person))
    return [
        StoredSkip(program=r.program, person=r.person, error=r.error, since=r.since) for r in rows
    ]
