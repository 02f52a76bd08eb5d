"""The dashboard's operator pages over a real socket: deliveries, calendar, exports, record.

The world is the seed's, planned and delivered to an aiosmtpd sink that refuses S002's
address (550), so there is a failed delivery to act on. Accounts are made in storage, signed
in through the real login form; every request goes to uvicorn on 127.0.0.1 with the cookies
a browser keeps. Every change is checked in the database, with who did it; every refusal
changes nothing.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import icalendar
import openpyxl
import pytest
from sqlalchemy import update

from jobs.export import COLUMNS, STAT_COLUMNS
from jobs.storage.db import OutboxMessage, OutboxState, begin_write
from scheduler.web.dashboard import deliveries
from tests.dashboard_desk import CMRT, FIXED, GONE, NOW, Desk, csrf, opened
from tests.world import OFFER


@pytest.fixture
def desk(db_url: str, tmp_path: Path) -> Iterator[Desk]:
    with opened(db_url, tmp_path) as made:
        yield made


def failed_one(desk: Desk) -> OutboxMessage:
    [failed] = [m for m in desk.rows(OutboxState.FAILED) if m.recipient == GONE]
    return failed


def test_a_failed_delivery_is_listed_with_the_servers_reply(desk: Desk) -> None:
    failed = failed_one(desk)
    with desk.client("victor") as viewer:
        page = viewer.get("/dashboard/deliveries")
        assert page.status_code == 200
        assert f'href="/dashboard/messages/{failed.id}"' in page.text
        assert "550 all recipients refused: 5.1.1 no such user" in page.text and GONE in page.text
        assert "2017-01-23 09:00 PST" in page.text  # due, in the program's zone, named
        assert "Retry</button>" not in page.text  # a viewer sees, does not act
        assert "Record by hand" not in page.text
        only = viewer.get("/dashboard/deliveries", params={"program": "fcpa"})
        assert "Nothing failed in fcpa" in only.text
        assert "Nothing is waiting" in viewer.get("/dashboard/deliveries?show=retrying").text
        assert viewer.get("/dashboard/deliveries?before=x-1").status_code == 400
        assert viewer.get("/dashboard/deliveries?program=<b>").status_code == 400
        detail = viewer.get(f"/dashboard/messages/{failed.id}")
        assert detail.status_code == 200 and "no such user" in detail.text
        assert "Correct the address" not in detail.text
        assert viewer.get("/dashboard/messages/999999").status_code == 404
    with desk.client("alice") as operator:
        page = operator.get("/dashboard/deliveries")
        assert "Retry</button>" in page.text and "Record by hand" in page.text


def test_correct_the_address_then_retry_delivers_it_logged_with_who(desk: Desk) -> None:
    failed = failed_one(desk)
    with desk.client("alice") as operator:
        page = operator.get(f"/dashboard/messages/{failed.id}")
        token = csrf(page)
        bad = operator.post(
            f"/dashboard/messages/{failed.id}/address",
            data={"csrf": token, "email": "not an address"},
        )
        assert bad.status_code == 422
        assert "is not an email address" in bad.text and desk.email_of("S002") == GONE

        fixed = operator.post(
            f"/dashboard/messages/{failed.id}/address",
            data={"csrf": token, "email": FIXED, "reason": "new contact by phone"},
        )
        assert fixed.status_code == 303
        assert fixed.headers["location"].startswith(desk.server.url + "/dashboard/messages/")
        assert desk.email_of("S002") == FIXED
        corrected = operator.get(fixed.headers["location"])
        assert f"now {FIXED}: a retry or a resend goes there" in corrected.text
        [change] = desk.events("import")[-1:]
        assert (change.actor, change.payload["by_hand"]) == ("user:alice", "new contact by phone")
        assert change.source == "dashboard"
        assert change.payload["changes"] == [f"supplier:S002 email: {GONE} -> {FIXED}"]

        retried = operator.post(f"/dashboard/messages/{failed.id}/retry", data={"csrf": token})
        assert retried.status_code == 303
        shown = operator.get(retried.headers["location"])
        assert "Retried" in shown.text and "user:alice" in shown.text
    [row] = [m for m in desk.rows() if m.id == failed.id]
    assert (row.state, row.recipient) == (OutboxState.PENDING, FIXED)
    [action] = desk.events("message_retried")
    assert action.actor == "user:alice"
    desk.deliver()
    [row] = [m for m in desk.rows() if m.id == failed.id]
    assert row.state == OutboxState.SENT
    assert [r.rcpt_tos for r in desk.smtp.recorder.received if FIXED in r.rcpt_tos]


def test_cancel_and_resend_are_the_cli_actions_with_the_users_name(desk: Desk) -> None:
    sent = desk.rows(OutboxState.SENT)[0]
    with desk.client("alice") as operator:
        token = csrf(operator.get(f"/dashboard/messages/{sent.id}"))
        done = operator.post(f"/dashboard/messages/{sent.id}/resend", data={"csrf": token})
        assert done.status_code == 303
        [copy] = [m for m in desk.rows() if m.resend_of == sent.id]
        assert copy.state == OutboxState.PENDING
        again = operator.post(f"/dashboard/messages/{sent.id}/cancel", data={"csrf": token})
        assert again.status_code == 409 and "only a pending message can cancel" in again.text
        for bad in ("\x1b[31mred", "line\nbreak", "x" * 501):
            refused = operator.post(
                f"/dashboard/messages/{copy.id}/cancel", data={"csrf": token, "reason": bad}
            )
            assert refused.status_code == 422 and "one line of at most 500" in refused.text
        assert desk.events("message_cancelled") == []
        for action in ("retry", "address"):
            missing = operator.post(
                f"/dashboard/messages/999999/{action}", data={"csrf": token, "email": FIXED}
            )
            assert missing.status_code == 404 and "no message 999999" in missing.text
        cancelled = operator.post(
            f"/dashboard/messages/{copy.id}/cancel",
            data={"csrf": token, "reason": "sent to the wrong person"},
        )
        assert cancelled.status_code == 303
        hostile = operator.post(f"/dashboard/messages/{copy.id}/nonsense", data={"csrf": token})
        assert hostile.status_code == 404
    [row] = [m for m in desk.rows() if m.id == copy.id]
    assert row.state == OutboxState.CANCELLED
    [resent] = desk.events("message_resent")
    [cancel] = desk.events("message_cancelled")
    assert (resent.actor, cancel.actor) == ("user:alice", "user:alice")
    assert (resent.source, cancel.source) == ("dashboard", "dashboard")
    assert cancel.payload["reason"] == "sent to the wrong person"


def test_a_viewer_and_a_forged_form_change_nothing(desk: Desk) -> None:
    failed = failed_one(desk)
    with desk.client("victor") as viewer:
        token = csrf(viewer.get("/dashboard/deliveries"))
        for action in ("retry", "address"):
            refused = viewer.post(
                f"/dashboard/messages/{failed.id}/{action}",
                data={"csrf": token, "email": FIXED},
            )
            assert refused.status_code == 403 and "operator" in refused.text
        assert viewer.get("/dashboard/record").status_code == 403
    with desk.client("alice") as operator:
        forged = operator.post(f"/dashboard/messages/{failed.id}/retry", data={"csrf": "x"})
        assert forged.status_code == 403
        bare = operator.post(f"/dashboard/messages/{failed.id}/retry")
        assert bare.status_code == 403
    with httpx.Client(base_url=desk.server.url) as anonymous:
        nobody = anonymous.post(f"/dashboard/messages/{failed.id}/retry", data={"csrf": "x"})
        assert nobody.status_code == 303 and "/dashboard/login" in nobody.headers["location"]
        assert anonymous.get("/dashboard/exports/fcpa/evidence.csv").status_code == 303
    assert failed_one(desk).state == OutboxState.FAILED
    assert desk.email_of("S002") == GONE
    assert desk.events("message_retried") == [] and desk.events("import") == []


def test_record_a_cmrt_by_hand_with_the_reason_and_refusals_that_record_nothing(
    desk: Desk,
) -> None:
    with desk.client("alice") as operator:
        form = operator.get("/dashboard/record")
        assert form.status_code == 200
        token = csrf(form)
        fields = {
            "csrf": token,
            "program": CMRT,
            "what": "response",
            "person": "supplier:S002",
            "complete": "complete",
            "reason": "CMRT arrived by post",
        }
        done = operator.post("/dashboard/record", data=fields)
        assert done.status_code == 200, done.text
        assert "Recorded cmrt response of supplier:S002" in done.text
        [fact] = desk.events("cmrt_response")
        assert (fact.actor, fact.source, fact.payload) == (
            "user:alice",
            "dashboard",  # the audit trail says where it came from, not "api"
            {"reason": "CMRT arrived by post", "complete": True},
        )
        person = operator.get("/dashboard/people/supplier:S002")
        assert "by user:alice on the dashboard" in person.text

        refusals: list[tuple[dict[str, str], int, str]] = [
            ({"person": "supplier:S999"}, 404, "No supplier with id &#39;S999&#39;"),
            # The seed offer closed on 2003-01-20: the server's clock says 2017.
            (
                {"program": OFFER, "what": "election", "person": "employee:E1001"},
                409,
                "the election cutoff was 2003-01-20 21:00 PST",
            ),
            (
                {"program": "fcpa", "what": "acknowledgment"},
                422,
                "Suppliers do not acknowledge the FCPA policy",
            ),
            ({"reason": ""}, 422, "Reason: say why"),
            ({"person": "<script>alert(1)</script>"}, 422, "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ]
        for changes, status, text in refusals:
            refused = operator.post("/dashboard/record", data=fields | changes)
            assert refused.status_code == status, refused.text
            assert text in refused.text, refused.text
            assert "<script>alert" not in refused.text
        assert len(desk.events("cmrt_response")) == 1
        assert desk.events("election") == [] and desk.events("fcpa_ack") == []


def test_exports_stream_the_cli_files_with_their_names(desk: Desk) -> None:
    with desk.client("victor") as viewer:
        page = viewer.get("/dashboard/exports")
        assert f"/dashboard/exports/{CMRT}/evidence.xlsx" in page.text
        text = viewer.get(f"/dashboard/exports/{CMRT}/evidence.csv")
        assert text.status_code == 200
        assert text.headers["content-type"] == "text/csv; charset=utf-8"
        assert text.headers["content-disposition"] == (
            f'attachment; filename="{CMRT}-evidence-20170124.csv"'
        )
        table = list(csv.reader(io.StringIO(text.text)))
        assert table[0] == COLUMNS
        assert {row[2] for row in table[1:3]} == {"supplier:S001", "supplier:S002"}
        book = viewer.get(f"/dashboard/exports/{CMRT}/evidence.xlsx", params={"from": "2017-01-01"})
        assert book.status_code == 200
        sheets = openpyxl.load_workbook(io.BytesIO(book.content), read_only=True)
        rows: list[Any] = list(sheets["Obligations"].iter_rows(values_only=True))
        assert list(rows[0]) == COLUMNS and len(rows) == 3
        assert list(next(sheets["Survey statistics"].iter_rows(values_only=True))) == STAT_COLUMNS
        stats = viewer.get(f"/dashboard/exports/{CMRT}/statistics.csv")
        assert list(csv.reader(io.StringIO(stats.text)))[:2] == [
            STAT_COLUMNS,
            ["2016", "2", "0", "0", "0.0%", "0"],
        ]
        assert (
            viewer.get(f"/dashboard/exports/{CMRT}/evidence.csv?from=2017-13-01").status_code == 400
        )
        assert viewer.get(f"/dashboard/exports/{CMRT}/evidence.pdf").status_code == 404
        assert viewer.get("/dashboard/exports/nope/evidence.csv").status_code == 404


def test_the_calendar_shows_the_next_90_days_as_the_feeds_do(desk: Desk) -> None:
    desk.clock.now = datetime(2003, 1, 10, 18, tzinfo=UTC)
    with desk.client("victor") as viewer:
        page = viewer.get("/dashboard/calendar")
    assert page.status_code == 200
    text = page.text
    assert "America/Los_Angeles (PST)" in text
    offer = text[text.index("Stock Option Exchange") :]
    assert "Monday 20 January 2003" in offer
    assert "9:00 PM PST" in offer and "Election cutoff (elections and withdrawals close)" in offer


def test_the_calendar_holds_what_the_public_feed_publishes_in_the_window(desk: Desk) -> None:
    with desk.client("victor") as viewer:
        page = viewer.get("/dashboard/calendar").text
        feed = viewer.get("/feeds/public/program:fcpa:representatives.ics")
    assert feed.status_code == 200
    fcpa = page[page.index("FCPA policy acknowledgments") :]
    today = NOW.astimezone(ZoneInfo("America/Los_Angeles")).date()
    shown = 0
    for event in icalendar.Calendar.from_ical(feed.content).walk("VEVENT"):
        start = event.decoded("DTSTART")
        day = start if not isinstance(start, datetime) else start.date()
        if today <= day < today + timedelta(days=90):
            assert str(event["SUMMARY"]) in fcpa
            shown += 1
    assert shown >= 1


def test_deliveries_page_by_due_then_id_and_list_the_retrying(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deliveries, "PAGE", 2)
    sent = [m.id for m in desk.rows(OutboxState.SENT)]
    retrying, *rest = sent
    with begin_write(desk.service.factory) as session:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(rest))
            .values(state=OutboxState.FAILED, last_code=554, last_error="5.7.1 rejected")
        )
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == retrying)
            .values(state=OutboxState.PENDING, attempts=2, last_code=451, last_error="try later")
        )
    expected = sorted(desk.rows(OutboxState.FAILED), key=lambda m: (m.due_at, m.id), reverse=True)
    assert len(expected) > 4
    link = re.compile(r'href="(/dashboard/deliveries\?[^"]*before=[^"]+)"')
    seen: list[int] = []
    with desk.client("alice") as operator:
        page = operator.get("/dashboard/deliveries")
        while True:
            seen += [int(i) for i in re.findall(r'<a href="/dashboard/messages/(\d+)">', page.text)]
            found = link.search(page.text)
            if found is None:
                break
            page = operator.get(found.group(1).replace("&amp;", "&"))
        assert seen == [m.id for m in expected]
        waiting = operator.get("/dashboard/deliveries?show=retrying")
        assert f'/dashboard/messages/{retrying}/cancel"' in waiting.text
        assert "451 try later" in waiting.text


def test_the_program_and_person_pages_lead_to_the_exports_and_record_by_hand(desk: Desk) -> None:
    downloads = f'href="/dashboard/exports/{CMRT}/evidence.xlsx"'
    record = f'href="/dashboard/record?program={CMRT}"'
    with desk.client("victor") as viewer:
        page = viewer.get(f"/dashboard/programs/{CMRT}")
        assert downloads in page.text and record not in page.text
        assert "Record an answer" not in viewer.get("/dashboard/people/supplier:S002").text
    with desk.client("alice") as operator:
        assert record in operator.get(f"/dashboard/programs/{CMRT}").text
        person = operator.get("/dashboard/people/supplier:S002")
        assert 'href="/dashboard/record?person=supplier%3AS002"' in person.text
        form = operator.get("/dashboard/record?person=supplier%3AS002&program=" + CMRT)
        assert 'value="supplier:S002"' in form.text
        assert f'<option value="{CMRT}" selected>' in form.text


def test_an_election_by_hand_is_judged_at_the_servers_time_against_the_cutoff(
    desk: Desk,
) -> None:
    cutoff = datetime(2003, 1, 21, 5, tzinfo=UTC)  # 2003-01-20 21:00 PST
    fields = {
        "program": OFFER,
        "what": "election",
        "person": "employee:E1001",
        "reason": "paper form handed in at the desk",
    }
    with desk.client("alice") as operator:
        token = csrf(operator.get("/dashboard/record"))
        desk.clock.now = cutoff - timedelta(minutes=1)
        done = operator.post("/dashboard/record", data=fields | {"csrf": token})
        assert done.status_code == 200, done.text
        assert "Recorded election of employee:E1001" in done.text
        desk.clock.now = cutoff
        late = operator.post(
            "/dashboard/record", data=fields | {"csrf": token, "what": "withdrawal"}
        )
        assert late.status_code == 409
        assert "the election cutoff was 2003-01-20 21:00 PST" in late.text
    [election] = desk.events("election")
    assert (election.actor, election.payload) == (
        "user:alice",
        {"reason": "paper form handed in at the desk"},
    )
    assert desk.events("withdrawal") == []
