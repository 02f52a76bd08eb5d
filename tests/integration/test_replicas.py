"""Several ``tickler run`` replicas on one PostgreSQL database, and one killed mid-wave.

The replicas are real processes sharing a fresh database cloned from the conftest's template;
the SMTP server is a process of its own (``python -m tests.smtp_sink``) that logs each
Message-ID it accepts, so that a copy sent twice is seen twice. Only the
``conflict-minerals-2016`` program is loaded, so that the 5,000 wave-1 requests are the
work and the other programs' plans do not crowd the two cores.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from jobs.storage.db import OutboxMessage, OutboxState, SupplierTier
from tests.conftest import PostgresServer
from tests.daemon_support import (
    CONNECTIONS,
    CRASH_WINDOW,
    FINAL,
    REPO,
    UNRECORDED,
    WAVE_1,
    Database,
    Tally,
    daemon_command,
    daemon_env,
    database,
    kill_all,
    log_records,
    sink_process,
    start_daemon,
    stop_all,
    wait_for,
    wait_while_running,
)

REPLICAS = 3
MESSAGES = 5000
LEASE = 2  # seconds: the dead replica's claims come back quickly
NOW = WAVE_1 + timedelta(minutes=30)  # the daemons' clock at start: wave 1 is due


@pytest.fixture
def pg_db(postgres_server: PostgresServer, postgres_template: str) -> Iterator[Database]:
    """A PostgreSQL database of the test's own, migrated (skipped without PostgreSQL)."""
    name = postgres_server.create("tickler_replicas", template=postgres_template)
    try:
        with database(postgres_server.url(name)) as made:
            yield made
    finally:
        postgres_server.drop(name)


@pytest.fixture
def program_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "programs"
    directory.mkdir()
    shutil.copy(REPO / "config" / "defaults" / "conflict-minerals-2016.toml", directory)
    return directory


def owner_of(log: Path) -> str:
    """Return the lease owner a daemon announced in its ``started`` log line."""
    wait_for(
        lambda: any(r.get("action") == "started" for r in log_records(log)),
        timeout=60,
        what=f"{log.name} starts",
    )
    return next(str(r["owner"]) for r in log_records(log) if r.get("action") == "started")


def claims_by_owner(db: Database) -> Counter[str]:
    with db.factory() as session:
        rows = session.execute(
            select(OutboxMessage.lease_owner, func.count())
            .where(OutboxMessage.state == OutboxState.CLAIMED)
            .group_by(OutboxMessage.lease_owner)
        )
        return Counter({str(owner): int(n) for owner, n in rows})


@pytest.mark.slow
@pytest.mark.postgres
def test_three_replicas_and_one_killed_deliver_5000_messages_duplicating_only_its_in_flight(
    pg_db: Database, program_dir: Path, tmp_path: Path
) -> None:
    """Three replicas share 5,000 due requests; the busiest is SIGKILLed after 1,500 sends.

    Delivered: all 5,000, each recorded ``sent`` and each Message-ID at the server.
    Retried: the killed replica's claims, reaped by the survivors once its 2 s lease ran out
    (``last_error`` says "lease expired: …"), plus any claim of a live replica whose lease ran
    out while the message waited for a connection (given back unsent, or reaped: never sent
    by two). Failed: none. Duplicated: only messages the killed replica held at its death
    (the server had accepted them, ``sent`` was not yet committed), at most its CONNECTIONS
    on the wire plus UNRECORDED waiting for their commit; nothing the survivors sent
    reached the server twice.
    """
    db = pg_db
    db.add_suppliers(MESSAGES, SupplierTier.DIRECT)
    settings = {"lease_seconds": LEASE, "sweep_seconds": 10, "program_dir": program_dir}
    started = time.monotonic()
    daemons: list[tuple[subprocess.Popen[bytes], Path]] = []
    with sink_process(tmp_path) as sink:
        try:
            for n in range(REPLICAS):
                log = tmp_path / f"replica-{n}.log"
                # Each replica's clock starts at NOW plus the time since the first started, so
                # that their clocks agree (to within their start-up times) and leases with them.
                now = NOW + timedelta(seconds=time.monotonic() - started)
                daemons.append((start_daemon(db, sink, now, log, **settings), log))
            owners = {owner_of(log): (process, log) for process, log in daemons}
            first, first_log = daemons[0]
            wait_while_running(
                first, lambda: sink.count() >= 1500, first_log, "1,500 sent", timeout=120
            )

            # The victim is the replica holding the most claims right now: it has sends in flight.
            busiest: list[str] = []

            def someone_sending() -> bool:
                busiest[:] = [o for o, _ in claims_by_owner(db).most_common(1) if o in owners]
                return bool(busiest)

            wait_for(someone_sending, timeout=30, what="a replica holding claims")
            victim = busiest[0]
            killed, _ = owners[victim]
            killed.kill()
            killed.wait(timeout=10)
            at_kill = sink.count()
            in_flight = {
                m.message_id: m.id
                for m in db.messages(
                    OutboxMessage.state == OutboxState.CLAIMED, OutboxMessage.lease_owner == victim
                )
            }
            survivors = [(p, log) for p, log in daemons if p is not killed]

            def all_sent() -> bool:
                return not db.unfinished(NOW) and sink.count() >= MESSAGES

            took = wait_while_running(
                survivors[0][0], all_sent, survivors[0][1], "every message sent", timeout=150
            )
            ids = sink.ids()
            stop_all(survivors)  # SIGTERM: each exits 0
        finally:
            kill_all(daemons)

    requests = db.messages(OutboxMessage.job == "cmrt_request", OutboxMessage.due_at <= NOW)
    tally = Tally.of(requests, ids)
    duplicated = {mid: n for mid, n in ids.items() if n > 1}
    reaped = db.messages(OutboxMessage.id.in_(list(in_flight.values())))
    survivor_owners = set(owners) - {victim}
    print(
        f"\n{REPLICAS} replicas, SIGKILL of {victim} after {at_kill} sends holding "
        f"{len(in_flight)} claims; the rest took {took:.1f} s. {tally}"
    )

    assert len(requests) == MESSAGES
    assert {m.state for m in db.due(NOW)} <= set(FINAL), "a due message is not finished"
    assert tally.delivered == MESSAGES, f"delivered {tally.delivered} of {MESSAGES}"
    assert tally.failed == 0, f"{tally.failed} recorded as failed"
    sent = {m.message_id for m in db.messages(OutboxMessage.state == OutboxState.SENT)}
    assert set(ids) == sent, "what the server got differs from what is recorded as sent"
    assert in_flight, "the killed replica held no claims: nothing was interrupted"
    assert set(duplicated) <= set(in_flight), (
        f"duplicated outside the killed replica's claims: {set(duplicated) - set(in_flight)}"
    )
    assert max(duplicated.values(), default=2) <= 2, f"a message went out 3+ times: {duplicated}"
    assert tally.duplicates <= CRASH_WINDOW, (
        f"{tally.duplicates} duplicates: more than the killed replica's {CONNECTIONS} "
        f"connections and {UNRECORDED} unrecorded sends"
    )
    by_survivors = [m for m in requests if m.lease_owner in survivor_owners]
    assert all(ids[m.message_id] == 1 for m in by_survivors if m.message_id not in in_flight), (
        "a message the survivors sent reached the server twice"
    )
    # The dead replica's leases were reaped and its messages sent by the survivors. (Reaped
    # once more, a row names the survivor whose lease ran out while it waited for a connection.)
    assert {m.state for m in reaped} == {OutboxState.SENT}
    assert {m.lease_owner for m in reaped} <= survivor_owners
    assert all((m.last_error or "").startswith("lease expired: ") for m in reaped), {
        m.last_error for m in reaped
    }
    assert tally.retried >= len(in_flight)
    assert not db.messages(OutboxMessage.state == OutboxState.CLAIMED)


def test_second_daemon_on_one_sqlite_file_exits_1_naming_postgresql(tmp_path: Path) -> None:
    """``tickler run`` twice on one SQLite file: the second is refused (exit 2, no sends).

    Delivered, retried, failed, duplicated: nothing (no message is due); the point is the
    refusal, whose message must tell the operator to use PostgreSQL for several replicas.
    """
    with database(f"sqlite:///{tmp_path / 'tickler.db'}") as db:
        log = tmp_path / "first.log"
        first = start_daemon(db, None, NOW, log)
        try:
            owner_of(log)
            second = subprocess.run(
                daemon_command(NOW),
                env=daemon_env(db, None, tmp_path),
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert first.poll() is None, "the first daemon died"
            stop_all([(first, log)])
        finally:
            kill_all([(first, log)])
    assert second.returncode == 1, second.stdout + second.stderr
    assert "PostgreSQL" in second.stderr, second.stderr
    assert "another tickler daemon is running" in second.stderr, second.stderr
