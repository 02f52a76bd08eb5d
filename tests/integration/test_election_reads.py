"""An election is judged from its person's rows, not the company's (issue 11).

Every election and withdrawal that the API takes checks eligibility, the cutoff and the
election in force. Those read the person, their grants and the facts about them or about no
person (an offer's extensions), whatever the size of the company. The rows read are counted
from the ORM's load events, on every backend.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from config.facts import FactKind
from jobs.record import RecordError, record
from jobs.storage.db import (
    EventLog,
    EventSource,
    FcpaRole,
    OptionGrant,
    Person,
    PersonKind,
    begin_write,
)
from scheduler.daemon.service import Service
from tests import world

OTHERS = 40
NOW = world.OPEN_WEEK


@contextmanager
def loads() -> Iterator[list[Any]]:
    """Collect every person, grant and event-log row the ORM builds from a result row."""
    seen: list[Any] = []

    def loaded(target: Any, _context: Any) -> None:
        seen.append(target)

    models = (Person, OptionGrant, EventLog)
    for model in models:
        event.listen(model, "load", loaded)
    try:
        yield seen
    finally:
        for model in models:
            event.remove(model, "load", loaded)


def company(service: Service) -> None:
    """The seed's people, and ``OTHERS`` eligible employees with a grant and an election each."""
    with begin_write(service.factory) as session:
        world.seed_people(session)
        for n in range(OTHERS):
            other = Person(
                kind=PersonKind.EMPLOYEE,
                external_id=f"E{2000 + n}",
                name=f"Employee {n}",
                email=f"e{2000 + n}@example.com",
                country="US",
                hire_date=date(2000, 1, 3),
                role=FcpaRole.EMPLOYEE,
                is_director=False,
                is_executive_officer=False,
                created_at=NOW,
                updated_at=NOW,
            )
            session.add(other)
            session.flush()
            session.add(
                OptionGrant(
                    external_id=f"G{2000 + n}",
                    person_id=other.id,
                    grant_date=date(2001, 3, 5),
                    shares=100,
                    unexercised=100,
                    price=Decimal("5.00"),
                )
            )
    for n in range(OTHERS):
        elect(service, f"E{2000 + n}", FactKind.ELECTION, minutes=-60)


def elect(service: Service, external_id: str, kind: FactKind, *, minutes: int = 0) -> int:
    at = NOW + timedelta(minutes=minutes)
    with begin_write(service.factory) as session:
        return record(
            session,
            kind=kind,
            program=world.OFFER,
            person=f"employee:{external_id}",
            at=at,
            actor="test",
            source=EventSource.API,
            payload={},
            programs={p.id: p for p in service.programs},
            now=at,
        )


def test_an_election_reads_its_person_only(db_url: str, tmp_path: Path) -> None:
    service = world.service(db_url, tmp_path)
    try:
        company(service)
        with loads() as seen:
            elect(service, "E1001", FactKind.ELECTION)
        with service.factory() as session:
            pat = session.query(Person).filter_by(external_id="E1001").one()
            pat_id = pat.id
        kinds = Counter(type(row).__name__ for row in seen)
        # Pat, Pat's four grants (slide 9), no other person's rows, no fact of anyone else.
        assert kinds["Person"] == 1, kinds
        assert kinds["OptionGrant"] == len(world.SLIDE_9), kinds
        assert all(row.person_id in (None, pat_id) for row in seen if isinstance(row, EventLog)), (
            kinds
        )
        # The withdrawal finds the election in force the same way.
        with loads() as seen:
            elect(service, "E1001", FactKind.WITHDRAWAL, minutes=1)
        assert Counter(type(row).__name__ for row in seen)["Person"] == 1
    finally:
        service.engine.dispose()


def test_eligibility_is_still_judged(db_url: str, tmp_path: Path) -> None:
    service = world.service(db_url, tmp_path)
    try:
        company(service)
        # A director is not eligible; a withdrawal with no election in force is refused.
        with pytest.raises(RecordError, match="not eligible"):
            elect(service, "E1002", FactKind.ELECTION)
        with pytest.raises(RecordError, match="no election in force"):
            elect(service, "E1001", FactKind.WITHDRAWAL)
    finally:
        service.engine.dispose()
