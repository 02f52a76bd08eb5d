"""Incremental planning (issue 11, item 1), on every backend.

A recorded fact replans its person and nobody else; a sweep with nothing changed writes
nothing; an obligation planning no longer produces is retired, not left open (issue 15). The
rows a plan touches are counted from the statements the engine ran (an event listener), not
from the plan's own report.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, select

from config.facts import FactKind
from jobs.planning import Scope
from jobs.record import record
from jobs.storage import facts
from jobs.storage.db import (
    EventSource,
    FcpaRole,
    Obligation,
    OutboxMessage,
    OutboxState,
    Person,
    PersonKind,
    begin_write,
)
from jobs.storage.obligations import RETIRED
from jobs.storage.queries import status_rows
from scheduler.daemon.service import Service
from tests import world

NOW = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)  # 10:00 in Los Angeles: nothing due this minute
LATER = NOW + timedelta(minutes=1)
PEOPLE = 60


@dataclass
class Writes:
    """The INSERT, UPDATE and DELETE statements run, with the rows each touched."""

    statements: list[tuple[str, int]] = field(default_factory=list)
    queries: int = 0

    @property
    def rows(self) -> int:
        return sum(n for _, n in self.statements)


@contextmanager
def counting(engine: Engine) -> Iterator[Writes]:
    writes = Writes()

    def seen(_conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        writes.queries += 1
        verb = statement.lstrip().split(None, 1)[0].upper()
        # An UPDATE … RETURNING tells its rows only once fetched (-1 here): counted too.
        if verb in ("INSERT", "UPDATE", "DELETE") and cursor.rowcount != 0:
            writes.statements.append((" ".join(statement.split()[:3]), cursor.rowcount))

    event.listen(engine, "after_cursor_execute", seen)
    try:
        yield writes
    finally:
        event.remove(engine, "after_cursor_execute", seen)


def company(service: Service, hired: date = date(2026, 11, 16)) -> list[int]:
    """Add ``PEOPLE`` employees whose FCPA onboarding acknowledgment is due in December."""
    with begin_write(service.factory) as session:
        people = [
            Person(
                kind=PersonKind.EMPLOYEE,
                external_id=f"E{n}",
                name=f"Employee {n}",
                email=f"e{n}@example.com",
                country="US",
                hire_date=hired,
                is_director=False,
                is_executive_officer=False,
                role=FcpaRole.EMPLOYEE,
                created_at=NOW - timedelta(days=30),
                updated_at=NOW - timedelta(days=30),
            )
            for n in range(PEOPLE)
        ]
        session.add_all(people)
        session.flush()
        return [p.id for p in people]


def acknowledge(service: Service, external_id: str) -> None:
    with begin_write(service.factory) as session:
        record(
            session,
            kind=FactKind.FCPA_ACK,
            program="fcpa",
            person=f"employee:{external_id}",
            at=NOW,
            actor="test",
            source=EventSource.API,
            payload={},
            programs={p.id: p for p in service.programs},
            now=NOW,
        )


def last_event(service: Service) -> int:
    with service.factory() as session:
        return facts.last_id(session)


def test_a_fact_replans_only_its_person(db_url: str, tmp_path: Path) -> None:
    service = world.service(db_url, tmp_path)
    ids = company(service)
    before = last_event(service)

    cancelled: list[int] = []

    async def scenario() -> None:
        first = await service.plan(NOW)
        assert first.inserted > PEOPLE  # a request and reminders each
        acknowledge(service, "E7")
        with counting(service.engine) as writes:
            seen, scope = await service.changes(before, NOW, LATER, seen=set())
            report = await service.plan_scope(LATER, scope, unowned=False)
        assert scope == Scope(people=frozenset({ids[7]}))
        assert len(seen) == 1
        # E7's reminders cancelled, their obligation acknowledged (rows counted below).
        assert report.cancelled >= 1
        assert {table for table, _ in writes.statements} <= {
            "UPDATE outbox SET",
            "INSERT INTO obligations",
        }, writes.statements
        # Old code: a full replan of every program, reading all 60 people and every pending
        # message (hundreds of rows), whatever the size of the company.
        assert writes.queries < 30
        cancelled.append(report.cancelled)

    try:
        asyncio.run(scenario())
        with service.factory() as session:
            moved = session.scalars(
                select(OutboxMessage.person_id).where(OutboxMessage.updated_at == LATER)
            ).all()
            assert set(moved) == {ids[7]}
            assert len(moved) == cancelled[0]
            changed = session.scalars(
                select(Obligation.person_id).where(Obligation.updated_at == LATER)
            ).all()
            assert changed == [ids[7]]
    finally:
        asyncio.run(service.close())


def test_a_sweep_with_nothing_changed_writes_nothing(db_url: str, tmp_path: Path) -> None:
    service = world.service(db_url, tmp_path)
    company(service)

    async def scenario() -> None:
        await service.plan(NOW)
        after = last_event(service)
        with counting(service.engine) as writes:
            seen, scope = await service.changes(after, NOW, LATER, seen=set())
            await service.plan_scope(LATER, scope, unowned=True)
        assert (seen, scope) == ([], Scope())
        assert writes.statements == []
        # The periodic whole plan, streamed in chunks, writes nothing either.
        with counting(service.engine) as writes:
            report = await service.plan(LATER)
        assert writes.statements == []
        assert (report.inserted, report.updated, report.cancelled, report.retired) == (0, 0, 0, 0)

    try:
        asyncio.run(scenario())
    finally:
        asyncio.run(service.close())


def test_an_obligation_no_longer_planned_is_retired_and_counted_nowhere(
    db_url: str, tmp_path: Path
) -> None:
    service = world.service(db_url, tmp_path)
    ids = company(service)

    async def scenario() -> None:
        await service.plan(NOW)
        with begin_write(service.factory) as session:
            # HR corrects E3's start: the onboarding cycle planned so far never existed.
            person = session.get(Person, ids[3])
            assert person is not None
            person.hire_date = date(2026, 11, 1)
            person.updated_at = LATER
            session.add(person)
        await service.plan_scope(LATER, Scope(people=frozenset({ids[3]})), unowned=False)

    try:
        asyncio.run(scenario())
        with service.factory() as session:
            rows = session.scalars(
                select(Obligation).where(Obligation.person_id == ids[3]).order_by(Obligation.id)
            ).all()
            old, new = rows
            assert (old.occurrence, old.state) == ("2026-12-16", RETIRED)
            assert old.details["was"] == "pending"
            assert old.details["retired"] == "no longer planned"
            assert (new.occurrence, new.state) == ("2026-12-01", "overdue")
            rows_: list[tuple[Any, ...]] = [
                tuple(r) for r in status_rows(session, LATER).obligations
            ]
            states = {(r[0], r[2]): r[3] for r in rows_}
            assert states == {("fcpa", "pending"): PEOPLE - 1, ("fcpa", "overdue"): 1}
            pending = session.scalars(
                select(OutboxMessage.occurrence).where(
                    OutboxMessage.person_id == ids[3],
                    OutboxMessage.state == OutboxState.PENDING,
                )
            ).all()
            assert set(pending) == {"2026-12-01"}
    finally:
        asyncio.run(service.close())
