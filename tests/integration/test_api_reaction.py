"""A fact recorded through the daemon's own API is planned at once, not at the next poll.

The daemon polls the event log (``poll`` seconds) for facts recorded elsewhere (the CLI,
another replica). One recorded by its own API tells the loop directly (``Service.recorded``),
so the person's reminders stop within the second. Here the poll and the sweep are an hour
apart: only that call can make the reaction come in time.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from sqlalchemy import select

from jobs.storage.db import OutboxMessage, OutboxState, Person
from scheduler.daemon.loop import Daemon
from scheduler.web.http import create_app
from tests import world

NOW = world.OPEN_WEEK
HOUR = 3600.0


def rows_of_pat(daemon: Daemon) -> list[tuple[int, OutboxState, str]]:
    with daemon.service.factory() as session:
        pat = session.scalars(select(Person.id).where(Person.external_id == "E1001")).one()
        stmt = select(OutboxMessage.id, OutboxMessage.state, OutboxMessage.job).where(
            OutboxMessage.person_id == pat, OutboxMessage.program == world.OFFER
        )
        return [(i, s, j) for i, s, j in session.execute(stmt)]


def test_an_election_through_the_api_is_planned_at_once(db_url: str, tmp_path: Path) -> None:
    service = world.seeded(world.service(db_url, tmp_path))
    daemon = Daemon(service, clock=lambda: NOW, sweep=HOUR, poll=HOUR, full_every=HOUR)

    async def scenario() -> float:
        task = asyncio.create_task(daemon.run())
        try:
            for _ in range(600):  # the first whole plan, then the poll that starts the cursor
                if daemon._full is not None and daemon._full.done() and rows_of_pat(daemon):
                    break
                await asyncio.sleep(0.05)
            before = rows_of_pat(daemon)
            pending = {i for i, state, _ in before if state == OutboxState.PENDING}
            assert pending, before  # the cutoff reminders
            newest = max(i for i, _, _ in before)
            transport = httpx.ASGITransport(app=create_app(service, daemon))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                started = time.monotonic()
                answer = await client.post(
                    "/api/v1/elections",
                    json={"program": world.OFFER, "person": "employee:E1001"},
                    headers={"Authorization": f"Bearer {world.HR_TOKEN.partition(':')[2]}"},
                )
                assert answer.status_code == 201, answer.text
            for _ in range(200):
                after = rows_of_pat(daemon)
                cancelled = any(i in pending and s == OutboxState.CANCELLED for i, s, _ in after)
                if cancelled and any(i > newest for i, _, _ in after):
                    return time.monotonic() - started
                await asyncio.sleep(0.05)
            raise AssertionError(f"no reaction in 10 s: {rows_of_pat(daemon)}")
        finally:
            daemon.stop.set()
            await asyncio.wait_for(task, timeout=30)

    assert asyncio.run(scenario()) < 10  # the poll would take an hour
