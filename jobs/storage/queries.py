"""Read-only summaries: ``tickler status``, the weekly digest, ``/metrics``, the feed stamp.

Every function reads in the caller's session and writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, case, func, select
from sqlalchemy.orm import Session

from jobs.storage.db import (
    EventLog,
    EventVersion,
    FeedToken,
    Obligation,
    OutboxMessage,
    OutboxState,
    Person,
)
from jobs.storage.obligations import RETIRED
from jobs.storage.outbox import withdrawn


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusRows:
    """What ``tickler status`` shows, as rows of counts."""

    obligations: list[Row[Any]]  # (program, kind, state, count)
    messages: list[Row[Any]]  # (program, state, count)
    upcoming: list[Row[Any]]  # (due_at, program, job, count): the next ten instants
    failed: list[Row[Any]]  # (identity, last_code, last_error): the last twenty


def status_rows(session: Session, now: datetime) -> StatusRows:
    """Return obligations and messages by state, what is due next and what failed last.

    One truth whatever the timing: these figures are those a single plan made after every
    import and fact would give, however plans interleaved with them (issue 15). Two kinds of
    rows exist only because a plan ran early, and are counted nowhere:

    - a retired obligation (planning no longer produces it): history, never open or escalated;
    - a withdrawn forecast (``outbox.withdrawn``): a message planning queued and then
      cancelled itself, because a fact came (a supplier responded, an employee acknowledged)
      or it expired, before any attempt to send it. Nobody was told anything and nobody
      decided anything: whether it ever existed depends only on when a plan ran (a daemon
      planning the people of an import before the facts of the next). "Cancelled" counts the
      messages someone cancelled (an operator, with a reason) and those planning withdrew
      after an attempt to send them (a temporary failure being retried), which did happen.
    """
    c = OutboxMessage
    return StatusRows(
        obligations=list(
            session.execute(
                select(Obligation.program, Obligation.kind, Obligation.state, func.count())
                .where(Obligation.state != RETIRED)
                .group_by(Obligation.program, Obligation.kind, Obligation.state)
            )
        ),
        messages=list(
            session.execute(
                select(c.program, c.state, func.count())
                .where(~withdrawn())
                .group_by(c.program, c.state)
            )
        ),
        upcoming=list(
            session.execute(
                select(c.due_at, c.program, c.job, func.count())
                .where(c.state == OutboxState.PENDING, c.due_at >= now)
                .group_by(c.due_at, c.program, c.job)
                .order_by(c.due_at)
                .limit(10)
            )
        ),
        failed=list(
            session.execute(
                select(c.identity, c.last_code, c.last_error)
                .where(c.state == OutboxState.FAILED)
                .order_by(c.updated_at.desc())
                .limit(20)
            )
        ),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestRows:
    """What the weekly digest reports: complete counts, and the first ``listed`` rows of each list.

    Counted and limited in SQL, so that a company of 100,000 costs the digest a few aggregates,
    never its obligations in memory.
    """

    due_count: int
    due: list[Row[Any]]  # (due_at, program, job, recipient, name): pending, within the window
    failed_count: int
    failed: list[Row[Any]]  # (updated_at, program, job, recipient, last_error, name)
    overdue_count: int
    overdue: list[Row[Any]]  # (due_at, program, state, kind, external_id, name): oldest first
    states: list[Row[Any]]  # (program, state, count): every obligation not retired


#: The states of an obligation still owed; "overdue" in the digest means one of these past due.
OWED = ("pending", "overdue", "escalated")


def digest_rows(
    session: Session, now: datetime, window: timedelta, *, listed: int, look_back: timedelta
) -> DigestRows:
    """Return the messages due in the next ``window``, those failed in the last, the
    obligations owed past their due date (within ``look_back``) and the counts by state."""
    c = OutboxMessage
    due = (
        c.state == OutboxState.PENDING,
        c.due_at >= now,
        c.due_at < now + window,
        c.job != "digest",
    )
    failed = (c.state == OutboxState.FAILED, c.updated_at >= now - window)
    o = Obligation
    overdue = (
        o.state.in_(OWED),
        o.due_at.is_not(None),
        o.due_at < now,
        o.due_at >= now - look_back,
    )

    def count(*where: Any) -> int:
        return int(session.scalar(select(func.count()).where(*where)) or 0)

    return DigestRows(
        due_count=count(*due),
        due=list(
            session.execute(
                select(c.due_at, c.program, c.job, c.recipient, Person.name)
                .outerjoin(Person, Person.id == c.person_id)
                .where(*due)
                .order_by(c.due_at, c.id)
                .limit(listed)
            )
        ),
        failed_count=count(*failed),
        failed=list(
            session.execute(
                select(c.updated_at, c.program, c.job, c.recipient, c.last_error, Person.name)
                .outerjoin(Person, Person.id == c.person_id)
                .where(*failed)
                .order_by(c.updated_at, c.id)
                .limit(listed)
            )
        ),
        overdue_count=count(*overdue),
        overdue=list(
            session.execute(
                select(o.due_at, o.program, o.state, Person.kind, Person.external_id, Person.name)
                .join(Person, Person.id == o.person_id)
                .where(*overdue)
                .order_by(o.due_at, o.id)
                .limit(listed)
            )
        ),
        states=list(
            session.execute(
                select(o.program, o.state, func.count().label("n"))
                .where(o.state != RETIRED)
                .group_by(o.program, o.state)
                .order_by(o.program, o.state)
            )
        ),
    )


def database_stamp(session: Session) -> tuple[int, ...]:
    """Summarise what feeds and tokens are read from: each part grows with every change."""
    last_event = session.scalar(select(func.max(EventLog.id))) or 0
    versions, sequences = session.execute(
        select(func.count(), func.coalesce(func.sum(EventVersion.sequence), 0))
    ).one()
    issued, revoked = session.execute(
        select(func.coalesce(func.max(FeedToken.id), 0), func.count(FeedToken.revoked_at))
    ).one()
    return (int(last_event), int(versions), int(sequences), int(issued), int(revoked))


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxFigures:
    by_state: Mapping[str, int]
    obligations: Mapping[tuple[str, str], int]  # (program, state)
    due_backlog: int
    oldest_due_seconds: float


def outbox_figures(session: Session, now: datetime) -> OutboxFigures:
    """Read the outbox and obligation figures at ``now``."""
    c = OutboxMessage
    by_state = {
        str(state): int(n)
        for state, n in session.execute(select(c.state, func.count()).group_by(c.state))
    }
    backlog, oldest = session.execute(
        select(func.count(), func.min(c.due_at)).where(
            c.state == OutboxState.PENDING, c.due_at <= now
        )
    ).one()
    obligations = {
        (program, state): int(n)
        for program, state, n in session.execute(
            select(Obligation.program, Obligation.state, func.count())
            .where(Obligation.state != RETIRED)
            .group_by(Obligation.program, Obligation.state)
        )
    }
    return OutboxFigures(
        by_state={str(s): by_state.get(str(s), 0) for s in OutboxState},
        obligations=obligations,
        due_backlog=int(backlog),
        oldest_due_seconds=max((now - oldest).total_seconds(), 0.0) if oldest else 0.0,
    )


# Obligations still owed: a supplier's CMRT not back (or incomplete), an FCPA acknowledgment
# not signed (pending, overdue, escalated). An election is a choice, not a debt: an employee
# who has not elected (``not_elected``) owes nothing, and neither does a closed obligation
# (``complete``, ``acknowledged``, ``elected``, ``forfeited``).
OPEN_OBLIGATION_STATES = ("pending", "incomplete", "overdue", "escalated")


def open_obligations(session: Session, now: datetime) -> dict[str, tuple[int, int]]:
    """Return, per program, the obligations still owed and how many of them are due before
    ``now`` (overdue by the clock, whatever state the last plan stored)."""
    o = Obligation
    late = func.coalesce(func.sum(case((o.due_at < now, 1), else_=0)), 0)
    rows = session.execute(
        select(o.program, func.count(), late)
        .where(o.state.in_(OPEN_OBLIGATION_STATES))
        .group_by(o.program)
    )
    return {str(program): (int(n), int(overdue)) for program, n, overdue in rows}
