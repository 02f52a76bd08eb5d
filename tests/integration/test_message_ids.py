"""Message-IDs on the deployment's domain (TICKLER_MESSAGE_ID_DOMAIN, by default the sender's),
their threads' references on the same one, and a message planned on a domain sent on it.

Both databases, the real FCPA planner, the aiosmtpd sink, the received headers parsed.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Iterator
from datetime import date, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from jobs.storage.db import FcpaRole, OutboxMessage, OutboxState, Person, PersonKind, begin_write
from scheduler.daemon.service import Service
from tests.smtp_sink import Server, sinks
from tests.world import PROGRAMS, settings

FCPA = [p for p in PROGRAMS if p.id == "fcpa"]
FIRST = datetime.fromisoformat("2026-02-10T18:00:00+00:00")  # T101's request is due
LATER = datetime.fromisoformat("2026-02-19T18:00:00+00:00")  # and its 14-day reminder


@pytest.fixture
def smtp() -> Iterator[Server]:
    with sinks() as started:
        yield started.start()


def add(service: Service, external_id: str) -> None:
    with begin_write(service.factory) as session:
        session.add(
            Person(
                kind=PersonKind.THIRD_PARTY,
                external_id=external_id,
                name=f"Agent {external_id}",
                email=f"{external_id.lower()}@example.com",
                role=FcpaRole.AGENT,
                start_date=date(2026, 2, 2),
                created_at=FIRST,
                updated_at=FIRST,
            )
        )


def tick(service: Service, smtp: Server, now: datetime) -> None:
    async def run() -> None:
        service.transport = smtp.transport()
        await service.plan(now)
        await service.deliver(now)
        await service.transport.close()

    asyncio.run(run())


def received(smtp: Server) -> dict[str, EmailMessage]:
    """Return every message the sink accepted, by its X-Tickler-Identity."""
    out = {}
    for r in smtp.recorder.received:
        message = email.message_from_bytes(r.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        out[str(message["X-Tickler-Identity"])] = message
    return out


def sent_rows(service: Service) -> dict[str, str]:
    with service.factory() as session:
        rows = session.execute(
            select(OutboxMessage.identity, OutboxMessage.message_id).where(
                OutboxMessage.state == OutboxState.SENT
            )
        )
        return {identity: message_id for identity, message_id in rows}


def test_message_ids_and_threads_on_the_configured_domain(
    db_url: str, tmp_path: Path, smtp: Server
) -> None:
    first = Service(settings(db_url, tmp_path, message_id_domain="mail.acme-corp.com"), FCPA)
    try:
        add(first, "T101")
        tick(first, smtp, FIRST)
    finally:
        first.engine.dispose()
    request = received(smtp)["fcpa/2026-03-04/third_party:T101/request"]
    assert str(request["Message-ID"]).endswith(".fcpa@mail.acme-corp.com>")
    root = str(request["References"])
    assert root == str(request["In-Reply-To"]) and root.endswith(".fcpa@mail.acme-corp.com>")

    # The setting changes (unset: the sender's domain, example.com). A message planned before
    # goes out on the domain it was planned on, in the same thread; new ones on the new domain.
    second = Service(settings(db_url, tmp_path), FCPA)
    try:
        assert second.settings.message_domain == "example.com"
        add(second, "T102")
        tick(second, smtp, LATER)
        stored = sent_rows(second)
    finally:
        second.engine.dispose()
    got = received(smtp)
    reminder = got["fcpa/2026-03-04/third_party:T101/reminder/14d"]
    assert str(reminder["Message-ID"]).endswith(".fcpa@mail.acme-corp.com>")
    assert str(reminder["References"]) == root
    other = got["fcpa/2026-03-04/third_party:T102/request"]
    assert str(other["Message-ID"]).endswith(".fcpa@example.com>")
    assert str(other["References"]).endswith(".fcpa@example.com>")
    # The outbox names each message by the Message-ID it was sent with.
    assert stored == {k: str(m["Message-ID"]).strip("<>") for k, m in got.items()}
