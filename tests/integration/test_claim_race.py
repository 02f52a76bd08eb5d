"""Replicas claiming at the same instant never split a combined escalation between them.

Several claimers, each with an engine of its own (a replica), start together on an outbox of
big escalation groups interleaved with ordinary rows and claim until nothing is left. Every
group's rows must land in one claim (a group larger than ``combine_max`` in as few claims as
it needs), no row twice, and no claim may fail ("deadlock detected"). Real databases, no
mocks; on SQLite the claims are serialised by its write lock, on PostgreSQL by the claim lock.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from calendars.escalations import COMBINED_JOBS
from calendars.notices import Notice
from jobs.storage import outbox
from jobs.storage.db import make_engine, session_factory

NOW = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)
EXPIRES = NOW + timedelta(days=30)
LIMIT = 10  # rows a claim selects before bringing in groups' mates
MOST = 50  # combine_max
CLAIMERS = 4
#: Escalation groups by recipient: (due instant, size). The last is larger than MOST.
GROUPS = {
    **{f"owner{g}@example.com": (NOW - timedelta(hours=g % 2), 40) for g in range(8)},
    "cfo@example.com": (NOW - timedelta(hours=1), 130),
}
ORDINARY = 200

Group = tuple[str, datetime]


def notice(n: int, *, job: str, recipient: str, due: datetime) -> Notice:
    return Notice(
        program="fcpa",
        occurrence="2026",
        person_id=None,
        recipient_key=f"e{n}",
        recipient=recipient,
        job=job,
        step=f"{job}-{recipient}",
        template=job,
        context={"person": f"Employee {n}", "due": "2026-02-04"},
        due=due,
        expires=EXPIRES,
    )


def outbox_rows() -> list[Notice]:
    """Return the groups' rows and the ordinary ones round-robin, so that ids interleave and
    every claim's first ``LIMIT`` rows touch several groups at once."""
    queues = [
        [notice(n, job="fcpa_escalation", recipient=recipient, due=due) for n in range(size)]
        for recipient, (due, size) in GROUPS.items()
    ]
    queues.append(
        [
            notice(
                n,
                job="fcpa_reminder",
                recipient=f"e{n}@example.com",
                due=NOW - timedelta(hours=n % 3),
            )
            for n in range(ORDINARY)
        ]
    )
    out: list[Notice] = []
    while any(queues):
        for queue in queues:
            if queue:
                out.append(queue.pop(0))
    return out


@pytest.fixture
def replicas(db_url: str) -> Iterator[list[Engine]]:
    engines = [make_engine(db_url) for _ in range(CLAIMERS)]
    try:
        yield engines
    finally:
        for engine in engines:
            engine.dispose()


def claim_in(session: Session, owner: str, limit: int = LIMIT) -> list[outbox.ClaimedMessage]:
    """Claim as delivery does, in ``session``'s transaction (the caller commits)."""
    return outbox.claim_due(
        session,
        now=NOW,
        owner=owner,
        lease=LEASE,
        limit=limit,
        combine=COMBINED_JOBS,
        combine_max=MOST,
    )


def claim(engine: Engine, owner: str) -> list[outbox.ClaimedMessage]:
    with session_factory(engine).begin() as session:
        return claim_in(session, owner)


def claim_together(engines: list[Engine]) -> list[list[outbox.ClaimedMessage]]:
    """Start every replica's claim loop at once; return every claim made, in no order."""
    start = threading.Barrier(len(engines))

    def replica(index: int) -> list[list[outbox.ClaimedMessage]]:
        start.wait()
        mine = []
        while batch := claim(engines[index], f"replica{index}"):
            mine.append(batch)
        return mine

    with ThreadPoolExecutor(len(engines)) as pool:
        # .result() raises a claim's error ("deadlock detected") here: the test fails on it.
        return [batch for done in pool.map(replica, range(len(engines))) for batch in done]


def test_concurrent_claims_never_split_a_group(backend: str, replicas: list[Engine]) -> None:
    with session_factory(replicas[0]).begin() as session:
        outbox.enqueue(session, outbox_rows(), NOW)

    batches = claim_together(replicas)

    ids = [m.id for batch in batches for m in batch]
    assert not [i for i, n in Counter(ids).items() if n > 1], "a row was claimed twice"
    assert len(ids) == sum(size for _, size in GROUPS.values()) + ORDINARY
    claims_of: dict[Group, list[int]] = defaultdict(list)
    for batch in batches:
        held = Counter(
            (m.notice.recipient, m.notice.due) for m in batch if m.notice.job in COMBINED_JOBS
        )
        for group, count in held.items():
            claims_of[group].append(count)
    split = {
        recipient: claims_of[recipient, due]
        for recipient, (due, size) in GROUPS.items()
        if len(claims_of[recipient, due]) != math.ceil(size / MOST)
        or max(claims_of[recipient, due]) > MOST
    }
    assert not split, f"groups split between claims (rows per claim): {split}"
    if backend == "postgres":
        # The claims did overlap: more than one replica got work. (Not on SQLite: its busy
        # handler sleeps, so the thread that just committed usually takes the lock again.)
        assert len({m.lease_owner for batch in batches for m in batch}) >= 2


def _waiting_on_advisory_lock(engine: Engine) -> bool:
    with engine.connect() as connection:
        found = connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'"
                " AND datname = current_database()"
            )
        ).scalar_one()
    return bool(found)


def test_a_claim_waits_for_an_open_claim_then_sees_what_it_took(
    backend: str, replicas: list[Engine]
) -> None:
    """PostgreSQL: the second claim waits for the first one's commit instead of skipping its
    rows and taking the rest of its groups (what split them)."""
    if backend != "postgres":
        pytest.skip("SQLite's claims wait for its write lock (BEGIN IMMEDIATE)")
    first, second, watcher = replicas[:3]
    # The groups alone: the first claim's first rows are of several of them.
    groups = [m for m in outbox_rows() if m.job in COMBINED_JOBS]
    with session_factory(first).begin() as session:
        outbox.enqueue(session, groups, NOW)
    factory = session_factory(first)
    # The session ends first: on a failure it rolls back (its locks go) before the pool waits.
    with ThreadPoolExecutor(1) as pool, factory() as open_claim:
        open_claim.begin()
        held = claim_in(open_claim, "first")
        waiting = pool.submit(claim, second, "second")
        deadline = time.monotonic() + 60
        while not _waiting_on_advisory_lock(watcher):
            assert not waiting.done(), "the second claim did not wait for the first"
            assert time.monotonic() < deadline, "the second claim never waited on the lock"
            time.sleep(0.05)
        open_claim.commit()
        after = waiting.result(timeout=60)
    assert after and not {m.id for m in held} & {m.id for m in after}
    # The groups the first claim began, it finished: the second holds none of their rows
    # (but the part of the big group beyond MOST).
    began = {m.notice.recipient for m in held}
    assert len(began) >= 2
    assert not {m.notice.recipient for m in after} & began - {"cfo@example.com"}


def test_a_claim_never_waits_on_a_row_someone_else_is_changing(
    backend: str, replicas: list[Engine]
) -> None:
    """PostgreSQL: a pending row locked by another transaction (planning cancelling it, an
    operator's action) is left for a later claim: the claim, which holds the claim lock, never
    waits on a row lock, so neither other replicas' claims nor a deadlock can hang on it."""
    if backend != "postgres":
        pytest.skip("SQLite has one writer at a time: no row locks")
    engine, other_engine = replicas[:2]
    rows = [
        notice(n, job="fcpa_escalation", recipient="cfo@example.com", due=NOW) for n in range(6)
    ]
    with session_factory(engine).begin() as session:
        outbox.enqueue(session, rows, NOW)
        ids = sorted(session.execute(text("SELECT id FROM outbox")).scalars())
    locked = ids[3]
    with other_engine.connect() as other, other.begin():
        other.execute(text("SELECT id FROM outbox WHERE id = :i FOR UPDATE"), {"i": locked})
        with session_factory(engine).begin() as session:
            session.execute(text("SET LOCAL lock_timeout = '5s'"))  # a wait fails the test
            got = claim_in(session, "a", limit=1)
        assert sorted(m.id for m in got) == [i for i in ids if i != locked]
    assert [m.id for m in claim(engine, "b")] == [locked]
