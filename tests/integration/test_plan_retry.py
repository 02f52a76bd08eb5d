"""A whole plan that fails is made again by the next sweep, however long the machine has run.

The daemon's whole plan is its only way to plan people nothing has changed for: the
incremental ticks replan the people of new facts and of instants the clock crossed, so a
person the whole plan never reached has nothing for them to find. When the whole plan failed
(the database restarted under it, SQLite's write lock held past the busy timeout) it used to
be owed through a start time of 0 on ``time.monotonic()``, which counts from the machine's
boot: on a machine up for less than ``full_every`` (6 h) it was not made again for hours, and
the people it had not reached got nothing (1,000 of 1,500 requests went out after a
PostgreSQL restart, then nothing). ``full_every`` is set far beyond any uptime here, so the
test does not depend on the machine's.

The fault is real and transient: the database's lock held by another connection while the
daemon's first whole plan runs (SQLite's write lock, with a short busy timeout; PostgreSQL's
planning lock, with a short ``lock_timeout``), then released.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from sqlalchemy import make_url

from config.loader import load_programs
from config.settings import Settings
from jobs.storage.db import PLANNING_LOCK, OutboxMessage, OutboxState, SupplierTier, make_engine
from scheduler.daemon.loop import Daemon
from scheduler.daemon.service import Service
from tests.daemon_support import WAVE_1, Database, database, eventually
from tests.smtp_sink import Server, sinks

LOCK_WAIT = 0.2  # seconds the daemon waits for a lock before its statement fails
WAVE = 5  # suppliers, so wave-1 requests


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    with database(db_url) as made:
        yield made


@pytest.fixture
def smtp() -> Iterator[Server]:
    with sinks() as started:
        yield started.start()


@contextmanager
def lock_held(db: Database) -> Iterator[None]:
    """Hold, from a connection of the test's own, the lock the daemon's planning needs."""
    url = make_url(db.url)
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        blocker = sqlite3.connect(url.database, isolation_level=None, timeout=10)
        blocker.execute("BEGIN IMMEDIATE")  # SQLite's write lock
        try:
            yield
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        return
    engine = make_engine(db.url)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(f"SELECT pg_advisory_lock({PLANNING_LOCK})")
            connection.commit()
            try:
                yield
            finally:
                connection.exec_driver_sql(f"SELECT pg_advisory_unlock({PLANNING_LOCK})")
                connection.commit()
    finally:
        engine.dispose()


def service_for(db: Database, smtp: Server, tmp_path: Path) -> Service:
    """A service whose statements give up on a lock after LOCK_WAIT seconds."""
    url = make_url(db.url)
    if url.get_backend_name() == "sqlite":
        engine = make_engine(url, sqlite_busy_timeout=LOCK_WAIT)
    else:
        timeout = f"-c lock_timeout={int(LOCK_WAIT * 1000)}"
        engine = make_engine(url.update_query_dict({"options": timeout}))
    settings = Settings(
        database_url=db.url,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_security="none",
        maildir=tmp_path / "maildir",
    )
    return Service(settings, load_programs(None), engine=engine, transport=smtp.transport())


def daemon_for(db: Database, smtp: Server, tmp_path: Path) -> Daemon:
    db.add_suppliers(WAVE, SupplierTier.DIRECT)
    service = service_for(db, smtp, tmp_path)
    year = 365 * 24 * 3600.0  # longer than this machine has been up: only a retry can plan
    return Daemon(service, clock=lambda: WAVE_1, sweep=0.2, poll=0.2, full_every=year)


def wave_sent(db: Database) -> bool:
    requests = db.messages(OutboxMessage.job == "cmrt_request", OutboxMessage.due_at <= WAVE_1)
    return len(requests) == WAVE and {m.state for m in requests} == {OutboxState.SENT}


async def stopped(daemon: Daemon, task: asyncio.Task[None] | None) -> None:
    """Stop the daemon (if it started: else the test's own error is the one to see); check
    that it ran without an error."""
    daemon.stop.set()
    if task is None:
        return
    await asyncio.wait_for(task, timeout=10)
    assert task.exception() is None


def assert_sent_once(db: Database, smtp: Server) -> None:
    sent = db.messages(OutboxMessage.state == OutboxState.SENT)
    assert smtp.recorder.message_ids == Counter(m.message_id for m in sent)


async def test_a_whole_plan_that_failed_is_made_again_by_the_next_sweep(
    db: Database, smtp: Server, tmp_path: Path
) -> None:
    daemon = daemon_for(db, smtp, tmp_path)
    task: asyncio.Task[None] | None = None
    try:
        with ExitStack() as fault:
            # The daemon's own planning lock sequences the fault: the whole plan it starts
            # with waits for it before its first write, and meanwhile the database's lock is
            # taken (after the daemon's migrations, which need SQLite's write lock too).
            async with daemon._plan_lock:
                task = asyncio.create_task(daemon.run())
                await eventually(lambda: daemon.running, timeout=10, what="the daemon starts")
                fault.enter_context(lock_held(db))
            await eventually(
                lambda: daemon.plan_error is not None, timeout=10, what="the whole plan fails"
            )
            error = daemon.plan_error
            assert error is not None and "lock" in error, error
            assert db.messages() == [], "planned while the lock was held"
        await eventually(
            lambda: daemon.plan_error is None, timeout=5, what="a plan succeeds after the lock"
        )
        await eventually(
            lambda: wave_sent(db), timeout=10, what="the wave planned and sent after the lock"
        )
    finally:
        await stopped(daemon, task)
    assert_sent_once(db, smtp)


async def test_a_whole_plan_that_failed_before_reading_the_event_log_is_made_again(
    db: Database, smtp: Server, tmp_path: Path
) -> None:
    """The database refuses even reads at start (the event log locked): the whole plan fails
    before the daemon has read the log, so no tick can plan incrementally; the next tick
    starts the whole plan again."""
    if make_url(db.url).get_backend_name() == "sqlite":
        pytest.skip("an SQLite reader (WAL) never waits for a lock")
    daemon = daemon_for(db, smtp, tmp_path)
    task: asyncio.Task[None] | None = None
    engine = make_engine(db.url)
    try:
        with engine.connect() as blocker:
            # The daemon's migrations read alembic_version only: it starts, then its first
            # read of the event log waits out the lock_timeout and fails.
            blocker.exec_driver_sql("LOCK TABLE event_log IN ACCESS EXCLUSIVE MODE")
            task = asyncio.create_task(daemon.run())
            await eventually(
                lambda: daemon.plan_error is not None, timeout=10, what="the whole plan fails"
            )
            assert daemon._cursor is None, "the log was read: not the case under test"
            blocker.rollback()
        await eventually(
            lambda: wave_sent(db), timeout=10, what="the wave planned and sent after the lock"
        )
    finally:
        engine.dispose()
        await stopped(daemon, task)
    assert_sent_once(db, smtp)
