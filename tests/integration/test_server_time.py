"""Server time decides, closed stays closed (issue 10, findings 1 and 2), on both databases.

Through the real app (the JSON API over ASGI), the real planner and delivery to a Maildir,
and the real CLI: a caller's ``at`` never decides a deadline; recording a fact as of an
earlier time is the ``backfill`` scope's, flagged and logged; an extension of a closed offer
is refused with when it closed, confirmed in the CLI, and retractable until it has mailed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from config.facts import NOUNS
from jobs.storage.db import EventLog, EventVersion, OutboxMessage, OutboxState
from scheduler.cli.main import cli
from scheduler.daemon.service import Service
from scheduler.web.http import create_app
from tests.world import OFFER, OPEN_WEEK, FakeClock, seeded, service

CUTOFF = datetime(2003, 1, 21, 5, 0, tzinfo=UTC)  # 2003-01-20 21:00 PST
CLOSED = "the offer closed at 2003-01-20 21:00 PST (2003-01-21T05:00Z)"
LATE = "the election cutoff was 2003-01-20 21:00 PST (2003-01-21T05:00Z)"
TODAY = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)  # long after the offer
TOKENS = {
    "hr": ("hr:hr-secret-0123456789", list(NOUNS)),  # every kind, no backfill
    "kiosk": ("kiosk:kiosk-secret-0123456789", ["election", "withdrawal"]),
    "archive": ("archive:archive-secret-0123456789", [*NOUNS, "backfill"]),
}
PAT = {"program": OFFER, "person": "employee:E1001"}


@dataclass
class Api:
    service: Service
    clock: FakeClock
    client: httpx.AsyncClient

    async def post(self, token: str, path: str, body: dict[str, Any]) -> httpx.Response:
        secret = TOKENS[token][0].partition(":")[2]
        return await self.client.post(
            f"/api/v1/{path}", json=body, headers={"Authorization": f"Bearer {secret}"}
        )

    def log(self) -> list[tuple[Any, ...]]:
        with self.service.factory() as session:
            rows = session.execute(
                select(
                    EventLog.kind, EventLog.at, EventLog.received_at, EventLog.backfill
                ).order_by(EventLog.id)
            )
            return [tuple(r) for r in rows]

    def cutoff_event(self) -> tuple[int, str]:
        """Return the SEQUENCE and start (UTC) of the offer's cutoff event in the feeds."""
        with self.service.factory() as session:
            row = session.get(EventVersion, (OFFER, "election-cutoff"))
            assert row is not None and row.event is not None
            start = datetime.fromisoformat(row.event["start"].partition("[")[0]).astimezone(UTC)
            return row.sequence, start.isoformat()

    def outbox(self, *states: OutboxState) -> list[tuple[str, OutboxState]]:
        with self.service.factory() as session:
            rows = session.execute(
                select(OutboxMessage.step, OutboxMessage.state)
                .where(OutboxMessage.program == OFFER, OutboxMessage.state.in_(states))
                .order_by(OutboxMessage.id)
            )
            return [tuple(r) for r in rows]  # type: ignore[misc]


@pytest.fixture
async def api(db_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    svc = seeded(
        service(
            db_url,
            tmp_path,
            api_tokens=[token for token, _ in TOKENS.values()],
            api_scopes={name: scopes for name, (_, scopes) in TOKENS.items()},
        )
    )
    clock = FakeClock(OPEN_WEEK)
    transport = httpx.ASGITransport(app=create_app(svc, clock=clock))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://tickler") as client:
            yield Api(service=svc, clock=clock, client=client)
    finally:
        svc.engine.dispose()


# Server time decides ---------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["kiosk", "hr"])
async def test_a_backdated_election_is_refused_without_the_backfill_scope(
    api: Api, token: str
) -> None:
    api.clock.now = TODAY
    # Before: 201, dated a second before the 2003 cutoff, and the obligation flipped.
    backdated = await api.post(token, "elections", PAT | {"at": "2003-01-21T04:59:59Z"})
    assert backdated.status_code == 403, backdated.text
    detail = backdated.json()["detail"]
    assert f"token {token!r} may not backfill" in detail and "'backfill' scope" in detail
    # Without a date it is judged at the server's time: late.
    late = await api.post(token, "elections", PAT)
    assert late.status_code == 409 and LATE in late.json()["detail"]
    assert api.log() == []


async def test_a_retroactive_withdrawal_is_refused(api: Api) -> None:
    assert (await api.post("kiosk", "elections", PAT)).status_code == 201
    api.clock.now = TODAY
    # Before: 201, the election withdrawn as of an hour before the cutoff, 24 years later.
    retroactive = await api.post("kiosk", "withdrawals", PAT | {"at": "2003-01-21T04:00:00Z"})
    assert retroactive.status_code == 403, retroactive.text
    late = await api.post("kiosk", "withdrawals", PAT)
    assert late.status_code == 409 and LATE in late.json()["detail"]
    assert [kind for kind, *_ in api.log()] == ["election"]


async def test_a_date_a_few_minutes_off_is_no_backfill_but_the_server_time_judges(
    api: Api,
) -> None:
    api.clock.now = CUTOFF + timedelta(minutes=2)
    # Two minutes after the cutoff, a client whose clock lags says it was a minute before.
    lagging = await api.post("kiosk", "elections", PAT | {"at": "2003-01-21T04:59:00Z"})
    assert lagging.status_code == 409 and LATE in lagging.json()["detail"]
    api.clock.now = CUTOFF - timedelta(minutes=2)
    # Just before the cutoff, a client's clock running 3 minutes ahead dates it after: the
    # planner reads ``at``, so it is late by the rule too.
    ahead = await api.post("kiosk", "elections", PAT | {"at": "2003-01-21T05:01:00Z"})
    assert ahead.status_code == 409 and LATE in ahead.json()["detail"]
    timely = await api.post("kiosk", "elections", PAT | {"at": "2003-01-21T04:57:00Z"})
    assert timely.status_code == 201, timely.text
    body = timely.json()
    assert body["backfill"] is False
    assert datetime.fromisoformat(body["received_at"]) == api.clock.now
    assert api.log() == [
        ("election", datetime(2003, 1, 21, 4, 57, tzinfo=UTC), api.clock.now, False)
    ]


async def test_a_fact_cannot_be_slotted_before_a_later_one_unless_backfilled(api: Api) -> None:
    assert (await api.post("kiosk", "elections", PAT)).status_code == 201
    api.clock.advance(timedelta(minutes=3))
    earlier = (OPEN_WEEK - timedelta(minutes=1)).isoformat()
    slotted = await api.post("kiosk", "withdrawals", PAT | {"at": earlier})
    assert slotted.status_code == 409, slotted.text
    assert (
        "before a fact already recorded for the same person and program"
        in (slotted.json()["detail"])
    )
    assert [kind for kind, *_ in api.log()] == ["election"]


async def test_a_backfill_needs_its_scope_is_flagged_logged_and_still_late_after_the_cutoff(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    api.clock.now = TODAY
    at = CUTOFF - timedelta(hours=1)
    with caplog.at_level(logging.INFO, logger="tickler"):
        response = await api.post("archive", "elections", PAT | {"at": at.isoformat()})
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["actor"], body["backfill"]) == ("api:archive", True)
    assert datetime.fromisoformat(body["received_at"]) == TODAY
    assert api.log() == [("election", at, TODAY, True)]
    lines = [r for r in caplog.records if getattr(r, "action", None) == "backfilled"]
    assert len(lines) == 1
    assert (lines[0].event_id, lines[0].actor) == (body["id"], "api:archive")  # type: ignore[attr-defined]
    assert (lines[0].at, lines[0].received_at) == (at.isoformat(), TODAY.isoformat())  # type: ignore[attr-defined]
    # The scope dates a fact earlier; it does not move the cutoff: dated after it, still late.
    after = await api.post(
        "archive", "withdrawals", PAT | {"at": (CUTOFF + timedelta(minutes=1)).isoformat()}
    )
    assert after.status_code == 409 and LATE in after.json()["detail"]
    assert len(api.log()) == 1


# Closed stays closed ---------------------------------------------------------------------------


async def test_an_extension_after_the_offer_closed_is_refused_saying_when(api: Api) -> None:
    api.clock.now = TODAY
    # Before: 201, and within seconds the 2003 announcements went out with extension notices.
    late = await api.post("hr", "extensions", {"program": OFFER, "cutoff": "2027-02-03T21:00"})
    assert late.status_code == 409, late.text
    assert late.json()["detail"] == (
        f"{CLOSED}: a closed offer stays closed and cannot be extended"
    )
    # Not by a backfill dated while it was open either, when it would reopen the offer today.
    reopen = await api.post(
        "archive",
        "extensions",
        {"program": OFFER, "cutoff": "2027-02-03T21:00", "at": OPEN_WEEK.isoformat()},
    )
    assert reopen.status_code == 409 and CLOSED in reopen.json()["detail"]
    assert api.log() == []
    await api.service.plan(TODAY)  # the current programs plan their messages; the offer none
    assert api.outbox(*OutboxState) == []


async def test_a_long_closed_offer_mails_nobody_on_its_own(api: Api) -> None:
    """Backfilled history of a closed offer plans nothing: its notices are long expired."""
    api.clock.now = TODAY
    at = (CUTOFF - timedelta(days=3)).isoformat()
    assert (await api.post("archive", "elections", PAT | {"at": at})).status_code == 201
    await api.service.plan(TODAY)
    assert api.outbox(*OutboxState) == []


async def test_an_extension_is_retracted_while_nothing_it_caused_was_sent(api: Api) -> None:
    extended = await api.post("hr", "extensions", {"program": OFFER, "cutoff": "2003-02-03T21:00"})
    assert extended.status_code == 201, extended.text
    await api.service.plan(OPEN_WEEK)
    assert api.cutoff_event() == (0, "2003-02-04T05:00:00+00:00")  # first planned extended
    pending = [step for step, _ in api.outbox(OutboxState.PENDING)]
    assert "extension/2003-02-04T05:00:00+00:00" in pending
    assert "cutoff-reminder/1d/2003-02-04T05:00:00+00:00" in pending

    api.clock.advance(timedelta(minutes=1))
    retracted = await api.post("hr", "retractions", {"program": OFFER})
    assert retracted.status_code == 201, retracted.text
    with api.service.factory() as session:
        row = session.get(EventLog, retracted.json()["id"])
        assert row is not None
        assert row.payload == {"extension": extended.json()["id"], "cutoff": "2003-02-03T21:00:00"}
    await api.service.plan(api.clock.now)
    assert api.cutoff_event() == (1, "2003-01-21T05:00:00+00:00")  # moved back, SEQUENCE up
    pending = [step for step, _ in api.outbox(OutboxState.PENDING)]
    assert not [s for s in pending if "2003-02-04" in s]  # nothing of the extension is owed
    assert "cutoff-reminder/1d/2003-01-21T05:00:00+00:00" in pending  # the cutoff is back
    cancelled = [step for step, _ in api.outbox(OutboxState.CANCELLED)]
    assert "extension/2003-02-04T05:00:00+00:00" in cancelled
    # Elections are judged at the original cutoff again.
    api.clock.now = CUTOFF + timedelta(minutes=1)
    late = await api.post("kiosk", "elections", PAT)
    assert late.status_code == 409 and LATE in late.json()["detail"]
    # Nothing left to retract.
    api.clock.now = OPEN_WEEK + timedelta(minutes=5)
    again = await api.post("hr", "retractions", {"program": OFFER})
    assert again.status_code == 409 and "no recorded extension in force" in again.json()["detail"]


async def test_an_extension_that_has_mailed_cannot_be_retracted(api: Api) -> None:
    extended = await api.post("hr", "extensions", {"program": OFFER, "cutoff": "2003-02-03T21:00"})
    assert extended.status_code == 201, extended.text
    await api.service.plan(OPEN_WEEK)
    report = await api.service.deliver(OPEN_WEEK)
    assert report.sent >= 1
    assert ("extension/2003-02-04T05:00:00+00:00", OutboxState.SENT) in api.outbox(OutboxState.SENT)
    before = api.log()
    refused = await api.post("hr", "retractions", {"program": OFFER})
    assert refused.status_code == 409, refused.text
    detail = refused.json()["detail"]
    assert detail.startswith(
        f"the extension to 2003-02-03T21:00:00 (event {extended.json()['id']}) cannot be "
        "retracted: "
    )
    assert f"message(s) of {OFFER} sent since it was recorded" in detail
    assert api.log() == before


async def test_a_retraction_cannot_close_the_offer_in_the_past(api: Api) -> None:
    assert (
        await api.post("hr", "extensions", {"program": OFFER, "cutoff": "2003-02-03T21:00"})
    ).status_code == 201
    api.clock.now = CUTOFF + timedelta(days=1)  # past the original cutoff, before the new one
    refused = await api.post("hr", "retractions", {"program": OFFER})
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        "without the extension the offer would have closed at 2003-01-20 21:00 PST "
        "(2003-01-21T05:00Z), which is past: the extension cannot be retracted"
    )


# The CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def cli_world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> Iterator[Service]:
    """Seed the test's database; run the CLI on it, without the caller's variables or .env."""
    for name in list(os.environ):
        if name.upper().startswith("TICKLER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TICKLER_DATABASE_URL", db_url)
    monkeypatch.setenv("TICKLER_MAILDIR", str(tmp_path / "maildir"))
    svc = seeded(service(db_url, tmp_path))
    try:
        yield svc  # the test reads the event log with it
    finally:
        svc.engine.dispose()


def tickler(now: datetime, *args: str, answer: str | None = None) -> Any:
    return CliRunner().invoke(cli, ["--now", now.isoformat(), *args], input=answer)


def kinds(svc: Service) -> list[str]:
    with svc.factory() as session:
        return list(session.scalars(select(EventLog.kind).order_by(EventLog.id)))


def test_the_cli_shows_what_an_extension_moves_and_asks_first(cli_world: Service) -> None:
    args = ["record", "extension", "--program", OFFER, "--cutoff", "2003-02-03T21:00"]
    declined = tickler(OPEN_WEEK, *args, answer="n\n")
    assert declined.exit_code == 1, declined.output
    shown = declined.stdout
    assert f"Extend {OFFER}:" in shown
    assert (
        "election cutoff: 2003-01-20 21:00 PST (2003-01-21T05:00Z) -> "
        "2003-02-03 21:00 PST (2003-02-04T05:00Z)"
    ) in shown
    assert "grant date: 2003-07-21 -> 2003-08-04" in shown
    assert "1 eligible employee(s): each gets an extension notice" in shown
    assert "Record it? [y/N]" in shown
    assert kinds(cli_world) == []

    confirmed = tickler(OPEN_WEEK, *args, answer="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert "recorded offer_extension as event" in confirmed.stdout
    undo = tickler(OPEN_WEEK, "record", "retraction", "--program", OFFER, "--yes")
    assert undo.exit_code == 0, undo.output
    assert "Record it?" not in undo.stdout
    assert kinds(cli_world) == ["offer_extension", "extension_retraction"]


def test_the_cli_refuses_a_closed_offer_before_asking(cli_world: Service) -> None:
    args = ["record", "extension", "--program", OFFER, "--cutoff", "2027-02-03T21:00"]
    result = tickler(TODAY, *args)
    assert result.exit_code == 1  # refused at run time (2 is for invalid input)
    assert f"error: {CLOSED}: a closed offer stays closed" in result.stderr
    assert "Record it?" not in result.stdout
    assert kinds(cli_world) == []


def test_the_cli_backfills_only_when_told(cli_world: Service) -> None:
    args = ["record", "election", "--program", OFFER, "--person", "employee:E1001"]
    at = (CUTOFF - timedelta(hours=2)).isoformat()
    refused = tickler(TODAY, *args, "--at", at)
    assert refused.exit_code == 2
    assert "is a backfill" in refused.stderr and "add --backfill" in refused.stderr
    assert kinds(cli_world) == []
    done = tickler(TODAY, *args, "--at", at, "--backfill")
    assert done.exit_code == 0, done.output
    assert f"(backfill as of {at}, recorded {TODAY.isoformat()})" in done.stdout
    with cli_world.factory() as session:
        row = session.scalars(select(EventLog)).one()
        assert (row.at, row.received_at, row.backfill, row.source) == (
            CUTOFF - timedelta(hours=2),
            TODAY,
            True,
            "cli",
        )
        assert session.scalar(select(func.count()).select_from(EventLog)) == 1
