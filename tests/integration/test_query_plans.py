"""The hot queries use indexes, on SQLite and PostgreSQL (issue 11 item 2).

Each hot path is run for real (claiming due messages, the idle sweep's change queries, one
person's replan, a program's page of the read API); every statement it sent is captured with
its parameters and explained on the same database. No plan may read a whole table of those
that grow with the company (people, grants, facts, outbox, obligations). PostgreSQL prefers a
sequential scan of a small table whatever its indexes, so its plans are taken with
``enable_seqscan`` off: a sequential scan then means that no index fits the query.

``pytest -s`` prints every plan (bench/README.md quotes them).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from jobs import planning
from jobs.storage import dashboard, facts, outbox, reads
from jobs.storage.db import begin_write
from scheduler.daemon.service import Service
from tests import world

NOW = world.OPEN_WEEK
BIG = ("people", "option_grants", "event_log", "outbox", "obligations")
# A full read of one of them: SQLite's SCAN (with or without an index: all of its entries),
# PostgreSQL's Seq Scan.
FULL = re.compile(r"\b(?:SCAN|Seq Scan on) (" + "|".join(BIG) + r")\b")


@contextmanager
def captured(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """Collect the statements (and their parameters) sent to ``engine`` meanwhile."""
    seen: list[tuple[str, Any]] = []

    def before(
        _conn: Any, _cursor: Any, statement: str, params: Any, _ctx: Any, many: bool
    ) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb in ("SELECT", "UPDATE", "DELETE", "WITH") and not many:
            seen.append((statement, params))

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


def explain(engine: Engine, statement: str, params: Any) -> list[str]:
    """Return the plan of ``statement`` as the database's own lines (nothing is executed)."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("SET enable_seqscan = off")
            rows = connection.exec_driver_sql("EXPLAIN " + statement, params).all()
            lines = [str(r[0]).strip() for r in rows]
        else:
            rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
            lines = [str(r[-1]) for r in rows]
        connection.rollback()
    return lines


def claim_due(service: Service) -> None:
    with service.factory.begin() as session:
        outbox.claim_due(session, now=NOW, owner="plans", lease=timedelta(minutes=5), limit=50)


def idle_sweep(service: Service) -> None:
    with service.factory() as session:
        facts.changes_after(session, facts.last_id(session), 500)
        planning.changed_between(session, NOW - timedelta(minutes=1), NOW, service.programs)


def person_replan(service: Service) -> None:
    with begin_write(service.factory) as session:
        planning.plan_people(
            session,
            programs=service.programs,
            team=service.team,
            zone=service.settings.timezone,
            now=NOW,
            ids=[1],
        )


def program_page(service: Service) -> None:
    with service.factory() as session:
        # The dashboard's page of a program, in each order (a search by substring is a scan
        # by nature, and is not a hot path), and the read API's pages of it.
        for sort in ("name", "id", "due", "status"):
            dashboard.page(session, dashboard.Query(program="fcpa", sort=sort))
        dashboard.page(session, dashboard.Query(program="fcpa", status="pending"))
        dashboard.states(session, "fcpa")
        for state in (None, "pending"):
            filters = reads.ObligationFilters(program="fcpa", state=state)
            reads.obligations(session, filters, after=1, limit=100)
        reads.events(session, program=world.OFFER, after=0, limit=100)


PATHS: dict[str, Callable[[Service], None]] = {
    "claim due": claim_due,
    "idle sweep": idle_sweep,
    "person replan": person_replan,
    "program page": program_page,
}


@pytest.fixture
def planned(db_url: str, tmp_path: Path) -> Iterator[Service]:
    service = world.seeded(world.service(db_url, tmp_path))
    asyncio.run(service.plan(NOW))
    try:
        yield service
    finally:
        asyncio.run(service.close())


@pytest.mark.parametrize("path", list(PATHS))
def test_hot_queries_use_indexes(planned: Service, path: str) -> None:
    with captured(planned.engine) as statements:
        PATHS[path](planned)
    assert statements, f"{path}: no statement captured"
    for statement, params in statements:
        plan = explain(planned.engine, statement, params)
        text = " ".join(statement.split())
        print(f"\n[{planned.engine.dialect.name}] {path}: {text[:160]}")
        print("\n".join(f"    {line}" for line in plan))
        # A walk in an index's order that stops after a page (LIMIT) is no full read: the
        # dashboard's page by name walks people by name, keeping those who owe the program.
        paged = " LIMIT " in f" {text.upper()} "
        full = [
            line
            for line in plan
            if FULL.search(line) and not (paged and re.search(r"USING (COVERING )?INDEX", line))
        ]
        assert not full, f"{path}: {text[:200]} reads a whole table: {full}"
