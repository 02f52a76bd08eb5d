"""The read API and the message actions over a real socket: pages by cursor, scopes, problem
details, the bytes as sent, retry/cancel/resend logged as ``api:NAME``, the docs page."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select

from jobs.storage.db import EventLog, OutboxMessage, OutboxState, Person, begin_write
from scheduler.daemon.service import Service
from scheduler.web.http import create_app
from tests import world
from tests.smtp_sink import Server, message_id, sinks

NOW = datetime(2017, 1, 24, 12, tzinfo=UTC)  # both 2016 survey requests went out (S002: 550)
AUDITOR = "auditor:auditor-secret-0123456789"
OPS = "ops:ops-secret-0123456789abcdef"


def bearer(setting: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {setting.partition(':')[2]}"}


READER, ACTOR, HR = bearer(AUDITOR), bearer(OPS), bearer(world.HR_TOKEN)


@dataclass
class Api:
    service: Service
    client: httpx.Client
    smtp: Server


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[Api]:
    settings = world.settings(
        db_url,
        tmp_path,
        api_tokens=[world.HR_TOKEN, AUDITOR, OPS],
        api_scopes={"hr": "*", "auditor": ["read"], "ops": ["read", "messages"]},
    )
    with sinks() as started:
        smtp = started.start()
        smtp.recorder.rcpt_replies["s002@example.com"] = "550 5.1.1 no such user"
        service = world.seeded(Service(settings, world.PROGRAMS))
        deliver(service, smtp)
        clock = world.FakeClock(NOW)
        try:
            with (
                world.live_server(create_app(service, clock=clock)) as server,
                httpx.Client(base_url=server.url, timeout=30) as client,
            ):
                yield Api(service=service, client=client, smtp=smtp)
        finally:
            service.engine.dispose()


def deliver(service: Service, smtp: Server) -> None:
    async def work() -> None:
        service.transport = smtp.transport()
        try:
            await service.plan(NOW)
            await service.deliver(NOW)
        finally:
            await service.transport.close()

    asyncio.run(work())


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["type"] == "about:blank"
    return body


def test_people_page_by_cursor_to_the_end(api: Api) -> None:
    with begin_write(api.service.factory) as session:
        session.execute(
            insert(Person),
            [
                {"kind": "supplier", "external_id": f"X{n:05}", "name": f"Supplier {n}",
                 "email": f"x{n}@example.com", "created_at": NOW, "updated_at": NOW}
                for n in range(245)
            ],
        )  # fmt: skip
    with api.service.factory() as session:
        every = list(session.scalars(select(Person.id).order_by(Person.id)))
    seen: list[int] = []
    url: str | None = "/api/v1/people?limit=100"
    pages = 0
    while url is not None:
        page = api.client.get(url, headers=READER)
        assert page.status_code == 200, page.text
        body = page.json()
        seen += [p["id"] for p in body["items"]]
        pages += 1
        if body["next"] is None:
            assert "link" not in page.headers
            url = None
        else:
            link = page.headers["link"]
            assert link.endswith('>; rel="next"') and f"cursor={body['next']}" in link
            url = f"/api/v1/people?limit=100&cursor={body['next']}"
    assert seen == every and pages == 3 and len(every) == 250
    first = api.client.get("/api/v1/people?kind=employee", headers=READER).json()["items"]
    assert [p["key"] for p in first] == ["employee:E1001", "employee:E1002"]

    bad = problem(api.client.get("/api/v1/people?cursor=nope", headers=READER), 422)
    assert bad["errors"][0]["field"] == "cursor"
    limit = problem(api.client.get("/api/v1/people?limit=0", headers=READER), 422)
    assert limit["errors"][0]["field"] == "limit"
    problem(api.client.get("/api/v1/people?limit=1&limit=2", headers=READER), 422)
    problem(api.client.get("/api/v1/people?colour=blue", headers=READER), 422)


def test_scopes_fail_closed(api: Api) -> None:
    assert problem(api.client.get("/api/v1/messages"), 401)["detail"].startswith("a valid API")
    # "*" is every kind of fact: reading and acting are capabilities of their own.
    assert "'read'" in problem(api.client.get("/api/v1/messages", headers=HR), 403)["detail"]
    denied = api.client.post("/api/v1/messages/1/cancel", headers=READER)
    assert "'messages'" in problem(denied, 403)["detail"]
    assert api.client.get("/api/v1/events", headers=READER).status_code == 200


def test_messages_show_raw_and_act_over_http(api: Api) -> None:
    c = api.client
    failed = c.get("/api/v1/messages?state=failed", headers=READER).json()["items"]
    assert [m["recipient"] for m in failed] == ["s002@example.com"]
    sent = c.get(
        "/api/v1/messages", params={"state": "sent", "person": "supplier:S001"}, headers=READER
    ).json()["items"]
    [request] = [m for m in sent if m["job"] == "cmrt_request"]
    shown = c.get(f"/api/v1/messages/{request['id']}", headers=READER).json()
    assert shown["evidence"]["code"] == 250 and shown["identity"] == request["identity"]
    raw = c.get(shown["evidence"]["raw"], headers=READER)
    assert raw.headers["content-type"] == "message/rfc822"
    by_id = {message_id(r.content): r.content for r in api.smtp.recorder.received}
    assert raw.content == by_id[request["message_id"]]  # byte for byte what the server got
    problem(c.get("/api/v1/messages/999999", headers=READER), 404)
    problem(c.get("/api/v1/messages?person=supplier:NOPE", headers=READER), 404)

    retried = c.post(f"/api/v1/messages/{failed[0]['id']}/retry", headers=ACTOR)
    assert retried.status_code == 200 and retried.json()["state"] == "pending"
    refused = problem(c.post(f"/api/v1/messages/{request['id']}/cancel", headers=ACTOR), 409)
    assert "is sent" in refused["detail"]
    resent = c.post(f"/api/v1/messages/{request['id']}/resend", headers=ACTOR)
    assert resent.status_code == 201, resent.text
    copy = resent.json()
    assert copy["resend_of"] == request["id"] and copy["message_id"] != request["message_id"]
    pending = c.get(
        "/api/v1/messages", params={"state": "pending", "limit": 1}, headers=READER
    ).json()["items"][0]
    cancelled = c.post(
        f"/api/v1/messages/{pending['id']}/cancel", json={"reason": "duplicate"}, headers=ACTOR
    )
    assert cancelled.json()["state"] == "cancelled"

    events = c.get("/api/v1/events?kind=message_resent", headers=READER).json()["items"]
    assert [(e["actor"], e["source"], e["payload"]["message"]) for e in events] == [
        ("api:ops", "api", request["identity"])
    ]
    with api.service.factory() as session:
        log = session.scalars(
            select(EventLog).where(EventLog.kind.like("message_%")).order_by(EventLog.id)
        ).all()
        states = dict(session.execute(select(OutboxMessage.id, OutboxMessage.state)).all())
    assert [(e.kind, e.actor) for e in log] == [
        ("message_retried", "api:ops"),
        ("message_resent", "api:ops"),
        ("message_cancelled", "api:ops"),
    ]
    assert log[2].payload["reason"] == "duplicate"
    assert states[failed[0]["id"]] == OutboxState.PENDING
    assert states[copy["id"]] == OutboxState.PENDING


def test_obligations_calendar_openapi_and_docs(api: Api) -> None:
    c = api.client
    owed = c.get(
        "/api/v1/obligations",
        params={"program": "conflict-minerals-2016", "person": "supplier:S002"},
        headers=READER,
    ).json()["items"]
    assert [(o["person"], o["kind"], o["occurrence"]) for o in owed] == [
        ("supplier:S002", "cmrt_response", "2016")
    ]
    cal = c.get(
        f"/api/v1/programs/{world.OFFER}/calendar",
        params={"from": "2003-01-20", "to": "2003-01-20"},
        headers=READER,
    ).json()
    assert f"{world.OFFER}/election-cutoff@tickler" in [e["uid"] for e in cal["events"]]
    problem(c.get("/api/v1/programs/nope/calendar", headers=READER), 404)
    programs = c.get("/api/v1/programs", headers=READER).json()["items"]
    assert {p["id"] for p in programs} == {p.id for p in world.PROGRAMS}

    schema = c.get("/api/v1/openapi.json").json()
    for path in ("people", "obligations", "messages", "messages/{ref}/resend", "events"):
        assert f"/api/v1/{path}" in schema["paths"]
    params = schema["paths"]["/api/v1/messages"]["get"]["parameters"]
    assert {p["name"] for p in params} >= {"program", "person", "state", "kind", "cursor"}
    docs = c.get("/api/v1/docs")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    for path in schema["paths"]:
        assert f"<code>{path}</code>" in docs.text
    assert "<script" not in docs.text
