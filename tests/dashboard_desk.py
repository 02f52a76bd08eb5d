"""The dashboard's operator pages as the compliance team meets them: the seed world,
planned and delivered to an aiosmtpd sink that refuses S002's address (550), so that there is
a failed delivery to act on; accounts made in storage (alice, operator; victor, viewer); the
whole app served by uvicorn on a free port (``test_dashboard_ops``, ``test_dashboard_browser``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from jobs.storage import users
from jobs.storage.db import EventLog, OutboxMessage, OutboxState, Person, Role, begin_write
from scheduler.daemon.service import Service
from scheduler.web import passwords
from scheduler.web.http import create_app
from tests import world
from tests.smtp_sink import Server, sinks
from tests.world import FakeClock, LiveServer

#: After the 2016 CMRT survey requests went out to both seed suppliers.
NOW = datetime(2017, 1, 24, 12, tzinfo=UTC)
GONE = "s002@example.com"
FIXED = "cmrt@zhongshan-bright.example"
CMRT = "conflict-minerals-2016"
PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_TOKEN = re.compile(r'name="token" value="([^"]+)"')


@dataclass
class Desk:
    """The world as the compliance team meets it: the dashboard behind a live server."""

    service: Service
    clock: FakeClock
    smtp: Server
    server: LiveServer

    def deliver(self) -> None:
        async def tick() -> None:
            self.service.transport = self.smtp.transport()
            try:
                await self.service.plan(self.clock())
                await self.service.deliver(self.clock())
            finally:
                await self.service.transport.close()

        # On a thread of its own: Playwright's sync API keeps an event loop on this one.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, tick()).result()

    @contextmanager
    def client(self, username: str) -> Iterator[httpx.Client]:
        """Yield a client signed in as ``username`` (its password is ``PASSWORD``)."""
        with httpx.Client(base_url=self.server.url, timeout=30) as client:
            form = client.get("/dashboard/login")
            token = _TOKEN.search(form.text)
            assert token is not None, form.text
            signed = client.post(
                "/dashboard/login",
                data={"token": token.group(1), "username": username, "password": PASSWORD},
            )
            assert signed.status_code == 303, signed.text
            yield client

    def rows(self, state: OutboxState | None = None) -> list[OutboxMessage]:
        with self.service.factory() as session:
            stmt = select(OutboxMessage).order_by(OutboxMessage.id)
            if state is not None:
                stmt = stmt.where(OutboxMessage.state == state)
            return list(session.scalars(stmt))

    def events(self, kind: str) -> list[EventLog]:
        with self.service.factory() as session:
            stmt = select(EventLog).where(EventLog.kind == kind).order_by(EventLog.id)
            return list(session.scalars(stmt))

    def email_of(self, external_id: str) -> str:
        with self.service.factory() as session:
            found = session.scalar(select(Person.email).where(Person.external_id == external_id))
            assert found is not None
            return found


def csrf(page: httpx.Response) -> str:
    found = _CSRF.search(page.text)
    assert found is not None, page.text
    return found.group(1)


def add_users(service: Service) -> None:
    hashed = passwords.hash_password(PASSWORD)
    with begin_write(service.factory) as session:
        for name, role in (("alice", Role.OPERATOR), ("victor", Role.VIEWER)):
            users.add(session, username=name, password_hash=hashed, role=role, now=NOW)


@contextmanager
def opened(db_url: str, tmp_path: Path, **changes: Any) -> Iterator[Desk]:
    """Yield the seed world delivered at ``NOW`` (S002's address refused with a 550), with
    an operator (alice) and a viewer (victor), the app served on a free port; ``changes``
    to the settings (``world.settings``)."""
    clock = FakeClock(NOW)
    with sinks() as started:
        smtp = started.start()
        smtp.recorder.rcpt_replies[GONE] = "550 5.1.1 no such user"
        server = LiveServer(None)
        service = world.seeded(
            Service(
                world.settings(db_url, tmp_path, public_url=server.url, **changes),
                world.PROGRAMS,
            )
        )
        add_users(service)
        made = Desk(service, clock, smtp, server)
        made.deliver()
        server._app = create_app(service, clock=clock)
        server.start()
        try:
            yield made
        finally:
            server.close()
            service.engine.dispose()
