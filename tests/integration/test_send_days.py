"""Scheduled sends go out on business days of the program's send calendar, in the demo too."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from calendars.businessdays import calendar
from config.settings import Settings
from jobs.mail.transport import MaildirTransport
from jobs.storage.db import OutboxMessage, make_engine, session_factory
from scheduler.daemon.service import Service
from tests.integration.test_campaigns import PROGRAMS, load_demo

# Answers to a fact or a change go when it happens, whatever the day: a receipt, the first
# request to correct an incomplete CMRT, a meeting's update or cancellation.
AT_ONCE = ("/receipt/", "/correction/", "/cancel/")
# The weekly digest is the daemon's, not a program's (it goes on Mondays).
DAEMON = ("digest",)


@pytest.mark.slow
def test_no_scheduled_send_on_a_weekend_or_holiday(db_url: str, tmp_path: Path) -> None:
    load_demo(db_url)
    settings = Settings(database_url=db_url, maildir=tmp_path / "maildir")
    service = Service(
        settings, list(PROGRAMS.values()), transport=MaildirTransport(tmp_path / "maildir")
    )

    async def plan() -> None:
        # Each campaign planned as it starts (before its facts) and today (after them all),
        # so reminders that answers later cancelled are checked too.
        for at in ("2002-12-01", "2017-01-01", "2026-11-22"):
            await service.plan(datetime.fromisoformat(at).replace(tzinfo=UTC))
        await service.close()

    asyncio.run(plan())
    engine = make_engine(db_url)
    with session_factory(engine)() as session:
        rows = session.execute(
            select(
                OutboxMessage.program,
                OutboxMessage.identity,
                OutboxMessage.job,
                OutboxMessage.due_at,
            )
        ).all()
    engine.dispose()
    checked = 0
    closed: list[str] = []
    for program_id, identity, job, due in rows:
        if job in DAEMON or any(part in identity for part in AT_ONCE):
            continue
        program = PROGRAMS[program_id]
        days = calendar(program.send_calendar, program.extra_closures)
        local = due.replace(tzinfo=due.tzinfo or UTC).astimezone(program.zone)
        checked += 1
        if not days.is_business_day(local.date()):
            closed.append(f"{identity} {local:%a %Y-%m-%d %H:%M}")
    assert checked > 1000
    assert closed == []
