"""Fixtures of the integration tests that play a recipient (``test_actions``,
``test_action_browser``): mail caught by a real SMTP server, pages behind a live server."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from config.facts import FactKind
from jobs.storage import uploads
from jobs.storage.db import EventLog, OutboxMessage, OutboxState
from scheduler.daemon.service import Service
from scheduler.web.http import create_app
from tests.smtp_sink import Server, sinks
from tests.world import OFFER, OPEN_WEEK, PROGRAMS, FakeClock, LiveServer, seeded, settings

SECRET = "action-secret-for-tests-0123456789abcdef"
CMRT = "conflict-minerals-2016"
CONTACT = "Dana Kim, Stock Administration <dana.kim@example.com>"
#: The seed offer's cutoff: 2003-01-20 21:00 PST.
WAVE_CUTOFF = OPEN_WEEK.replace(day=21, hour=5)
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


@dataclass
class Recipient:
    """The world as a recipient meets it: mail in a sink, pages behind a live server."""

    service: Service
    clock: FakeClock
    smtp: Server
    server: LiveServer
    client: httpx.Client

    def run(self) -> None:
        """Plan and deliver at the clock's time, as a tick of the daemon does."""

        async def tick() -> None:
            # Each tick runs on an event loop of its own: so does its SMTP connection.
            self.service.transport = self.smtp.transport()
            await self.service.plan(self.clock())
            await self.service.deliver(self.clock())
            await self.service.transport.close()

        # On a thread of its own: Playwright's sync API keeps an event loop running on this one.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, tick()).result()

    def mail(self, to: str, subject: str = "") -> list[EmailMessage]:
        out = []
        for received in self.smtp.recorder.received:
            message = email.message_from_bytes(received.content, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            if received.rcpt_tos == [to] and subject in str(message["Subject"]):
                out.append(message)
        return out

    def link(self, message: EmailMessage) -> str:
        text = body(message, "plain")
        found = re.findall(re.escape(self.server.url) + r"/act/[A-Za-z0-9_.-]+", text)
        assert found, text
        # The HTML part carries the same link (a button), not another one.
        assert found[0] in body(message, "html")
        return str(found[0])

    def open(self, url: str) -> tuple[httpx.Response, str]:
        page = self.client.get(url)
        match = _CSRF.search(page.text)
        return page, match.group(1) if match else ""

    def facts(self, kind: FactKind) -> list[EventLog]:
        with self.service.factory() as session:
            return list(session.scalars(select(EventLog).where(EventLog.kind == kind.value)))

    def upload(self, sha256: str) -> bytes | None:
        """Return the uploaded file kept under ``sha256``, or None."""
        with self.service.factory() as session:
            return uploads.load(session, sha256)

    def outbox(self, job: str, recipient: str) -> list[OutboxState]:
        with self.service.factory() as session:
            return list(
                session.scalars(
                    select(OutboxMessage.state).where(
                        OutboxMessage.job == job,
                        OutboxMessage.recipient == recipient,
                        # The same supplier is asked again by the next year's survey.
                        OutboxMessage.program != "conflict-minerals-2026",
                    )
                )
            )


def body(message: EmailMessage, kind: str) -> str:
    part = message.get_body((kind,))
    assert part is not None
    return str(part.get_content())


@pytest.fixture
def recipient(db_url: str, tmp_path: Path) -> Iterator[Recipient]:
    clock = FakeClock(OPEN_WEEK)
    with sinks() as started:
        smtp = started.start()
        # The server's address goes into the links, so the socket is bound before the service.
        server = LiveServer(None)
        svc = Service(
            settings(
                db_url,
                tmp_path,
                action_secret=SECRET,
                public_url=server.url,
                program_contacts={OFFER: CONTACT},
            ),
            PROGRAMS,
            transport=smtp.transport(),
        )
        seeded(svc)
        server._app = create_app(svc, clock=clock)
        server.start()
        try:
            with httpx.Client(timeout=30) as client:
                yield Recipient(svc, clock, smtp, server, client)
        finally:
            server.close()
            svc.engine.dispose()
