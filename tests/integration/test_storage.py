"""Storage contract, run on every backend: migrations, UTC instants, and the outbox rules."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from calendars.notices import Notice
from jobs.storage import outbox
from jobs.storage.db import (
    MIGRATIONS_DIR,
    Base,
    FeedToken,
    OutboxMessage,
    OutboxState,
    begin_write,
    current_revision,
    downgrade,
    make_engine,
    normalize_url,
    session_factory,
    upgrade,
)

T0 = datetime(2017, 5, 1, 12, 0, tzinfo=UTC)
# The newest migration (files are numbered): engineers adding one need not edit this file.
HEAD = max(p.name.partition("_")[0] for p in (MIGRATIONS_DIR / "versions").glob("[0-9]*_*.py"))
LEASE = timedelta(minutes=5)
EXPIRES = T0 + timedelta(days=365)
TABLES = {
    "people",
    "option_grants",
    "obligations",
    "event_log",
    "outbox",
    "event_versions",
    "feed_tokens",
}


def planned(n: int, *, due: datetime = T0, job: str = "cmrt_follow_up", **kw: Any) -> Notice:
    fields: dict[str, Any] = {
        "program": "cm",
        "occurrence": "2016",
        "person_id": None,
        "recipient_key": f"supplier{n}@example.com",
        "recipient": f"supplier{n}@example.com",
        "job": job,
        "step": job,
        "template": "cmrt_follow_up",
        "context": {"n": n, "wave": "1"},
        "due": due,
        "expires": EXPIRES,
    }
    fields.update(kw)
    return Notice(**fields)


def row(session: Session, identity: str) -> OutboxMessage:
    session.expire_all()
    return session.execute(
        select(OutboxMessage).where(OutboxMessage.identity == identity)
    ).scalar_one()


def claim(engine: Engine, owner: str, *, now: datetime = T0, limit: int = 100) -> list[int]:
    return [m.id for m in claims(engine, owner, now=now, limit=limit)]


def claims(
    engine: Engine, owner: str, *, now: datetime = T0, limit: int = 100
) -> list[outbox.ClaimedMessage]:
    with session_factory(engine).begin() as s:
        return outbox.claim_due(s, now=now, owner=owner, lease=LEASE, limit=limit)


# --- migrations ------------------------------------------------------------------------------


def test_upgrade_from_empty_to_head(empty_db_url: str) -> None:
    assert current_revision(empty_db_url) is None
    upgrade(empty_db_url)
    assert current_revision(empty_db_url) == HEAD
    engine = make_engine(empty_db_url)
    try:
        assert set(inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_head_to_base_to_head(empty_db_url: str) -> None:
    upgrade(empty_db_url)
    downgrade(empty_db_url, "base")
    assert current_revision(empty_db_url) is None
    engine = make_engine(empty_db_url)
    try:
        assert not TABLES & set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    upgrade(empty_db_url, "head")
    assert current_revision(empty_db_url) == HEAD


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


# --- engine and instants ---------------------------------------------------------------------


def test_normalize_url_picks_psycopg_3() -> None:
    assert normalize_url("postgresql://u@h:5/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite"


def test_sqlite_engine_creates_the_directory_and_sets_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a' / 'b' / 'tickler.db'}", sqlite_busy_timeout=2)
    try:
        with engine.connect() as connection:
            assert connection.scalar(text("PRAGMA journal_mode")) == "wal"
            assert connection.scalar(text("PRAGMA foreign_keys")) == 1
            assert connection.scalar(text("PRAGMA busy_timeout")) == 2000
        assert (tmp_path / "a" / "b" / "tickler.db").exists()
        # AUTOCOMMIT skips the BEGIN that the engine otherwise emits itself.
        with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as connection:
            connection.exec_driver_sql("VACUUM")
    finally:
        engine.dispose()


def test_foreign_keys_are_enforced(session: Session) -> None:
    with pytest.raises(IntegrityError):
        outbox.enqueue(session, [planned(1, person_id=12345)], T0)
    session.rollback()


def test_utc_datetime_refuses_naive(session: Session) -> None:
    token = FeedToken(feed="person:1", token_hash="0" * 64, created_at=datetime(2017, 5, 1))
    session.add(token)
    with pytest.raises(StatementError, match="naive datetime"):
        session.flush()
    session.rollback()


def test_utc_datetime_reads_back_aware_utc(session: Session, backend: str) -> None:
    pacific = datetime(2003, 1, 20, 21, 0, tzinfo=ZoneInfo("America/Los_Angeles"))
    session.add(FeedToken(feed="person:1", token_hash="1" * 64, created_at=pacific))
    session.commit()
    if backend == "postgres":
        # The server returns timestamptz in the session's zone: it must not leak through.
        session.execute(text("SET TIME ZONE 'America/New_York'"))
    session.expire_all()
    stored = session.execute(select(FeedToken)).scalar_one().created_at
    assert stored == datetime(2003, 1, 21, 5, 0, tzinfo=UTC)
    assert stored.tzinfo is UTC
    session.rollback()


# --- enqueue ---------------------------------------------------------------------------------


def test_enqueue_is_idempotent(session: Session) -> None:
    first = outbox.enqueue(session, [planned(1)], T0)
    second = outbox.enqueue(session, [planned(1)], T0 + timedelta(hours=1))
    session.commit()
    assert (first.inserted, first.updated, first.unchanged) == (1, 0, 0)
    assert (second.inserted, second.updated, second.unchanged) == (0, 0, 1)
    assert outbox.counts(session)[OutboxState.PENDING] == 1
    stored = row(session, planned(1).identity)
    assert stored.created_at == T0
    assert stored.state is OutboxState.PENDING


def test_enqueue_updates_a_pending_row_whose_plan_changed(session: Session) -> None:
    outbox.enqueue(session, [planned(1), planned(2)], T0)
    later = T0 + timedelta(days=7)
    report = outbox.enqueue(
        session,
        [planned(1, due=later), planned(2, context={"n": 2, "wave": "2"})],
        T0 + timedelta(hours=1),
    )
    session.commit()
    assert (report.inserted, report.updated, report.unchanged) == (0, 2, 0)
    assert row(session, planned(1).identity).due_at == later
    assert row(session, planned(2).identity).context == {"n": 2, "wave": "2"}
    assert row(session, planned(2).identity).updated_at == T0 + timedelta(hours=1)


def test_enqueue_never_touches_a_sent_row(engine: Engine, session: Session) -> None:
    outbox.enqueue(session, [planned(1)], T0)
    session.commit()
    [claimed] = claims(engine, "w1")
    with session.begin():
        assert outbox.mark_sent(session, claimed.id, claimed.lease, T0)
    report = outbox.enqueue(session, [planned(1, due=T0 + timedelta(days=1))], T0)
    session.commit()
    assert (report.inserted, report.updated, report.unchanged) == (0, 0, 1)
    stored = row(session, planned(1).identity)
    assert (stored.state, stored.due_at, stored.sent_at) == (OutboxState.SENT, T0, T0)


def test_two_planners_at_once_make_one_row(engine: Engine) -> None:
    factory = session_factory(engine)
    with ThreadPoolExecutor(max_workers=1) as pool, begin_write(factory) as first:
        assert outbox.enqueue(first, [planned(1)], T0).inserted == 1
        # The second planner starts while the first has not committed: it must wait (SQLite's
        # write lock, PostgreSQL's uncommitted unique key) and then find the row there.
        second = pool.submit(_enqueue_in_new_transaction, factory, planned(1))
        time.sleep(0.2)
        assert not second.done()
    report = second.result(timeout=30)
    assert (report.inserted, report.unchanged) == (0, 1)
    with factory() as s:
        assert outbox.counts(s)[OutboxState.PENDING] == 1


def _enqueue_in_new_transaction(
    factory: sessionmaker[Session], message: Notice
) -> outbox.EnqueueReport:
    with begin_write(factory) as s:
        return outbox.enqueue(s, [message], T0)


def test_enqueue_many_crosses_chunks(session: Session) -> None:
    batch = [planned(n) for n in range(outbox.CHUNK * 2 + 7)]
    assert outbox.enqueue(session, batch, T0).inserted == len(batch)
    again = outbox.enqueue(session, batch[::-1], T0)
    session.commit()
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, len(batch))
    assert outbox.counts(session)[OutboxState.PENDING] == len(batch)


def test_enqueue_refuses_an_identity_twice_in_one_batch(session: Session) -> None:
    with pytest.raises(ValueError, match="planned twice"):
        outbox.enqueue(session, [planned(1), planned(1)], T0)


def test_planned_message_refuses_naive_instants() -> None:
    with pytest.raises(ValueError, match="due 2017-05-01T00:00:00 is naive"):
        planned(1, due=datetime(2017, 5, 1))
    with pytest.raises(ValueError, match="expires 2017-05-01T00:00:00 is naive"):
        planned(1, expires=datetime(2017, 5, 1))


# --- claims ----------------------------------------------------------------------------------


def test_claim_takes_due_rows_in_order_and_never_twice(engine: Engine, session: Session) -> None:
    batch = [planned(n, due=T0 - timedelta(minutes=n)) for n in range(10)]
    batch.append(planned(99, due=T0 + timedelta(seconds=1)))  # not due yet
    outbox.enqueue(session, batch, T0 - timedelta(days=1))
    session.commit()

    with session_factory(engine).begin() as s:
        first = outbox.claim_due(s, now=T0, owner="a", lease=LEASE, limit=6)
    assert [m.notice.due for m in first] == sorted(m.notice.due for m in first)
    assert first[0].notice.due == T0 - timedelta(minutes=9)
    assert first[0].notice == batch[9]  # the planned message, as it was planned
    assert {(m.lease_owner, m.lease_until, m.attempts) for m in first} == {("a", T0 + LEASE, 1)}

    second = claim(engine, "b")
    assert len(first) == 6 and len(second) == 4
    assert not {m.id for m in first} & set(second)
    assert claim(engine, "c") == []
    assert outbox.counts(session) == {
        **dict.fromkeys(OutboxState, 0),
        OutboxState.CLAIMED: 10,
        OutboxState.PENDING: 1,
    }


def test_claim_with_an_open_claim_in_another_session(engine: Engine, backend: str) -> None:
    factory = session_factory(engine)
    with factory.begin() as s:
        outbox.enqueue(s, [planned(n) for n in range(4)], T0)
    with ThreadPoolExecutor(1) as pool, factory() as a:  # a ends (rolls back) first
        a.begin()
        got_a = outbox.claim_due(a, now=T0, owner="a", lease=LEASE, limit=2)
        if backend == "postgres":
            # a has not committed: b waits for its turn (the claim lock), then sees a's rows
            # claimed and takes the others (tests/integration/test_claim_race.py shows the wait).
            b = pool.submit(claim, engine, "b")
        a.commit()
        if backend == "postgres":
            got_b = b.result(timeout=60)
            assert len(got_b) == 2 and not {m.id for m in got_a} & set(got_b)
    assert len(got_a) == 2
    assert len(claim(engine, "c")) == (0 if backend == "postgres" else 2)


def test_concurrent_claimers_share_the_rows_exactly(
    engine: Engine, session: Session, backend: str
) -> None:
    total = 2000
    outbox.enqueue(session, [planned(n) for n in range(total)], T0)
    session.commit()

    def worker(owner: str) -> list[int]:
        mine: list[int] = []
        while batch := claim(engine, owner, limit=37):
            mine.extend(batch)
        return mine

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(worker, ["w1", "w2", "w3"]))
    everything = [i for r in results for i in r]
    assert len(everything) == total
    assert not [i for i, n in Counter(everything).items() if n > 1]
    if backend == "postgres":
        # Proof that the claims really overlapped. Not on SQLite: its busy handler sleeps, so
        # the thread that just committed usually wins the lock again (fine for one replica).
        assert sum(1 for r in results if r) >= 2


def test_claim_on_sqlite_must_open_the_transaction(session: Session, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("BEGIN IMMEDIATE is SQLite's")
    outbox.counts(session)  # a read begins a (deferred) transaction
    with pytest.raises(RuntimeError, match="begin_immediate"):
        outbox.claim_due(session, now=T0, owner="a", lease=LEASE, limit=1)
    session.rollback()


def test_retry_backoff_delays_the_next_claim(engine: Engine, session: Session) -> None:
    outbox.enqueue(session, [planned(1)], T0)
    session.commit()
    [claimed] = claims(engine, "a")
    mid = claimed.id
    retry_at = T0 + timedelta(minutes=10)
    with session.begin():
        assert outbox.mark_retry(session, mid, claimed.lease, retry_at, 421, "try later", T0)
    assert claim(engine, "a", now=retry_at - timedelta(seconds=1)) == []
    assert outbox.next_due_at(session) == retry_at
    session.rollback()
    assert claim(engine, "b", now=retry_at) == [mid]
    stored = row(session, planned(1).identity)
    assert (stored.attempts, stored.last_code, stored.last_error) == (2, 421, "try later")
    assert stored.lease_owner == "b"


def test_reaping_returns_expired_leases(engine: Engine, session: Session) -> None:
    outbox.enqueue(session, [planned(1)], T0)
    session.commit()
    [mid] = claim(engine, "dead")
    with session.begin():
        assert outbox.reap_leases(session, T0 + LEASE - timedelta(seconds=1)) == 0
    with session.begin():
        assert outbox.reap_leases(session, T0 + LEASE + timedelta(seconds=1)) == 1
    stored = row(session, planned(1).identity)
    assert (stored.state, stored.lease_owner, stored.lease_until) == (
        OutboxState.PENDING,
        None,
        None,
    )
    assert stored.last_error == "lease expired: dead"
    session.rollback()
    assert claim(engine, "alive", now=T0 + LEASE + timedelta(seconds=2)) == [mid]


def test_reaping_skips_rows_another_transaction_holds(
    engine: Engine, session: Session, backend: str
) -> None:
    """On PostgreSQL a reaper neither waits for nor deadlocks on a row locked elsewhere (a
    second replica reaping, a late mark): it returns the others and leaves that one."""
    if backend != "postgres":
        pytest.skip("SQLite has one writer at a time: no row locks to skip")
    outbox.enqueue(session, [planned(1), planned(2)], T0)
    session.commit()
    held, free = claim(engine, "dead")
    later = T0 + LEASE + timedelta(seconds=1)

    def state(mid: int) -> OutboxState:
        stored = session.get(OutboxMessage, mid)
        assert stored is not None
        return stored.state

    with engine.connect() as other, other.begin():
        other.execute(text("SELECT id FROM outbox WHERE id = :i FOR UPDATE"), {"i": held})
        with session.begin():
            session.execute(text("SET LOCAL lock_timeout = '2s'"))  # a wait fails the test
            assert outbox.reap_leases(session, later) == 1
        assert (state(free), state(held)) == (OutboxState.PENDING, OutboxState.CLAIMED)
        session.rollback()
    with session.begin():
        assert outbox.reap_leases(session, later) == 1  # released: the next sweep takes it
    assert state(held) is OutboxState.PENDING


@pytest.mark.parametrize("finish", ["sent", "retry", "failed", "skipped", "release"])
@pytest.mark.parametrize("second_owner", ["fast", "slow"])
def test_mark_fails_once_the_lease_was_taken_over(
    engine: Engine, session: Session, finish: str, second_owner: str
) -> None:
    """A reaped claim cannot finish the claim that replaced it, even the same worker's own
    (a later batch of one daemon): the claim is the owner and its lease instant."""
    outbox.enqueue(session, [planned(1)], T0)
    session.commit()
    [first] = claims(engine, "slow")
    later = T0 + LEASE * 2
    with session.begin():
        outbox.reap_leases(session, later)
    [second] = claims(engine, second_owner, now=later)
    assert second.id == first.id

    def mark(lease: outbox.Lease) -> bool:
        mid = first.id
        with session.begin():
            match finish:
                case "sent":
                    return outbox.mark_sent(session, mid, lease, later)
                case "retry":
                    return outbox.mark_retry(session, mid, lease, later, None, "timeout", later)
                case "failed":
                    return outbox.mark_failed(session, mid, lease, 550, "no such user", later)
                case "skipped":
                    return outbox.mark_skipped(session, mid, lease, "expired", later)
                case _:
                    return outbox.release(session, mid, lease, later)

    assert mark(first.lease) is False
    assert row(session, planned(1).identity).state is OutboxState.CLAIMED
    session.rollback()
    assert mark(second.lease) is True
    assert mark(second.lease) is False  # finished: no longer claimed by anyone
    expected = {
        "sent": OutboxState.SENT,
        "retry": OutboxState.PENDING,
        "failed": OutboxState.FAILED,
        "skipped": OutboxState.SKIPPED,
        "release": OutboxState.PENDING,
    }[finish]
    assert row(session, planned(1).identity).state is expected
    session.rollback()


# --- cancellation ----------------------------------------------------------------------------


def test_cancel_pending_cancels_only_pending_rows(engine: Engine, session: Session) -> None:
    outbox.enqueue(session, [planned(1), planned(2), planned(3)], T0)
    session.commit()
    claimed = claim(engine, "w", limit=1)
    assert len(claimed) == 1
    identities = [planned(n).identity for n in (1, 2, 3)] + ["no/such/message"]
    with session.begin():
        assert outbox.cancel_pending(session, identities, "supplier responded", T0) == 2
    assert outbox.counts(session)[OutboxState.CLAIMED] == 1
    cancelled = [
        m for m in (row(session, planned(n).identity) for n in (1, 2, 3)) if m.state == "cancelled"
    ]
    assert {m.last_error for m in cancelled} == {"supplier responded"}
    session.rollback()


def test_cancel_pending_except_keeps_the_plan_and_its_scope(
    engine: Engine, session: Session
) -> None:
    follow_ups = [planned(n) for n in range(5)]
    escalation = planned(0, job="cmrt_escalation")
    other_year = planned(0, occurrence="2017", step="x")
    outbox.enqueue(session, [*follow_ups, escalation, other_year], T0)
    session.commit()
    [sent] = claims(engine, "w", limit=1)  # follow-up 0 (lowest id) is claimed, then sent
    with session.begin():
        outbox.mark_sent(session, sent.id, sent.lease, T0)

    keep = {follow_ups[1].identity, follow_ups[2].identity}
    with session.begin():
        cancelled = outbox.cancel_pending_except(session, "cm", "2016", "cmrt_follow_up", keep, T0)
    assert cancelled == 2  # follow-ups 3 and 4
    states = {m.identity: row(session, m.identity).state for m in [*follow_ups, escalation]}
    assert states == {
        follow_ups[0].identity: OutboxState.SENT,
        follow_ups[1].identity: OutboxState.PENDING,
        follow_ups[2].identity: OutboxState.PENDING,
        follow_ups[3].identity: OutboxState.CANCELLED,
        follow_ups[4].identity: OutboxState.CANCELLED,
        escalation.identity: OutboxState.PENDING,
    }
    assert row(session, other_year.identity).state is OutboxState.PENDING
    session.rollback()


# --- what is next ----------------------------------------------------------------------------


def test_next_due_at_and_counts(engine: Engine, session: Session) -> None:
    assert outbox.next_due_at(session) is None
    outbox.enqueue(
        session,
        [planned(1, due=T0 + timedelta(days=2)), planned(2, due=T0 + timedelta(days=1))],
        T0,
    )
    outbox.enqueue(
        session, [planned(3, program="fcpa", occurrence="2027", recipient_key="x", step="ack")], T0
    )
    session.commit()
    assert outbox.next_due_at(session) == T0
    session.rollback()
    claim(engine, "w", limit=1)  # planned(3) is due now; its lease ends at T0 + LEASE
    assert outbox.next_due_at(session) == T0 + LEASE
    assert outbox.counts(session, program="cm")[OutboxState.PENDING] == 2
    assert outbox.counts(session, program="fcpa")[OutboxState.CLAIMED] == 1
    assert sum(outbox.counts(session).values()) == 3
    session.rollback()
