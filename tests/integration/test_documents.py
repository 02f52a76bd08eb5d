"""Links to the documents a program names: the FCPA policy's text and the CMRT template, in
the emails that ask for them, as the recipient receives them (MIME parsed from the sink)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from collections.abc import Iterator
from datetime import date, datetime
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from calendars import cmrt_notices
from calendars.notices import Snapshot
from config.programs import ConflictMinerals, Fcpa
from jobs.render import render
from jobs.storage.db import FcpaRole, Person, PersonKind, begin_write
from scheduler.daemon.service import Service
from scheduler.web.http import create_app
from tests.smtp_sink import Server, sinks
from tests.unit.test_notices import TEAM, supplier
from tests.world import PROGRAMS, settings

SECRET = "action-secret-for-tests-0123456789abcdef"
BASE = "http://127.0.0.1:8080"
POLICY = "https://intranet.example.com/policies/fcpa-2017-1.pdf?lang=en&v=2"
NOW = datetime.fromisoformat("2026-02-10T18:00:00+00:00")


def fcpa(**changes: object) -> Fcpa:
    [program] = [p for p in PROGRAMS if isinstance(p, Fcpa)]
    return Fcpa.model_validate(program.model_dump() | changes)


@pytest.fixture
def smtp() -> Iterator[Server]:
    with sinks() as started:
        yield started.start()


def test_the_policy_link_reaches_the_recipient(db_url: str, tmp_path: Path, smtp: Server) -> None:
    """In the email, and on the acknowledgment page the email's action link opens."""
    service = Service(
        settings(db_url, tmp_path, action_secret=SECRET, public_url=BASE),
        [fcpa(policy_url=POLICY)],
    )
    try:
        with begin_write(service.factory) as session:
            session.add(
                Person(
                    kind=PersonKind.THIRD_PARTY,
                    external_id="T101",
                    name="Agent T101",
                    email="t101@example.com",
                    role=FcpaRole.AGENT,
                    start_date=date(2026, 2, 2),
                    created_at=NOW,
                    updated_at=NOW,
                )
            )

        async def tick() -> None:
            service.transport = smtp.transport()
            await service.plan(NOW)
            await service.deliver(NOW)
            await service.transport.close()

        asyncio.run(tick())
        [received] = smtp.recorder.received
        message = email.message_from_bytes(received.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        text = message.get_body(("plain",))
        html = message.get_body(("html",))
        assert text is not None and html is not None
        plain = str(text.get_content()).replace("\r\n", "\n")
        assert f"The policy to read: {POLICY}\n" in plain
        # In the HTML part, a real link (the & escaped as HTML requires).
        escaped = POLICY.replace("&", "&amp;")
        assert f'<a href="{escaped}">Read the policy</a>' in str(html.get_content())
        # The page the email's action link opens links the same text, with its version.
        [path] = re.findall(re.escape(BASE) + r"(/act/[A-Za-z0-9_.-]+)", plain)

        async def open_page() -> str:
            app = create_app(service, clock=lambda: NOW)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
                page = await client.get(path)
                assert page.status_code == 200, page.text
                return page.text

        page = asyncio.run(open_page())
        assert f'<a href="{escaped}">Read the policy (version 2017-1)</a>' in page
    finally:
        service.engine.dispose()


@pytest.mark.parametrize(
    "bad",
    [
        "javascript:alert(1)",
        "file:///etc/passwd",
        "https://example.com/a b.pdf",
        'https://example.com/"><script>',
        "https://example.com/x\nBcc: evil@example.com",
        "https://" + "a" * 2001,
    ],
)
def test_a_document_link_must_be_one_plain_url(bad: str) -> None:
    with pytest.raises(ValidationError, match="is not a link such as https://"):
        fcpa(policy_url=bad)


def test_the_cmrt_template_link_in_the_request_from_the_planner() -> None:
    [program] = [
        p for p in PROGRAMS if isinstance(p, ConflictMinerals) and p.reporting_year == 2016
    ]
    url = "https://www.example.org/cmrt/CMRT-6.5.xlsx"
    program = ConflictMinerals.model_validate(program.model_dump() | {"template_url": url})
    snapshot = Snapshot(people=[supplier(1)], grants=[], facts=[], team=TEAM)
    after = datetime.fromisoformat("2017-04-01T00:00:00+00:00")
    notices = cmrt_notices.plan(program, snapshot, after).notices
    for job in ("cmrt_request", "cmrt_follow_up"):
        notice = next(n for n in notices if n.job == job)
        out = render(notice.template, {**notice.context, "timezone": program.timezone})
        assert f"The CMRT template to fill in: {url}\n" in out.text, job
        assert f'<a href="{url}">Download the CMRT template</a>' in out.html, job
