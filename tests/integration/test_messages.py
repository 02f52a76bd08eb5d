"""``tickler messages list|show|retry|cancel|resend`` over messages a real SMTP server took.

The evidence ``show`` prints is compared byte for byte with what the aiosmtpd sink received;
every action is checked in the event log with who did it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from jobs.storage.db import EventLog, OutboxMessage, OutboxState
from scheduler.cli.main import cli
from scheduler.daemon.service import Service
from tests import world
from tests.smtp_sink import Server, message_id, sinks

#: After the 2016 CMRT survey requests went out to both seed suppliers (S001 on 9 January,
#: S002 on 23 January 2017).
NOW = datetime(2017, 1, 24, 12, tzinfo=UTC)
GONE = "s002@example.com"


@pytest.fixture
def smtp() -> Iterator[Server]:
    with sinks() as started:
        yield started.start()


@pytest.fixture
def sent(db_url: str, tmp_path: Path, smtp: Server) -> Iterator[Service]:
    """The seed world planned and delivered at ``NOW``; S002's address refuses mail (550)."""
    smtp.recorder.rcpt_replies[GONE] = "550 5.1.1 no such user"
    service = world.seeded(Service(world.settings(db_url, tmp_path), world.PROGRAMS))
    try:
        plan_and_deliver(service, smtp)
        yield service
    finally:
        service.engine.dispose()


def plan_and_deliver(service: Service, smtp: Server) -> None:
    async def work() -> None:
        # A transport per event loop: its pooled connections belong to the loop that made them.
        service.transport = smtp.transport()
        try:
            await service.plan(NOW)
            await service.deliver(NOW)
        finally:
            await service.transport.close()

    asyncio.run(work())


def run(service: Service, tmp_path: Path, *args: str) -> Result:
    env = {
        "TICKLER_DATABASE_URL": service.settings.database_url,
        "TICKLER_MAILDIR": str(tmp_path / "maildir"),
    }
    return CliRunner().invoke(cli, ["--now", NOW.isoformat(), "messages", *args], env=env)


def rows(service: Service, state: OutboxState | None = None) -> list[OutboxMessage]:
    with service.factory() as session:
        stmt = select(OutboxMessage).order_by(OutboxMessage.id)
        if state is not None:
            stmt = stmt.where(OutboxMessage.state == state)
        return list(session.scalars(stmt))


def actions(service: Service) -> list[EventLog]:
    with service.factory() as session:
        stmt = select(EventLog).where(EventLog.kind.like("message_%")).order_by(EventLog.id)
        return list(session.scalars(stmt))


def test_show_prints_the_bytes_the_server_received(
    sent: Service, smtp: Server, tmp_path: Path
) -> None:
    delivered = rows(sent, OutboxState.SENT)
    assert delivered, "the seed world sends something at NOW"
    by_id = {message_id(r.content): r.content for r in smtp.recorder.received}
    for row in delivered:
        raw = run(sent, tmp_path, "show", "--raw", str(row.id))
        assert raw.exit_code == 0, raw.output
        assert raw.stdout_bytes == by_id[row.message_id]
    shown = run(sent, tmp_path, "show", f"<{delivered[0].message_id}>")
    assert shown.exit_code == 0, shown.output
    assert f"identity:    {delivered[0].identity}" in shown.stdout
    assert "server:      250 " in shown.stdout
    assert shown.stdout_bytes.endswith(by_id[delivered[0].message_id])


def test_list_filters_and_pages(sent: Service, tmp_path: Path) -> None:
    every = rows(sent)
    listed = run(sent, tmp_path, "list", "--format", "json", "--limit", "10000")
    assert [m["id"] for m in json.loads(listed.stdout)] == [r.id for r in every]
    first = run(sent, tmp_path, "list", "--limit", "2")
    assert len(first.stdout.splitlines()) == 2
    assert f"(more: --after {every[1].id})" in first.stderr
    after = str(every[1].id)
    rest = json.loads(run(sent, tmp_path, "list", "--after", after, "--format", "json").stdout)
    assert [m["id"] for m in rest] == [r.id for r in every[2:]][:50]
    failed = json.loads(run(sent, tmp_path, "list", "--state", "failed", "--format", "json").stdout)
    assert [m["recipient"] for m in failed] == [GONE] * len(failed) and failed
    mine = json.loads(
        run(sent, tmp_path, "list", "--person", "supplier:S002", "--format", "json").stdout
    )
    assert {m["person"] for m in mine} == {"supplier:S002"}
    unknown = run(sent, tmp_path, "list", "--person", "supplier:NOPE")
    assert unknown.exit_code == 2 and "no such person" in unknown.stderr


def test_retry_cancel_resend_are_logged_with_who(
    sent: Service, smtp: Server, tmp_path: Path
) -> None:
    [failed, *_] = rows(sent, OutboxState.FAILED)
    [pending, *_] = rows(sent, OutboxState.PENDING)
    [done, *_] = rows(sent, OutboxState.SENT)

    refused = run(sent, tmp_path, "cancel", str(done.id), "--actor", "cli:ops")
    assert refused.exit_code == 1 and "is sent: only a pending message" in refused.stderr
    assert run(sent, tmp_path, "show", "99999").exit_code == 2

    retried = run(sent, tmp_path, "retry", str(failed.id), "--actor", "cli:ops")
    assert retried.exit_code == 0, retried.output
    cancelled = run(sent, tmp_path, "cancel", pending.identity, "--reason", "wrong person")
    assert cancelled.exit_code == 0, cancelled.output
    resent = run(sent, tmp_path, "resend", str(done.id), "--actor", "cli:ops")
    assert resent.exit_code == 0, resent.output

    after = {r.id: r for r in rows(sent)}
    assert (after[failed.id].state, after[failed.id].attempts) == (OutboxState.PENDING, 0)
    assert after[pending.id].state == OutboxState.CANCELLED
    [copy] = [r for r in after.values() if r.resend_of == done.id]
    assert copy.identity == f"{done.identity}+resend-1" and copy.message_id != done.message_id
    assert (copy.state, copy.recipient) == (OutboxState.PENDING, done.recipient)
    log = actions(sent)
    assert [(e.kind, e.actor, e.source, e.payload["message"]) for e in log] == [
        ("message_retried", "cli:ops", "cli", failed.identity),
        ("message_cancelled", log[1].actor, "cli", pending.identity),
        ("message_resent", "cli:ops", "cli", done.identity),
    ]
    assert log[1].actor.startswith("cli:") and log[1].payload["reason"] == "wrong person"
    assert log[2].payload["resend_message_id"] == copy.message_id

    # Planning again leaves the resend alone; delivery sends it with its own Message-ID.
    plan_and_deliver(sent, smtp)
    assert smtp.recorder.message_ids[copy.message_id] == 1
    assert smtp.recorder.message_ids[done.message_id] == 1
    shown = run(sent, tmp_path, "show", str(done.id))
    assert f"resent as:   {copy.id}" in shown.stdout
    assert "message_resent  by cli:ops" in shown.stdout


def test_maildir_evidence_is_the_file_as_written(db_url: str, tmp_path: Path) -> None:
    """Without an SMTP server the kept bytes are the Maildir file's (LF line ends)."""
    service = world.seeded(Service(world.settings(db_url, tmp_path), world.PROGRAMS))
    try:

        async def work() -> None:
            await service.plan(world.OPEN_WEEK)
            await service.deliver(world.OPEN_WEEK)

        asyncio.run(work())
        [sent] = rows(service, OutboxState.SENT)
    finally:
        service.engine.dispose()
    [written] = list((tmp_path / "maildir" / "new").iterdir())
    env = {"TICKLER_DATABASE_URL": db_url, "TICKLER_MAILDIR": str(tmp_path / "maildir")}
    raw = CliRunner().invoke(cli, ["messages", "show", "--raw", sent.message_id], env=env)
    assert raw.exit_code == 0, raw.output
    assert raw.stdout_bytes == written.read_bytes() and b"\r\n" not in raw.stdout_bytes
    shown = CliRunner().invoke(cli, ["messages", "show", str(sent.id)], env=env)
    assert f"server:      - {written.name.split(':')[0]}" in shown.stdout
