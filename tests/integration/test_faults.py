"""Faults around a running ``tickler run``: the database restarted, the SMTP server down or
misbehaving, the Maildir read-only or full; /metrics while it happens.

Every test says what was delivered (distinct Message-IDs at the server or in the Maildir),
retried (attempts beyond the first), recorded as failed, and duplicated (extra copies the
server accepted). Waits have deadlines; nothing asserts a fixed sleep.
"""

from __future__ import annotations

import asyncio
import email
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import create_engine

from jobs.storage.db import OutboxMessage, OutboxState, SupplierTier
from tests.daemon_support import (
    CRASH_WINDOW,
    FINAL,
    REPO,
    WAVE_1,
    Database,
    Tally,
    database,
    free_port,
    http_port,
    kill_all,
    log_records,
    postgres_bindir,
    postgres_cluster,
    scrape,
    sink_process,
    start_daemon,
    stop_all,
    wait_while_running,
)
from tests.smtp_sink import Recorder, Server, sinks

NOW = WAVE_1 + timedelta(minutes=30)  # the daemons' clock at start: wave 1 is due
# Retries come quickly: 0.2 s, doubling (each wait between half and all of that).
FAST_RETRIES = {"retry_backoff_seconds": 0.2, "max_attempts": 50}


@pytest.fixture
def program_dir(tmp_path: Path) -> Path:
    """Only ``conflict-minerals-2016``: its wave-1 requests are the work."""
    directory = tmp_path / "programs"
    directory.mkdir()
    shutil.copy(REPO / "config" / "defaults" / "conflict-minerals-2016.toml", directory)
    return directory


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    with database(f"sqlite:///{tmp_path / 'tickler.db'}") as made:
        yield made


def requests(db: Database) -> list[OutboxMessage]:
    return db.messages(OutboxMessage.job == "cmrt_request", OutboxMessage.due_at <= NOW)


def finished(db: Database) -> bool:
    """Every due message is sent, skipped or failed: nothing left to try."""
    return not db.unfinished(NOW)


def metric(samples: dict[str, float], name: str, **labels: str) -> float:
    key = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    return samples[key]


# PostgreSQL restarted under the replicas ---------------------------------------------------


@pytest.mark.slow
def test_postgres_restart_mid_wave_replicas_recover_by_themselves(
    tmp_path: Path, program_dir: Path
) -> None:
    """Three replicas send 1,500 requests; PostgreSQL stops (fast) a quarter of the way and
    starts again a second later.

    Delivered: all 1,500, without restarting any daemon (each logs ``tick_failed``, then
    ``recovered``; and ``planning_recovered`` after its last ``planning_failed``: the whole
    plan the restart cut is made again, or the people it had not reached get nothing).
    Retried: the messages whose outcome could not be committed while the
    server was down, reaped when their lease ran out. Failed: none. Duplicated: only those
    the server had accepted while ``sent`` could not be committed, at most CRASH_WINDOW per
    replica (a replica stops sending once a commit fails).
    """
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (scripts/pg-start installs it)")
    replicas, messages = 3, 1500
    with postgres_cluster(bindir) as cluster:
        admin = create_engine(cluster.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql("CREATE DATABASE tickler")
        admin.dispose()
        with database(cluster.url.rsplit("/", 1)[0] + "/tickler") as db:
            db.add_suppliers(messages, SupplierTier.DIRECT)
            settings = {"lease_seconds": 2, "sweep_seconds": 1, "program_dir": program_dir}
            started = time.monotonic()
            daemons: list[tuple[subprocess.Popen[bytes], Path]] = []
            with sink_process(tmp_path) as sink:
                try:
                    for n in range(replicas):
                        log = tmp_path / f"replica-{n}.log"
                        now = NOW + timedelta(seconds=time.monotonic() - started)
                        daemons.append((start_daemon(db, sink, now, log, **settings), log))
                    first, first_log = daemons[0]
                    wait_while_running(
                        first, lambda: sink.count() >= messages // 4, first_log, "a quarter sent"
                    )
                    at_restart = sink.count()
                    # Down a whole second: a replica commits every few tens of milliseconds,
                    # so each one meets the outage (a bare fast restart, 0.2 s, once slipped
                    # between every replica's statements and tested no recovery at all).
                    down = cluster.restart(down=1.0)
                    took = wait_while_running(
                        first,
                        lambda: sink.count() >= messages and finished(db),
                        first_log,
                        "every message sent after the restart",
                        timeout=90,
                    )
                    running = [p.poll() is None for p, _ in daemons]
                    ids = sink.ids()
                    stop_all(daemons)
                finally:
                    kill_all(daemons)
            rows = requests(db)
            tally = Tally.of(rows, ids)
            reaped = {m.message_id for m in rows if "lease expired" in (m.last_error or "")}
    actions = [[r.get("action") for r in log_records(log)] for _, log in daemons]
    print(
        f"\nPostgreSQL restarted after {at_restart} sends ({down:.1f} s); "
        f"the rest took {took:.1f} s. {tally}"
    )

    assert running == [True] * replicas, "a replica died: recovery needed a restart"
    assert tally.messages == messages
    assert tally.delivered == messages, f"delivered {tally.delivered} of {messages}"
    assert tally.failed == 0
    assert {m.state for m in rows} == {OutboxState.SENT}
    assert set(ids) == {m.message_id for m in rows}, "the server got something not recorded"
    duplicated = {mid for mid, n in ids.items() if n > 1}
    assert duplicated <= reaped, "a duplicate that was not a reaped, uncommitted send"
    assert max(ids.values()) <= 2
    assert tally.duplicates <= CRASH_WINDOW * replicas, (
        f"{tally.duplicates} duplicates: more than the {CRASH_WINDOW * replicas} sends in flight"
    )
    assert any("tick_failed" in a for a in actions), "no replica noticed the restart"
    for n, a in enumerate(actions):
        if "tick_failed" in a:
            assert "recovered" in a[a.index("tick_failed") :], f"replica {n} did not recover"
        if "planning_failed" in a:
            # A plan cut by the restart (the whole plan's, chunk by chunk) is made again.
            last = len(a) - 1 - a[::-1].index("planning_failed")
            assert "planning_recovered" in a[last:], f"replica {n}: planning never recovered"


# The SMTP server down, then back ----------------------------------------------------------


@pytest.mark.slow
def test_smtp_server_down_then_up_backlog_drains_without_loss_or_duplicates(
    sqlite_db: Database, tmp_path: Path, program_dir: Path
) -> None:
    """The daemon starts while nothing listens on the SMTP port; the server comes up later.

    While down: every due request is retried (connection refused: temporary, 0.2 s backoff
    doubling), none is failed, /metrics shows them as a due backlog. After: delivered all
    100, each exactly once (duplicates 0: nothing reached a server before it was up), failed
    0, and the backlog is 0.
    """
    db, messages = sqlite_db, 100
    db.add_suppliers(messages, SupplierTier.DIRECT)
    port = free_port()
    log = tmp_path / "daemon.log"
    settings = FAST_RETRIES | {"program_dir": program_dir, "smtp_timeout": 2}
    daemon = start_daemon(db, port, NOW, log, **settings)
    try:
        wait_while_running(
            daemon,
            lambda: len(rows := requests(db)) == messages and all(m.attempts >= 2 for m in rows),
            log,
            "every request tried twice while the server is down",
        )
        down = Tally.of(requests(db), Counter())
        errors = {(m.last_error or "").split(":")[0] for m in requests(db)}
        during = scrape(http_port(daemon, log))
        with sink_process(tmp_path, port=port) as sink:
            took = wait_while_running(
                daemon,
                lambda: sink.count() >= messages and finished(db),
                log,
                "the backlog drained",
            )
            after = scrape(http_port(daemon, log))
            ids = sink.ids()
            stop_all([(daemon, log)])
    finally:
        kill_all([(daemon, log)])
    rows = requests(db)
    tally = Tally.of(rows, ids)
    print(f"\nwhile down: {down}; drained {took:.1f} s after the server came up: {tally}")

    assert down.delivered == 0 and down.failed == 0
    assert down.retried >= messages, "every request should have been retried while down"
    assert errors == {"cannot connect to 127.0.0.1"}, errors
    assert tally.delivered == messages, f"delivered {tally.delivered} of {messages}: lost some"
    assert tally.failed == 0
    assert tally.duplicates == 0, f"{tally.duplicates} duplicates"
    assert ids == Counter(m.message_id for m in rows)
    # Pending (waiting for their retry) or claimed (being tried): none sent, none failed.
    waiting = metric(during, "tickler_outbox_due_backlog")
    trying = metric(during, "tickler_outbox_messages", state="claimed")
    assert waiting > 0 and waiting + trying >= messages, (waiting, trying)
    assert metric(during, "tickler_outbox_messages", state="failed") == 0
    assert metric(after, "tickler_outbox_due_backlog") == 0
    assert metric(after, "tickler_outbox_messages", state="sent") >= messages


# An SMTP server that misbehaves, one way per recipient -------------------------------------


class Fault(StrEnum):
    """What the server does to one attempt at a recipient (at RCPT unless it says DATA)."""

    REPLY_421 = "421 4.3.2 service shutting down"
    REPLY_451 = "451 4.3.0 try again later"
    REPLY_550 = "550 5.1.1 no such user"
    DROP_BEFORE_DATA = "hang up at RCPT"
    DROP_AFTER_DATA = "take the body, hang up before the 250"
    STALL_BEFORE_DATA = "say nothing at RCPT for longer than the timeout"
    STALL_AFTER_DATA = "take the body, say nothing for longer than the timeout"


STALL = 3.0  # seconds, against TICKLER_SMTP_TIMEOUT=1


@dataclass
class FaultyRecorder(Recorder):
    """A Recorder whose recipients each get a list of faults, one used up per attempt."""

    faults: dict[str, list[Fault]] = field(default_factory=dict)
    in_data: dict[SMTP, Fault] = field(default_factory=dict)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        planned = self.faults.get(address)
        fault = planned.pop(0) if planned else None
        if fault in (Fault.REPLY_421, Fault.REPLY_451, Fault.REPLY_550):
            self.rcpt_attempts[address] += 1
            return str(fault)
        if fault is Fault.DROP_BEFORE_DATA:
            self.rcpt_attempts[address] += 1
            assert server.transport is not None
            server.transport.close()
            await asyncio.sleep(10)  # cancelled by aiosmtpd when the connection is lost
        if fault is Fault.STALL_BEFORE_DATA:
            await asyncio.sleep(STALL)
        if fault in (Fault.DROP_AFTER_DATA, Fault.STALL_AFTER_DATA):
            self.in_data[server] = fault
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)  # recorded: it is in
        fault = self.in_data.pop(server, None)
        if fault is Fault.DROP_AFTER_DATA:
            assert server.transport is not None
            server.transport.close()
            await asyncio.sleep(10)
        if fault is Fault.STALL_AFTER_DATA:
            await asyncio.sleep(STALL)
        return reply


@dataclass(frozen=True)
class Case:
    name: str
    faults: list[Fault]  # per attempt, for each of the case's recipients
    delivered: int
    retried: tuple[int, int]  # (at least, at most) over the case's recipients
    failed: int
    duplicates: int


PER_CASE = 3
MAX_ATTEMPTS = 3
CASES = [
    Case("healthy", [], delivered=3, retried=(0, 0), failed=0, duplicates=0),
    Case("421 then accepted", [Fault.REPLY_421], 3, (3, 3), 0, 0),
    Case("451 then accepted", [Fault.REPLY_451], 3, (3, 3), 0, 0),
    # TICKLER_MAX_ATTEMPTS=3: two retries, then recorded as failed ("gave up after 3").
    Case("451 every time", [Fault.REPLY_451] * 9, 0, (6, 6), 3, 0),
    Case("550", [Fault.REPLY_550] * 9, 0, (0, 0), 3, 0),
    # A reused connection that breaks before DATA is retried at once on a fresh one (no
    # outbox retry); a fresh one that breaks is an outbox retry: 0 or 1 each.
    Case("drop before DATA", [Fault.DROP_BEFORE_DATA], 3, (0, 3), 0, 0),
    Case("stall before DATA", [Fault.STALL_BEFORE_DATA], 3, (0, 3), 0, 0),
    # The ambiguous window: the server has the message, the client never saw the 250.
    Case("drop after DATA", [Fault.DROP_AFTER_DATA], 3, (3, 3), 0, 3),
    Case("stall after DATA", [Fault.STALL_AFTER_DATA], 3, (3, 3), 0, 3),
]


@pytest.fixture
def faulty_smtp() -> Iterator[Server]:
    with sinks() as started:
        yield started.start(FaultyRecorder())


@pytest.mark.slow
def test_smtp_faults_each_retried_failed_or_duplicated_as_it_should(
    sqlite_db: Database, faulty_smtp: Server, tmp_path: Path, program_dir: Path
) -> None:
    """One daemon, one server, each recipient meeting one kind of fault (see CASES).

    421 / 451 once: delivered, retried once, not failed, no duplicate. 451 every time:
    retried twice, then failed (TICKLER_MAX_ATTEMPTS=3). 550: failed at once, never retried.
    A hang-up or a stall (TICKLER_SMTP_TIMEOUT=1) before DATA: delivered once, no duplicate.
    A hang-up or a stall after the body: delivered, retried once with the same Message-ID,
    one duplicate each (counted, allowed: the server had it). /metrics counts the failed.
    """
    db, recorder = sqlite_db, faulty_smtp.recorder
    assert isinstance(recorder, FaultyRecorder)
    db.add_suppliers(PER_CASE * len(CASES), SupplierTier.DIRECT)
    case_of: dict[str, Case] = {}
    for n in range(PER_CASE * len(CASES)):
        case = CASES[n // PER_CASE]
        address = f"s{n:05d}@example.com"
        case_of[address] = case
        recorder.faults[address] = list(case.faults)
    log = tmp_path / "daemon.log"
    settings = {
        "retry_backoff_seconds": 0.2,
        "max_attempts": MAX_ATTEMPTS,
        "smtp_timeout": 1,
        "program_dir": program_dir,
        "lease_seconds": 30,  # longer than any stall: no reaping here
    }
    daemon = start_daemon(db, faulty_smtp.port, NOW, log, **settings)
    try:
        wait_while_running(
            daemon,
            lambda: len(requests(db)) == len(case_of) and finished(db),
            log,
            "every request sent or failed",
        )
        samples = scrape(http_port(daemon, log))
        stop_all([(daemon, log)])
    finally:
        kill_all([(daemon, log)])

    received = Counter(recorder.message_ids)
    rows = requests(db)
    report = []
    for case in CASES:
        mine = [m for m in rows if case_of[m.recipient] is case]
        tally = Tally.of(mine, received)
        report.append(f"{case.name:18} {tally}")
        what = f"{case.name}: {tally}"
        assert tally.messages == PER_CASE, what
        assert tally.delivered == case.delivered, what
        assert case.retried[0] <= tally.retried <= case.retried[1], what
        assert tally.failed == case.failed, what
        assert tally.duplicates == case.duplicates, what
    print("\n" + "\n".join(report))

    failed = [m for m in rows if m.state == OutboxState.FAILED]
    assert {m.last_code for m in failed} == {451, 550}
    assert all(
        (m.last_error or "").startswith(f"gave up after {MAX_ATTEMPTS} attempts")
        for m in failed
        if m.last_code == 451
    )
    assert {m.state for m in db.due(NOW)} <= {*FINAL, OutboxState.FAILED}
    assert metric(samples, "tickler_outbox_messages", state="failed") == len(failed)
    assert metric(samples, "tickler_outbox_due_backlog") == 0


# The Maildir read-only, then full, then fine ------------------------------------------------


def maildir_ids(path: Path) -> Counter[str]:
    """Count the Message-IDs of the messages delivered into the Maildir at ``path``."""
    ids: Counter[str] = Counter()
    for folder in ("new", "cur"):
        if not (path / folder).is_dir():
            continue
        for item in (path / folder).iterdir():
            message = email.message_from_bytes(item.read_bytes())
            ids[str(message["Message-ID"]).strip("<>")] += 1
    return ids


def test_maildir_unusable_then_usable_retries_then_delivers_once(
    sqlite_db: Database, tmp_path: Path, program_dir: Path
) -> None:
    """The Maildir's parent is a regular file (as root, chmod would not stop a write).

    While so: 20 requests retried (NotADirectoryError: temporary), none delivered or failed.
    Once the file is replaced by a directory: delivered all 20, failed 0, duplicates 0.
    """
    db, messages = sqlite_db, 20
    db.add_suppliers(messages, SupplierTier.DIRECT)
    parent = tmp_path / "mail"
    parent.write_text("not a directory\n")
    maildir = parent / "maildir"
    log = tmp_path / "daemon.log"
    settings = FAST_RETRIES | {"program_dir": program_dir, "maildir": maildir}
    daemon = start_daemon(db, None, NOW, log, **settings)
    try:
        wait_while_running(
            daemon,
            lambda: len(rows := requests(db)) == messages and all(m.attempts >= 2 for m in rows),
            log,
            "every request tried twice while the Maildir is unusable",
        )
        broken = Tally.of(requests(db), Counter())
        errors = {m.last_error for m in requests(db)}
        parent.unlink()
        parent.mkdir()
        took = wait_while_running(daemon, lambda: finished(db), log, "delivered to the Maildir")
        stop_all([(daemon, log)])
    finally:
        kill_all([(daemon, log)])
    rows = requests(db)
    tally = Tally.of(rows, maildir_ids(maildir))
    print(f"\nMaildir unusable: {broken}; usable again, drained in {took:.1f} s: {tally}")

    assert broken.failed == 0 and broken.retried >= messages
    assert all(e and "Not a directory" in e for e in errors), errors
    assert tally.delivered == messages and tally.failed == 0 and tally.duplicates == 0, tally
    assert maildir_ids(maildir) == Counter(m.message_id for m in rows)


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A read-only tmpfs of 64 KiB (skipped where mounting is not permitted)."""
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a full or read-only filesystem")
    done = _mount("-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(mountpoint))
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, timeout=30)


@pytest.mark.slow
def test_maildir_read_only_then_full_then_grown_delivers_everything_once(
    sqlite_db: Database, tmp_path: Path, program_dir: Path, tmpfs: Path
) -> None:
    """A Maildir on a tmpfs: read-only first, then writable but 64 KiB, then 16 MiB.

    Read-only: 60 requests retried (EROFS), none delivered or failed. Full: some delivered
    (the files that fit), the rest retried (ENOSPC), none failed. Grown: delivered all 60,
    failed 0, duplicates 0 (a write that failed left no message behind).
    """
    db, messages = sqlite_db, 60
    db.add_suppliers(messages, SupplierTier.DIRECT)
    maildir = tmpfs / "maildir"
    log = tmp_path / "daemon.log"
    settings = FAST_RETRIES | {"program_dir": program_dir, "maildir": maildir}
    daemon = start_daemon(db, None, NOW, log, **settings)

    def errors() -> set[str]:
        """Return the last error of every request (a claim does not clear it)."""
        return {m.last_error or "" for m in requests(db)}

    try:
        wait_while_running(
            daemon,
            lambda: len(rows := requests(db)) == messages and all(m.attempts >= 2 for m in rows),
            log,
            "every request tried twice while read-only",
        )
        read_only = Tally.of(requests(db), maildir_ids(maildir))
        read_only_errors = errors()
        assert _mount("-o", "remount,rw", str(tmpfs)).returncode == 0
        wait_while_running(
            daemon,
            lambda: any("No space left" in e for e in errors()) and bool(maildir_ids(maildir)),
            log,
            "the Maildir fills up",
        )
        full = Tally.of(requests(db), maildir_ids(maildir))
        assert _mount("-o", "remount,size=16m", str(tmpfs)).returncode == 0
        took = wait_while_running(daemon, lambda: finished(db), log, "delivered once grown")
        stop_all([(daemon, log)])
    finally:
        kill_all([(daemon, log)])
    rows = requests(db)
    tally = Tally.of(rows, maildir_ids(maildir))
    print(f"\nread-only: {read_only}\nfull: {full}\ngrown, drained in {took:.1f} s: {tally}")

    assert read_only.delivered == 0 and read_only.failed == 0
    assert read_only.retried >= messages
    assert all("Read-only file system" in e for e in read_only_errors), read_only_errors
    assert 0 < full.delivered < messages and full.failed == 0, full
    assert tally.delivered == messages and tally.failed == 0 and tally.duplicates == 0, tally
    assert maildir_ids(maildir) == Counter(m.message_id for m in rows)
