"""Server time of the dashboard's program page at 100,000 people, against the bare keyset SELECT.

    .venv/bin/python -m bench.bench_dashboard [--people 100000] [--database-url URL] [--runs 5]

The people are ``bench.generate``'s employees (same names, same addresses), inserted with
SQLAlchemy Core into a fresh migrated database (SQLite in a scratch folder by default), each
with one FCPA obligation in a mix of states and due dates and two outbox rows (one sent, one
pending): planning 100,000 people would take the benchmark hours and is measured elsewhere
(``bench.bench_plan``). Then, for the first page, a deep page (the page after the row 90,000
rows in), a search and a status filter: the page's storage work (``jobs.storage.dashboard``)
and its rendering (``scheduler.web.dashboard``'s template), best of ``--runs``, against the
baseline measured in the same run: the keyset SELECT of 50 obligation ids alone.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from bench.generate import employees
from jobs.storage import dashboard as stored
from jobs.storage.db import (
    Obligation,
    OutboxMessage,
    Person,
    make_engine,
    session_factory,
    upgrade,
)
from jobs.storage.obligations import RETIRED
from tests.world import PROGRAMS

NOW = datetime(2026, 6, 1, 16, tzinfo=UTC)
STATES = ["pending"] * 5 + ["acknowledged"] * 3 + ["overdue", "escalated"]
CHUNK = 5_000


def fill(url: str, people: int) -> None:
    upgrade(url)
    engine = make_engine(url)
    rand = random.Random(1)
    with engine.begin() as connection:
        batch: list[dict[str, Any]] = []
        for row in employees(random.Random(1), people):
            batch.append(
                {
                    "kind": "employee",
                    "external_id": row[0],
                    "name": row[1],
                    "email": row[2],
                    "country": row[3],
                    "created_at": NOW,
                    "updated_at": NOW,
                }
            )
            if len(batch) == CHUNK:
                connection.execute(insert(Person), batch)
                batch = []
        if batch:
            connection.execute(insert(Person), batch)
        ids = list(connection.scalars(select(Person.id).order_by(Person.id)))
        for start in range(0, len(ids), CHUNK):
            part = ids[start : start + CHUNK]
            connection.execute(
                insert(Obligation),
                [
                    {
                        "program": "fcpa",
                        "occurrence": "2026-03-31",
                        "person_id": pid,
                        "kind": "fcpa_ack",
                        "state": rand.choice(STATES),
                        "due_at": NOW + timedelta(days=rand.randrange(-60, 120)),
                        "updated_at": NOW,
                        "details": {},
                    }
                    for pid in part
                ],
            )
            connection.execute(
                insert(OutboxMessage),
                [
                    {
                        "identity": f"fcpa/2026/{pid}/{step}",
                        "message_id": f"<{pid}.{step}@bench.example>",
                        "program": "fcpa",
                        "occurrence": "2026-03-31",
                        "person_id": pid,
                        "recipient": f"p{pid}@example.com",
                        "job": f"fcpa_{step}",
                        "step": step,
                        "template": "fcpa_request.txt",
                        "context": {},
                        "due_at": NOW + timedelta(days=-30 if step == "request" else 10),
                        "state": "sent" if step == "request" else "pending",
                        "attempts": 1 if step == "request" else 0,
                        "next_attempt_at": NOW,
                        "sent_at": NOW - timedelta(days=30) if step == "request" else None,
                        "created_at": NOW,
                        "updated_at": NOW,
                    }
                    for pid in part
                    for step in ("request", "reminder")
                ],
            )
        connection.exec_driver_sql("ANALYZE")  # as the daemon's database would have statistics
    engine.dispose()


def best(runs: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--database-url", help="an empty database (default: a scratch SQLite)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--filled", action="store_true", help="--database-url was filled by an earlier run"
    )
    args = parser.parse_args(argv)
    url = args.database_url or f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.sqlite'}"
    if not args.filled:
        started = time.perf_counter()
        fill(url, args.people)
        print(f"filled {args.people:,} people in {time.perf_counter() - started:.1f} s ({url})")

    from jobs.storage.db import Role
    from scheduler.web.auth import User
    from scheduler.web.dashboard.pages import _env
    from scheduler.web.dashboard.program import page_context

    reader = User(id=1, username="bench", role=Role.VIEWER, csrf="-")
    program = next(p for p in PROGRAMS if p.id == "fcpa")
    template = _env.get_template("dashboard/program.html")
    factory = session_factory(make_engine(url))
    with factory() as session:
        # Sorted by name, a page starts after a (name, person id): the one 90% in.
        deep_row = session.execute(
            select(Person.name, Person.id)
            .order_by(Person.name, Person.id)
            .offset(int(args.people * 0.9))
            .limit(1)
        ).one()
    cases = {
        "first page": stored.Query(program="fcpa"),
        "deep page (row 90%)": stored.Query(program="fcpa", after=(deep_row[0], deep_row[1])),
        "search 'quinn.7'": stored.Query(program="fcpa", search="quinn.7"),
        "status escalated": stored.Query(program="fcpa", status="escalated"),
        "sort by due, desc": stored.Query(program="fcpa", sort="due", descending=True),
    }

    def baseline() -> None:
        with factory() as session:
            list(
                session.scalars(
                    select(Obligation.id)
                    .where(Obligation.program == "fcpa", Obligation.state != RETIRED)
                    .where(Obligation.id > 0)
                    .order_by(Obligation.id)
                    .limit(51)
                )
            )

    base = best(args.runs, baseline)
    print(f"baseline: bare keyset SELECT of 51 ids: {base:.1f} ms")
    for name, query in cases.items():

        def page(query: stored.Query = query) -> None:
            with factory() as session:
                rows, following = stored.page(session, query)
                states = stored.states(session, "fcpa")
            template.render(
                user=reader,
                csrf="",
                active="programs",
                **page_context(program, query, rows, following, states, NOW),
            )

        took = best(args.runs, page)
        print(f"{name}: {took:.1f} ms ({took / base:.1f}x the baseline)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
