"""Migration 0011: the event log's ``dashboard`` source, up and down, on each backend.

A database at 0010 holding a row of every source it knew is upgraded (every row kept as it
was, ``dashboard`` accepted), then downgraded: the ``dashboard`` rows say ``api`` again (what
they said before), the others are untouched, and the old CHECK refuses ``dashboard`` again.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import JSON, Integer, String, column, insert, select, table
from sqlalchemy.exc import IntegrityError

from jobs.storage.db import (
    EventLog,
    EventSource,
    UtcDateTime,
    current_revision,
    downgrade,
    make_engine,
    session_factory,
    upgrade,
)

AT = datetime(2017, 1, 24, 12, tzinfo=UTC)
OLD = ("cli", "api", "daemon", "import", "link")


#: The event log, ``source`` as plain text: the database's CHECK judges it, not the model.
LOG = table(
    "event_log",
    column("at", UtcDateTime()),
    column("received_at", UtcDateTime()),
    column("actor", String()),
    column("source", String()),
    column("kind", String()),
    column("program", String()),
    column("person_id", Integer()),
    column("payload", JSON()),
)


def sources(url: str) -> list[tuple[str, str]]:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            rows = session.execute(select(EventLog.actor, EventLog.source).order_by(EventLog.id))
            return [(actor, str(source)) for actor, source in rows]
    finally:
        engine.dispose()


def add(url: str, source: str, actor: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                insert(LOG).values(
                    at=AT,
                    received_at=AT,
                    actor=actor,
                    source=source,
                    kind="fcpa_ack",
                    program="fcpa",
                    person_id=1,
                    payload={"reason": "test"},
                )
            )
    finally:
        engine.dispose()


def test_upgrade_keeps_every_old_source_and_downgrade_maps_dashboard_to_api(
    empty_db_url: str,
) -> None:
    upgrade(empty_db_url, "0010")
    for source in OLD:
        add(empty_db_url, source, f"by-{source}")
    with pytest.raises(IntegrityError):  # 0010's CHECK: no such source yet
        add(empty_db_url, "dashboard", "too-early")
    before = [(f"by-{s}", s) for s in OLD]
    assert sources(empty_db_url) == before

    upgrade(empty_db_url, "0011")
    assert current_revision(empty_db_url) == "0011"
    assert sources(empty_db_url) == before
    add(empty_db_url, EventSource.DASHBOARD, "user:alice")
    assert sources(empty_db_url) == [*before, ("user:alice", "dashboard")]
    with pytest.raises(IntegrityError):  # still a closed list
        add(empty_db_url, "browser", "nobody")

    downgrade(empty_db_url, "0010")
    assert current_revision(empty_db_url) == "0010"
    assert sources(empty_db_url) == [*before, ("user:alice", "api")]
    with pytest.raises(IntegrityError):
        add(empty_db_url, "dashboard", "after-downgrade")

    upgrade(empty_db_url, "head")
    add(empty_db_url, "dashboard", "user:bob")
    assert sources(empty_db_url)[-1] == ("user:bob", "dashboard")


def test_downgrade_below_the_link_source_keeps_every_row(empty_db_url: str) -> None:
    """0009's downgrade maps ``link`` back to ``api`` as 0011's does ``dashboard``: a database
    holding answers from links and from the dashboard goes back to 0008 with every row."""
    upgrade(empty_db_url, "head")
    for source in (*OLD, "dashboard"):
        add(empty_db_url, source, f"by-{source}")
    downgrade(empty_db_url, "0008")
    assert current_revision(empty_db_url) == "0008"
    assert sources(empty_db_url) == [
        (f"by-{s}", "api" if s in ("link", "dashboard") else s) for s in (*OLD, "dashboard")
    ]
    with pytest.raises(IntegrityError):  # 0008's CHECK: no link source
        add(empty_db_url, "link", "after-downgrade")
