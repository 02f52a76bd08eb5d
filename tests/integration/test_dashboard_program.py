"""The overview, program and person pages over the demo company (``tests.dashboard_demo``),
through the real app; the keyset pages and the funnel against counts made independently."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator, Iterator
from html import unescape
from pathlib import Path

import httpx
import pytest
from markupsafe import escape
from sqlalchemy import func, select

from jobs.storage import dashboard as stored
from jobs.storage import evidence
from jobs.storage.db import Obligation, OutboxMessage, OutboxState, Person
from scheduler.daemon.service import Service
from scheduler.web.dashboard.person import sent_text
from scheduler.web.dashboard.program import BadQuery, parse_query
from scheduler.web.http import create_app
from tests.dashboard_demo import CMRT, HOSTILE, NOW, PASSWORD, demo
from tests.world import OFFER, FakeClock

_TOKEN = re.compile(r'name="token" value="([^"]+)"')
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_ROW = re.compile(r'<a href="/dashboard/people/([^"]+)">')
_NEXT = re.compile(r'<a href="([^"]+)">Next page')


@pytest.fixture
def svc(db_url: str, tmp_path: Path) -> Iterator[Service]:
    made = demo(db_url, tmp_path)
    try:
        yield made
    finally:
        made.engine.dispose()


async def signed_in(svc: Service, name: str) -> httpx.AsyncClient:
    app = create_app(svc, clock=FakeClock(NOW))
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8080"
    )
    form = await client.get("/dashboard/login")
    token = _TOKEN.search(form.text)
    assert token is not None
    response = await client.post(
        "/dashboard/login", data={"token": token.group(1), "username": name, "password": PASSWORD}
    )
    assert response.status_code == 303
    return client


@pytest.fixture
async def viewer(svc: Service) -> AsyncIterator[httpx.AsyncClient]:
    client = await signed_in(svc, "vic")
    try:
        yield client
    finally:
        await client.aclose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
async def test_overview_funnel_matches_the_obligations(
    svc: Service, viewer: httpx.AsyncClient
) -> None:
    with svc.factory() as session:
        counted = dict(
            session.execute(
                select(Obligation.state, func.count())
                .where(Obligation.program == CMRT)
                .group_by(Obligation.state)
            ).all()
        )
        funnel = stored.funnels(session, NOW)[CMRT]
        # The status filter's choices: every state in use (a skip scan of the index).
        assert stored.states(session, CMRT) == sorted(s for s in counted if s != "retired")
    assert funnel.asked == sum(counted.values()) == 224  # 223 demo suppliers and the hostile one
    assert funnel.answered == counted.get("complete", 0) + counted.get("incomplete", 0)
    assert funnel.escalated == counted["escalated"]
    page = await viewer.get("/dashboard/")
    assert page.status_code == 200
    assert "<svg" in page.text and "<script" not in page.text
    assert f"<b>{funnel.asked}</b><small>asked</small>" in page.text


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
async def test_program_pages_walk_every_supplier_once(viewer: httpx.AsyncClient) -> None:
    for sort, order in itertools.product(("name", "due", "status", "id"), ("asc", "desc")):
        seen: list[str] = []
        url: str | None = f"/dashboard/programs/{CMRT}?sort={sort}&order={order}"
        while url:
            page = await viewer.get(url)
            assert page.status_code == 200, page.text
            seen.extend(_ROW.findall(page.text))
            found = _NEXT.search(page.text)
            url = unescape(found.group(1)) if found else None
        assert len(seen) == len(set(seen)) == 224, (sort, order)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_search_filter_and_hostile_names(viewer: httpx.AsyncClient) -> None:
    page = await viewer.get(f"/dashboard/programs/{CMRT}", params={"q": "script"})
    assert _ROW.findall(page.text) == ["supplier:S999"]
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Co" in page.text
    assert HOSTILE not in page.text
    escalated = await viewer.get(f"/dashboard/programs/{CMRT}", params={"status": "escalated"})
    assert 'class="status escalated"' in escalated.text
    assert 'class="status complete"' not in escalated.text
    # A LIKE wildcard in a search is a character, not a pattern.
    assert _ROW.findall((await viewer.get(f"/dashboard/programs/{CMRT}?q=%25")).text) == []
    person = await viewer.get("/dashboard/people/supplier:S999")
    assert person.status_code == 200 and HOSTILE not in person.text
    assert "What they are asked" in person.text
    assert f'<a href="/dashboard/programs/{CMRT}">{CMRT}</a>' in person.text
    # A viewer sees no feed buttons, and the action itself is refused.
    assert "Rotate the URL" not in person.text and "Issue a URL" not in person.text
    csrf = _CSRF.search(person.text)
    assert csrf is not None
    refused = await viewer.post(
        "/dashboard/people/supplier:S999/feed", data={"csrf": csrf.group(1), "action": "rotate"}
    )
    assert refused.status_code == 403


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"sort": "password"}, "sort='password': sort by one of name, due, status, id"),
        ({"order": "sideways"}, "order='sideways': asc or desc"),
        ({"q": "x" * 101}, "q: a search has at most 100 characters"),
        ({"after_id": "1; drop"}, "after_id='1; drop': a row id (digits)"),
        ({"sort": "due", "after_id": "3", "after": "yesterday"}, "after='yesterday'"),
        ({"sort": "due", "after_id": "3", "after": "2017-01-01T00:00"}, "needs its UTC offset"),
    ],
)
def test_bad_page_parameters_are_named(params: dict[str, str], error: str) -> None:
    with pytest.raises(BadQuery, match=re.escape(error)):
        parse_query(CMRT, params)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_bad_parameter_is_a_400_page(viewer: httpx.AsyncClient) -> None:
    page = await viewer.get(f"/dashboard/programs/{CMRT}?sort=evil")
    assert page.status_code == 400 and "sort=&#39;evil&#39;" in page.text
    assert (await viewer.get("/dashboard/programs/nope")).status_code == 404
    assert (await viewer.get("/dashboard/people/supplier:NOPE")).status_code == 404


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
async def test_an_operator_rotates_and_revokes_a_feed(svc: Service) -> None:
    client = await signed_in(svc, "olga")
    try:
        person = await client.get("/dashboard/people/supplier:S001")
        assert "No feed URL is active." in person.text and "Issue a URL" in person.text
        csrf = _CSRF.search(person.text)
        assert csrf is not None
        issued = await client.post(
            "/dashboard/people/supplier:S001/feed", data={"csrf": csrf.group(1), "action": "rotate"}
        )
        url = re.search(r"<code>(http://[^<]+/feeds/[A-Za-z0-9_-]{43}\.ics)</code>", issued.text)
        assert url is not None, issued.text
        feed = await client.get(url.group(1).removeprefix("http://127.0.0.1:8080"))
        assert feed.status_code == 200 and b"BEGIN:VCALENDAR" in feed.content
        revoked = await client.post(
            "/dashboard/people/supplier:S001/feed", data={"csrf": csrf.group(1), "action": "revoke"}
        )
        assert "The feed URL was revoked." in revoked.text
        gone = await client.get(url.group(1).removeprefix("http://127.0.0.1:8080"))
        assert gone.status_code == 404
    finally:
        await client.aclose()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_the_person_page_shows_the_text_as_sent(
    svc: Service, viewer: httpx.AsyncClient
) -> None:
    with svc.factory() as session:
        due = session.scalar(
            select(func.min(OutboxMessage.due_at)).where(
                OutboxMessage.state == OutboxState.PENDING, OutboxMessage.person_id.is_not(None)
            )
        )
    assert due is not None

    async def deliver() -> None:
        await svc.deliver(due)
        await svc.transport.close()

    await deliver()
    with svc.factory() as session:
        [(message_id, person_id)] = session.execute(
            select(OutboxMessage.id, OutboxMessage.person_id)
            .where(OutboxMessage.state == OutboxState.SENT)
            .limit(1)
        ).all()
        kept = evidence.load(session, message_id)
        person = session.get(Person, person_id)
    assert kept is not None and person is not None
    page = await viewer.get(f"/dashboard/people/{person.kind}:{person.external_id}")
    assert "The message as sent" in page.text
    first_line = sent_text(kept.data).strip().splitlines()[0]
    assert str(escape(first_line)) in page.text  # escaped as the template escapes


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
async def test_an_exchange_offer_past_its_cutoff_has_nobody_overdue(svc: Service) -> None:
    """Electing is voluntary: after the cutoff, an employee who did not elect kept their
    options. They count as asked, not as answered, and never as overdue."""
    with svc.factory() as session:
        counted = dict(
            session.execute(
                select(Obligation.state, func.count())
                .where(Obligation.program == OFFER, Obligation.state != "retired")
                .group_by(Obligation.state)
            ).all()
        )
        funnel = stored.funnels(session, NOW)[OFFER]
    assert counted.get("not_elected", 0) > 0  # the demo has employees who did not elect
    assert funnel.asked == sum(counted.values())
    assert funnel.overdue == 0 and funnel.next_due is None
