"""The planning job: recompute every program's notices from the facts and reconcile the outbox.

Runs at start, after each recorded event, and on every sweep. Idempotent: the same facts give
the same identities, so a rerun, a restart or a second replica inserts nothing new. Notices a
program no longer calls for (a supplier responded, an employee elected) are cancelled while
still pending; sent ones are history and never touched.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from calendars import cmrt_notices, fcpa_notices, offer_notices
from calendars.events import Event
from calendars.notices import Notice, Plan, Snapshot, Team
from calendars.plan import expand_program
from config.programs import ConflictMinerals, Fcpa, OptionExchange, Program
from jobs.storage.db import EventVersion, Obligation, ObligationKind, dialect_name
from jobs.storage.outbox import PlannedMessage, cancel_pending, enqueue
from jobs.storage.snapshot import load_snapshot, load_versions

# Notices that had already expired this long before they were first planned are history
# (a program file describing a past campaign), not a backlog: they are not queued at all.
HISTORY = timedelta(days=7)
CANCELLED = "cancelled"
DIGEST_PROGRAM = "tickler"


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanReport:
    planned: int
    inserted: int
    updated: int
    cancelled: int
    history: int


def planner(program: Program) -> Callable[[Any, Snapshot, datetime], Plan]:
    if isinstance(program, ConflictMinerals):
        return cmrt_notices.plan
    if isinstance(program, OptionExchange):
        return offer_notices.plan
    if isinstance(program, Fcpa):
        return fcpa_notices.plan
    raise TypeError(type(program).__name__)


def effective(program: Program, snapshot: Snapshot) -> Program:
    """Return the program as the recorded facts leave it (an offer with its extensions)."""
    if isinstance(program, OptionExchange):
        return offer_notices.with_recorded_extensions(program, snapshot.facts)
    return program


def fingerprint(event: Event) -> str:
    data = [event.title, str(event.start), str(event.end), event.location, event.description]
    return hashlib.sha256(json.dumps(data).encode()).hexdigest()


def update_versions(session: Session, program: str, events: Sequence[Event], now: datetime) -> None:
    """Raise the SEQUENCE of every event whose content changed; retire removed ones.

    SEQUENCE starts at 0; the first change makes it 1 (RFC 5545: clients keep the copy with
    the highest sequence). A removed event keeps its row, marked cancelled, so feeds and
    invitations can say so.
    """
    stored = {
        v.key: v
        for v in session.scalars(select(EventVersion).where(EventVersion.program == program))
    }
    current = {e.key: fingerprint(e) for e in events}
    for key, print_ in current.items():
        row = stored.get(key)
        if row is None:
            session.add(
                EventVersion(
                    program=program, key=key, fingerprint=print_, sequence=0, last_modified=now
                )
            )
        elif row.fingerprint != print_:
            row.fingerprint, row.sequence, row.last_modified = print_, row.sequence + 1, now
    for key, row in stored.items():
        if key not in current and row.fingerprint != CANCELLED:
            row.fingerprint, row.sequence, row.last_modified = CANCELLED, row.sequence + 1, now
    session.flush()


def to_planned(notice: Notice) -> PlannedMessage:
    return PlannedMessage(
        identity=notice.identity,
        message_id=notice.message_id,
        program=notice.program,
        occurrence=notice.occurrence,
        person_id=notice.person_id,
        recipient=notice.recipient,
        job=notice.job,
        step=notice.step,
        template=notice.template,
        context=dict(notice.context),
        due_at=notice.due,
        expires_at=notice.expires,
    )


def digest_notices(team: Team, zone_name: str, now: datetime) -> list[Notice]:
    """Return this week's and next week's Monday 08:00 digest to the compliance team."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(zone_name)
    today = now.astimezone(zone).date()
    monday = today - timedelta(days=today.weekday())
    out = []
    for week in (monday, monday + timedelta(days=7)):
        due = datetime.combine(week, datetime.min.time().replace(hour=8), tzinfo=zone).astimezone(
            UTC
        )
        out.append(
            Notice(
                program=DIGEST_PROGRAM,
                occurrence=week.isoformat(),
                person_id=None,
                recipient_key=team.compliance,
                recipient=team.compliance,
                job="digest",
                step="digest",
                template="digest",
                context={"date": week.isoformat()},
                due=due,
                expires=due + timedelta(days=1),
            )
        )
    return out


def replan(
    session: Session,
    *,
    programs: Sequence[Program],
    team: Team,
    zone: str,
    now: datetime,
) -> PlanReport:
    """Plan ``programs`` (and the weekly digest) at ``now``; reconcile their outbox rows and
    obligations. The other programs' rows are left as they are."""
    notices: list[Notice] = digest_notices(team, zone, now)
    obligations = []
    base = load_snapshot(session, team=team)
    for program in programs:
        current = effective(program, base)
        update_versions(session, program.id, expand_program(current, now=now), now)
        snapshot = replace(base, versions=load_versions(session, program.id))
        plan = planner(program)(program, snapshot, now)
        notices.extend(plan.notices)
        obligations.extend(plan.obligations)
    fresh = [n for n in notices if n.expires > now - HISTORY]
    report = enqueue(session, [to_planned(n) for n in fresh], now)
    keep = {n.identity for n in fresh}
    scope = {p.id for p in programs} | {DIGEST_PROGRAM}
    cancelled = cancel_pending(
        session, _pending_not_in(session, scope, keep), "no longer planned", now
    )
    _store_obligations(session, obligations, now)
    return PlanReport(
        planned=len(fresh),
        inserted=report.inserted,
        updated=report.updated,
        cancelled=cancelled,
        history=len(notices) - len(fresh),
    )


def _pending_not_in(session: Session, programs: set[str], keep: set[str]) -> set[str]:
    from jobs.storage.db import OutboxMessage, OutboxState

    rows = session.scalars(
        select(OutboxMessage.identity).where(
            OutboxMessage.state == OutboxState.PENDING, OutboxMessage.program.in_(programs)
        )
    )
    return set(rows) - keep


def _store_obligations(session: Session, states: Sequence[Any], now: datetime) -> None:
    """Upsert each obligation's state (one row per program, occurrence, person and kind)."""
    if not states:
        return
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
    insert = pg_insert if dialect_name(session) == "postgresql" else sqlite_insert
    table = cast(Table, Obligation.__table__)
    for start in range(0, len(rows), 500):
        stmt = insert(table).values(rows[start : start + 500])
        stmt = stmt.on_conflict_do_update(
            index_elements=["program", "occurrence", "person_id", "kind"],
            set_={
                "state": stmt.excluded.state,
                "due_at": stmt.excluded.due_at,
                "details": stmt.excluded.details,
                "updated_at": stmt.excluded.updated_at,
            },
            where=(table.c.state != stmt.excluded.state) | (table.c.due_at != stmt.excluded.due_at),
        )
        session.execute(stmt)
