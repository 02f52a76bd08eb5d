"""The HTTP interface: feeds over a real socket, tokens, the JSON API, health and metrics."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema_rs import Draft202012Validator
from sqlalchemy import delete, func, select

from jobs.storage import tokens
from jobs.storage.db import EventLog, EventSource, FeedToken, Person, begin_write
from scheduler.daemon.loop import Daemon
from scheduler.daemon.service import Service
from scheduler.web.http import create_app
from tests.daemon_support import Scrape
from tests.world import (
    ELECTIONS_ONLY,
    HR_TOKEN,
    OFFER,
    OPEN_WEEK,
    PORTAL_TOKEN,
    FakeClock,
    LiveServer,
    events_by_uid,
    live_server,
    parse,
    seeded,
    service,
)

PAT = "person:employee:E1001"
REPO = Path(__file__).resolve().parents[2]


def bearer(setting: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {setting.partition(':')[2]}"}


HR, PORTAL, KIOSK = bearer(HR_TOKEN), bearer(PORTAL_TOKEN), bearer(ELECTIONS_ONLY)


@dataclass
class World:
    service: Service
    clock: FakeClock
    server: LiveServer
    client: httpx.Client

    def issue(self, feed: str) -> str:
        with begin_write(self.service.factory) as session:
            return tokens.issue(session, feed, self.clock())

    def revoke(self, feed: str) -> None:
        with begin_write(self.service.factory) as session:
            tokens.revoke(session, feed, self.clock())


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    svc = seeded(service(db_url, tmp_path))
    clock = FakeClock(OPEN_WEEK)
    try:
        with (
            live_server(create_app(svc, clock=clock)) as server,
            httpx.Client(base_url=server.url, timeout=30) as client,
        ):
            yield World(service=svc, clock=clock, server=server, client=client)
    finally:
        svc.engine.dispose()


# Feeds ---------------------------------------------------------------------------------------


def test_conditional_get_304_then_200_with_new_bytes_after_a_change(world: World) -> None:
    url = f"/feeds/{world.issue(PAT)}.ics"
    client = world.client
    assert (
        client.post(
            "/api/v1/elections", json={"program": OFFER, "person": "employee:E1001"}, headers=KIOSK
        ).status_code
        == 201
    )

    first = client.get(url)
    assert first.status_code == 200
    assert first.headers["content-type"] == "text/calendar; charset=utf-8"
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert re.fullmatch(r'"[0-9a-f]{40}"', etag)  # strong: no W/
    assert parsedate_to_datetime(modified) <= OPEN_WEEK
    assert first.headers["cache-control"] == "private, no-cache"
    assert "/vesting/employee:E1001/" in first.text
    parse(first.content)

    again = client.get(url, headers={"If-None-Match": etag})
    assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag)
    assert client.get(url, headers={"If-Modified-Since": modified}).status_code == 304
    # If-None-Match decides alone when present (RFC 9110 13.2.2)
    mixed = client.get(url, headers={"If-None-Match": '"other"', "If-Modified-Since": modified})
    assert mixed.status_code == 200 and mixed.content == first.content
    head = client.head(url)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == str(len(first.content))
    assert head.headers["etag"] == etag

    world.clock.advance(timedelta(days=2))
    extended = client.post(
        "/api/v1/extensions", json={"program": OFFER, "cutoff": "2003-02-03T21:00:00"}, headers=HR
    )
    assert extended.status_code == 201, extended.text
    world.clock.advance(timedelta(minutes=1))
    changed = client.get(url, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.content != first.content
    assert changed.headers["etag"] != etag
    cutoff = events_by_uid(changed.content)[f"{OFFER}/election-cutoff@tickler"]
    assert (cutoff["SEQUENCE"], cutoff["DTSTART"].to_ical()) == (1, b"20030203T210000")
    assert client.get(url, headers={"If-None-Match": changed.headers["etag"]}).status_code == 304

    metrics = Scrape.parse(client.get("/metrics").text)
    assert metrics.value("tickler_feed_requests_total", kind="person", code="304") == 3
    assert metrics.value("tickler_feed_renders_total", kind="person") == 2


def signature(response: httpx.Response) -> tuple[Any, ...]:
    headers = sorted((k, v) for k, v in response.headers.items() if k not in ("date", "server"))
    return response.status_code, response.content, headers


def test_wrong_revoked_and_rotated_tokens_get_the_same_404_as_a_missing_path(
    world: World,
) -> None:
    client = world.client
    missing = signature(client.get("/no/such/path"))
    assert missing[0] == 404

    revoked = world.issue("person:supplier:S001")
    world.revoke("person:supplier:S001")
    old = world.issue(PAT)
    new = world.issue(PAT)  # rotation: the old token is retired
    assert client.get(f"/feeds/{new}.ics").status_code == 200
    for path in (
        f"/feeds/{'A' * 43}.ics",  # well formed, unknown
        "/feeds/short.ics",
        f"/feeds/{new}x.ics",
        f"/feeds/{new.upper() if new.upper() != new else new.lower()}.ics",
        f"/feeds/{revoked}.ics",
        f"/feeds/{old}.ics",
        f"/feeds/{new}",
        "/feeds/public/program:fcpa:compliance.ics",  # exists, but is not public
        "/feeds/public/nothing.ics",
    ):
        assert signature(client.get(path)) == missing, path
    public = client.get("/feeds/public/program:fcpa:representatives.ics")
    assert public.status_code == 200 and public.headers["cache-control"] == "public, no-cache"
    parse(public.content)
    # A token whose person has gone answers like any unknown token.
    gone = world.issue("person:third_party:T001")
    with begin_write(world.service.factory) as session:
        session.execute(delete(Person).where(Person.external_id == "T001"))
    assert signature(client.get(f"/feeds/{gone}.ics")) == missing
    with world.service.factory() as session:
        stored = set(session.scalars(select(FeedToken.token_hash)))
    assert not {old, new, revoked, gone} & stored  # only hashes are kept


def test_between_checks_feeds_are_answered_from_memory_and_revocation_lands_after(
    db_url: str, tmp_path: Path
) -> None:
    interval = 0.5
    svc = seeded(service(db_url, tmp_path, feed_check_seconds=interval))
    clock = FakeClock(OPEN_WEEK)
    try:
        with begin_write(svc.factory) as session:
            token = tokens.issue(session, PAT, OPEN_WEEK)
        app = create_app(svc, clock=clock)
        with live_server(app) as server, httpx.Client(base_url=server.url) as client:
            url = f"/feeds/{token}.ics"
            etag = client.get(url).headers["etag"]
            with begin_write(svc.factory) as session:
                tokens.revoke(session, PAT, OPEN_WEEK)
            revoked_at = time.monotonic()
            statuses = []
            while time.monotonic() - revoked_at < interval + 0.3:
                statuses.append(client.get(url, headers={"If-None-Match": etag}).status_code)
                time.sleep(0.02)
            # Answered from memory until the next check, then refused for good.
            assert set(statuses) <= {304, 404} and statuses[-1] == 404
            assert statuses == sorted(statuses)
            assert client.get(url).status_code == 404
    finally:
        svc.engine.dispose()


# Health and metrics ------------------------------------------------------------------------


async def test_readiness_follows_the_database_and_the_scheduler(
    db_url: str, tmp_path: Path
) -> None:
    svc = service(db_url, tmp_path)
    daemon = Daemon(svc)
    app = create_app(svc, daemon)
    try:
        async with asyncio_client(app) as client:
            assert (await client.get("/healthz")).text == "ok\n"
            response = await client.get("/readyz")
            assert response.status_code == 503
            assert response.json() == {
                "ready": False,
                "database": "ok",
                "scheduler": "not running",
                "planning": "ok",
                "skipped": [],
            }
            daemon.running = True
            assert (await client.get("/readyz")).json()["ready"] is True
            daemon.stop.set()
            response = await client.get("/readyz")
            assert (response.status_code, response.json()["scheduler"]) == (503, "shutting down")
    finally:
        svc.engine.dispose()
    broken = service(f"sqlite:///{tmp_path}", tmp_path)  # a directory is no database
    try:
        async with asyncio_client(create_app(broken, daemon)) as client:
            response = await client.get("/readyz")
            assert response.status_code == 503
            assert response.json()["database"].startswith("unreachable: ")
            assert (await client.get("/healthz")).status_code == 200  # alive all the same
    finally:
        broken.engine.dispose()


def asyncio_client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tickler")


# The JSON API ---------------------------------------------------------------------------------

BEFORE = OPEN_WEEK
AFTER_CUTOFF = datetime(2003, 1, 22, tzinfo=UTC)
ELECT = {"program": OFFER, "person": "employee:E1001"}
HIRE = {
    "kind": "employee",
    "external_id": "E2001",
    "name": "Ada Byrne",
    "email": "ada.byrne@example.com",
    "start_date": "2003-01-13",
}

# (id, clock, headers, path, body (JSON or raw bytes), status, words in the error)
API_ERRORS: list[tuple[str, datetime, dict[str, str], str, Any, int, str]] = [
    ("no token", BEFORE, {}, "elections", ELECT, 401, "valid API token is required"),
    ("wrong token", BEFORE, bearer("x:wrong-secret-000000"), "elections", ELECT, 401, "Bearer"),
    ("basic auth", BEFORE, {"Authorization": "Basic aHI6aHI="}, "elections", ELECT, 401, "token"),
    ("kiosk hires", BEFORE, KIOSK, "hires", HIRE, 403, "'kiosk' may not record a hire"),
    ("unknown program", BEFORE, HR, "elections", ELECT | {"program": "sox"}, 404, "no program"),
    (
        "unknown person",
        BEFORE,
        HR,
        "elections",
        ELECT | {"person": "employee:E404"},
        404,
        "no employee with id 'E404'",
    ),
    (
        "not eligible",
        BEFORE,
        HR,
        "elections",
        ELECT | {"person": "employee:E1002"},
        409,
        "employee:E1002 is not eligible",
    ),
    ("nothing to withdraw", BEFORE, HR, "withdrawals", ELECT, 409, "no election in force"),
    (
        "after the cutoff",
        AFTER_CUTOFF,
        HR,
        "elections",
        ELECT,
        409,
        "the election cutoff was 2003-01-20 21:00 PST (2003-01-21T05:00Z)",
    ),
    ("hired twice", BEFORE, HR, "hires", HIRE | {"external_id": "E1001"}, 409, "already exists"),
    (
        "extension not later",
        BEFORE,
        HR,
        "extensions",
        {"program": OFFER, "cutoff": "2003-01-20T20:00:00"},
        409,
        "not after the current one",
    ),
    ("missing field", BEFORE, HR, "elections", {"program": OFFER}, 422, "person: Field required"),
    (
        "naive instant",
        BEFORE,
        HR,
        "elections",
        ELECT | {"at": "2003-01-10T10:00:00"},
        422,
        "at: Input should have timezone info",
    ),
    (
        "in the future",
        BEFORE,
        HR,
        "elections",
        ELECT | {"at": "2003-01-11T10:00:00Z"},
        422,
        "in the future",
    ),
    ("unknown field", BEFORE, HR, "elections", ELECT | {"shares": 5}, 422, "shares: Extra inputs"),
    ("not JSON", BEFORE, HR, "elections", b"{program:", 422, "Invalid JSON"),
    ("not an object", BEFORE, HR, "elections", [ELECT], 422, "body: Input should be an object"),
    ("empty body", BEFORE, HR, "elections", b"", 422, "the body is empty"),
    (
        "wrong type",
        BEFORE,
        HR,
        "responses",
        {"program": "conflict-minerals-2016", "person": "supplier:S001", "complete": "maybe"},
        422,
        "complete: Input should be a valid boolean",
    ),
    (
        "person not KIND:ID",
        BEFORE,
        HR,
        "elections",
        ELECT | {"person": "E1001"},
        422,
        "person: String should match pattern",
    ),
    (
        "unknown kind of person",
        BEFORE,
        HR,
        "elections",
        ELECT | {"person": "vendor:V1"},
        422,
        "must be KIND:ID",
    ),
    (
        "response by an employee",
        BEFORE,
        PORTAL,
        "responses",
        {"program": "conflict-minerals-2016", "person": "employee:E1001"},
        422,
        "a cmrt_response is made by a supplier, not a employee",
    ),
    (
        "old policy version",
        BEFORE,
        HR,
        "acknowledgments",
        {"program": "fcpa", "person": "third_party:T001", "policy_version": "2009-1"},
        422,
        "policy version '2009-1' is not the current one (2017-1)",
    ),
    (
        "offset on a local cutoff",
        BEFORE,
        HR,
        "extensions",
        {"program": OFFER, "cutoff": "2003-02-03T21:00:00-08:00"},
        422,
        "cutoff: Input should not have timezone info",
    ),
    ("control character", BEFORE, HR, "hires", HIRE | {"name": "Ada\r\nBcc: x"}, 422, "name:"),
    ("too large", BEFORE, HR, "hires", HIRE | {"name": "x" * 70_000}, 413, "larger than"),
]


def table(session: Any) -> tuple[Any, ...]:
    """What a rejected call must leave alone: the event log, the people, the tokens."""
    return tuple(
        session.execute(select(func.count(), func.max(t.id))).one()
        for t in (EventLog, Person, FeedToken)
    )


@pytest.fixture
async def api(
    db_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Service, FakeClock, httpx.AsyncClient]]:
    svc = seeded(service(db_url, tmp_path))
    clock = FakeClock(OPEN_WEEK)
    try:
        async with asyncio_client(create_app(svc, clock=clock)) as client:
            yield svc, clock, client
    finally:
        svc.engine.dispose()


@pytest.mark.parametrize(
    ("now", "headers", "path", "body", "status", "words"),
    [case[1:] for case in API_ERRORS],
    ids=[case[0] for case in API_ERRORS],
)
async def test_api_refusals_say_what_is_wrong_and_change_nothing(
    api: tuple[Service, FakeClock, httpx.AsyncClient],
    now: datetime,
    headers: dict[str, str],
    path: str,
    body: Any,
    status: int,
    words: str,
) -> None:
    svc, clock, client = api
    clock.now = now
    with svc.factory() as session:
        before = table(session)
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await client.post(
        f"/api/v1/{path}",
        content=content,
        headers=headers | {"Content-Type": "application/json"},
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "about:blank" and problem["status"] == status
    assert problem["title"] == HTTPStatus(status).phrase
    assert words in problem["detail"]
    if status == 401:
        assert response.headers["www-authenticate"] == 'Bearer realm="tickler"'
    if re.match(r"\w+: ", words):  # a malformed field: named in the errors too
        field = words.partition(":")[0]
        assert field in [e["field"] for e in problem["errors"]]
        pointer = "#" if field == "body" else f"#/{field}"
        assert pointer in [e["pointer"] for e in problem["errors"]]
    with svc.factory() as session:
        assert table(session) == before


async def test_accepted_calls_land_in_the_event_log_with_who_made_them(
    api: tuple[Service, FakeClock, httpx.AsyncClient],
) -> None:
    svc, clock, client = api
    calls = [
        (KIOSK, "elections", ELECT, "election", "api:kiosk"),
        (HR, "hires", HIRE, "hire", "api:hr"),
        (
            HR,
            "terminations",
            {"person": "employee:E2001", "date": "2003-06-30"},
            "termination",
            "api:hr",
        ),
        (
            PORTAL,
            "responses",
            {
                "program": "conflict-minerals-2016",
                "person": "supplier:S001",
                "complete": False,
                "issues": "smelter list empty",
                "at": "2003-01-10T10:00:00-08:00",  # 4 minutes before the server's clock
            },
            "cmrt_response",
            "api:portal",
        ),
        (
            HR,
            "acknowledgments",
            {"program": "fcpa", "person": "third_party:T001"},
            "fcpa_ack",
            "api:hr",
        ),
        (HR, "withdrawals", ELECT, "withdrawal", "api:hr"),
        (
            HR,
            "extensions",
            {"program": OFFER, "cutoff": "2003-02-03T21:00"},
            "offer_extension",
            "api:hr",
        ),
    ]
    ids = []
    for headers, path, body, kind, actor in calls:
        clock.advance(timedelta(minutes=1))
        response = await client.post(f"/api/v1/{path}", json=body, headers=headers)
        assert response.status_code == 201, (path, response.text)
        data = response.json()
        assert (data["kind"], data["actor"]) == (kind, actor)
        ids.append(data["id"])
    with svc.factory() as session:
        rows = {r.id: r for r in session.scalars(select(EventLog).where(EventLog.id.in_(ids)))}
        hired = session.scalar(select(Person).where(Person.external_id == "E2001"))
    assert [(rows[i].kind, rows[i].actor, rows[i].source) for i in ids] == [
        (kind, actor, EventSource.API) for *_, kind, actor in calls
    ]
    assert rows[ids[3]].at == datetime(2003, 1, 10, 18, tzinfo=UTC)  # the time given, in UTC
    assert rows[ids[3]].received_at == OPEN_WEEK + timedelta(minutes=4)  # the server's
    assert rows[ids[3]].payload == {"complete": False, "issues": "smelter list empty"}
    assert rows[ids[0]].at == OPEN_WEEK + timedelta(minutes=1)  # default: now
    assert hired is not None and str(hired.termination_date) == "2003-06-30"
    metrics = Scrape.parse((await client.get("/metrics")).text)
    assert metrics.value("tickler_api_requests_total", endpoint="elections", code="201") == 1


async def test_openapi_schema_describes_every_endpoint(
    api: tuple[Service, FakeClock, httpx.AsyncClient],
) -> None:
    _, _, client = api
    schema = (await client.get("/api/v1/openapi.json")).json()
    assert schema["openapi"].startswith("3.1")
    # The read API and the message actions (tests/integration/test_read_api.py) aside:
    reads = {"/api/v1/people", "/api/v1/obligations", "/api/v1/events", "/api/v1/programs"}
    facts = {
        path: spec
        for path, spec in schema["paths"].items()
        if path not in reads and not path.startswith(("/api/v1/messages", "/api/v1/programs/"))
    }
    assert sorted(facts) == [
        f"/api/v1/{name}"
        for name in sorted(
            [
                "acknowledgments",
                "elections",
                "extensions",
                "hires",
                "responses",
                "retractions",
                "terminations",
                "withdrawals",
            ]
        )
    ]
    for path in facts.values():
        assert sorted(path["post"]["responses"]) == [
            "201",
            "401",
            "403",
            "404",
            "409",
            "413",
            "422",
        ]
        for status, answer in path["post"]["responses"].items():
            if status != "201":
                assert list(answer["content"]) == ["application/problem+json"]
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("GET", "/no/such/path", 404, None),
        ("POST", "/api/v1/nothing", 404, None),
        ("GET", "/api/v1/elections", 405, "POST"),
        ("PUT", "/api/v1/openapi.json", 405, "GET, HEAD"),
        ("POST", "/metrics", 405, "GET, HEAD"),
        ("DELETE", f"/feeds/{'A' * 43}.ics", 405, "GET, HEAD"),
    ],
)
async def test_unknown_paths_and_methods_answer_problem_json_as_the_schema_documents(
    api: tuple[Service, FakeClock, httpx.AsyncClient],
    method: str,
    path: str,
    status: int,
    allow: str | None,
) -> None:
    _, _, client = api
    schema = (await client.get("/api/v1/openapi.json")).json()
    response = await client.request(method, path, headers=HR)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    # Starlette keeps a route's methods in a set: the order of Allow is not fixed.
    allowed = response.headers.get("allow")
    assert (set(allowed.split(", ")) if allowed else None) == (
        set(allow.split(", ")) if allow else None
    )
    body = response.json()
    # Valid against the Problem schema of the OpenAPI document, as every other error is.
    validator = Draft202012Validator({"$ref": "#/components/schemas/Problem", **schema})
    assert not [str(e) for e in validator.iter_errors(body)], body
    assert (body["status"], body["title"]) == (status, HTTPStatus(status).phrase)
    if allow is not None:
        assert body["detail"] == f"{method} is not allowed here; allowed: {allowed}"


# tickler run -------------------------------------------------------------------------------


def test_tickler_run_serves_feeds_api_health_and_metrics_and_stops_on_sigterm(
    db_url: str, tmp_path: Path
) -> None:
    svc = seeded(service(db_url, tmp_path))
    with begin_write(svc.factory) as session:
        token = tokens.issue(session, PAT, OPEN_WEEK)
    svc.engine.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKLER_")}
    env |= {
        "PYTHONPATH": str(REPO),
        "TICKLER_DATABASE_URL": db_url,
        "TICKLER_HTTP_PORT": "0",
        "TICKLER_MAILDIR": str(tmp_path / "maildir"),
        "TICKLER_API_TOKENS": json.dumps([HR_TOKEN]),
        "TICKLER_API_SCOPES": json.dumps({"hr": "*"}),
        "TICKLER_SWEEP_SECONDS": "1",
    }
    log = tmp_path / "daemon.log"
    command = [sys.executable, "-c", "from scheduler.cli.main import main; main()"]
    command += ["--now", OPEN_WEEK.isoformat(), "run"]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=tmp_path
        )
    try:
        port = wait(lambda: _port(log, process), what="the HTTP port in the log", log=log)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            wait(lambda: client.get("/readyz").status_code == 200, what="ready", log=log)
            # The daemon planned and delivered the offer's announcement to the Maildir.
            wait(lambda: _sent(client.get("/metrics").text) > 0, what="sent messages", log=log)
            metrics = Scrape.parse(client.get("/metrics").text)
            sent = metrics.value("tickler_outbox_messages", state="sent")
            # This daemon sent every message of this database: its own counts agree.
            assert metrics.value("tickler_send_lateness_seconds_count") == sent
            assert metrics.value("tickler_messages_total", outcome="sent") == sent
            assert metrics.value("tickler_scheduler_running") == 1
            feed = client.get(f"/feeds/{token}.ics")
            assert feed.status_code == 200 and "/vesting/" not in feed.text
            elected = client.post("/api/v1/elections", json=ELECT, headers=HR)
            assert elected.status_code == 201, elected.text
            # The feed looks for changes once a second (TICKLER_FEED_CHECK_SECONDS).
            since = {"If-None-Match": feed.headers["etag"]}

            def changed() -> httpx.Response | None:
                response = client.get(f"/feeds/{token}.ics", headers=since)
                return response if response.status_code == 200 else None

            later = wait(changed, what="the feed shows the election", log=log)
            assert "/vesting/employee:E1001/25@tickler" in later.text
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _port(log: Path, process: subprocess.Popen[bytes]) -> int | None:
    if process.poll() is not None:
        raise AssertionError(f"tickler run exited {process.returncode}:\n{log.read_text()}")
    for line in log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("action") == "http_listening":
            return int(entry["port"])
    return None


def _sent(metrics: str) -> float:
    return sum(
        s.value for s in Scrape.parse(metrics).samples("tickler_outbox_messages", state="sent")
    )


def wait(condition: Any, *, what: str, log: Path, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except httpx.TransportError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}\n{log.read_text()}")
        time.sleep(0.05)
