"""The dashboard's Deliveries list over a large outbox, against the bare index walk.

    .venv/bin/python -m bench.bench_deliveries [--messages 1000000] [--database-url URL] [--runs 5]

A fresh migrated database (SQLite in a scratch folder by default) gets ``--messages`` outbox
rows inserted with SQLAlchemy Core: a third sent, most of the rest pending and due in the
future, one in 1,000 failed and one in 5,000 pending after a temporary failure (retrying),
the shape of an outbox a year into a large company. Then ``jobs.storage.messages.troubled``
pages through the failed and the retrying (the first page, and four more by keyset), best of
``--runs``, against the baseline measured in the same run: the bare SELECT of 51 ids off the
``(state, due_at)`` index, without the join to people or the row mapping.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, text

from jobs.storage import messages as store
from jobs.storage.db import OutboxMessage, OutboxState, make_engine, session_factory, upgrade

NOW = datetime(2027, 1, 11, 16, tzinfo=UTC)
PAGE = 51  # the page's 50 rows and the one that says there is more


def _row(i: int) -> dict[str, Any]:
    if i % 1000 == 0:
        state, due, attempts = OutboxState.FAILED, NOW - timedelta(minutes=i), 8
    elif i % 5000 == 1:
        state, due, attempts = OutboxState.PENDING, NOW - timedelta(minutes=i), 2
    elif i % 3 == 0:
        state, due, attempts = OutboxState.SENT, NOW - timedelta(minutes=i), 1
    else:
        state, due, attempts = OutboxState.PENDING, NOW + timedelta(minutes=i), 0
    return {
        "identity": f"bench/2027/supplier:S{i}/request",
        "message_id": f"{i}.bench@tickler",
        "program": "bench",
        "occurrence": "2027",
        "person_id": None,
        "recipient": f"s{i}@example.com",
        "job": "cmrt_request",
        "step": "request",
        "template": "cmrt_request",
        "context": {},
        "due_at": due,
        "expires_at": None,
        "state": state,
        "attempts": attempts,
        "next_attempt_at": due,
        "created_at": NOW,
        "updated_at": NOW,
    }


def fill(url: str, messages: int) -> None:
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as connection:
        for start in range(0, messages, 5000):
            batch = [_row(i) for i in range(start, min(messages, start + 5000))]
            connection.execute(insert(OutboxMessage), batch)
        connection.execute(text("ANALYZE" if engine.dialect.name == "sqlite" else "ANALYZE outbox"))
    engine.dispose()


def best(runs: int, work: Callable[[], object]) -> float:
    """Return the best of ``runs`` timings of ``work``, in milliseconds."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return min(times)


def measure(session: Any, retrying: bool, runs: int) -> tuple[float, list[float]]:
    """Return the bare SELECT's time and each page's, in milliseconds."""
    c = OutboxMessage.__table__.c
    where = (
        (c.state == OutboxState.PENDING) & (c.due_at <= NOW) & (c.attempts > 0)
        if retrying
        else c.state == OutboxState.FAILED
    )
    bare = select(c.id).where(where).order_by(c.due_at.desc(), c.id.desc()).limit(PAGE)
    baseline = best(runs, partial(session.execute, bare))
    cursors: list[tuple[datetime, int] | None] = [None]
    for _ in range(4):
        got = store.troubled(session, retrying=retrying, now=NOW, before=cursors[-1], limit=PAGE)
        if len(got) < PAGE:
            break
        cursors.append((got[PAGE - 2].due_at, got[PAGE - 2].id))
    pages = [
        best(
            runs,
            partial(store.troubled, session, retrying=retrying, now=NOW, before=before, limit=PAGE),
        )
        for before in cursors
    ]
    return baseline, pages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--database-url", help="an empty database (default: scratch SQLite)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-deliveries-") as scratch:
        url = args.database_url or f"sqlite:///{Path(scratch) / 'bench.db'}"
        started = time.perf_counter()
        fill(url, args.messages)
        print(f"{args.messages:,} outbox rows in {time.perf_counter() - started:.0f} s")
        engine = make_engine(url)
        with session_factory(engine)() as session:
            for retrying in (False, True):
                baseline, pages = measure(session, retrying, args.runs)
                shown = ", ".join(f"{ms:.1f}" for ms in pages)
                kind = "retrying" if retrying else "failed"
                print(f"{kind}: bare SELECT {baseline:.1f} ms; pages 1-{len(pages)}: {shown} ms")
        engine.dispose()


if __name__ == "__main__":
    main()
