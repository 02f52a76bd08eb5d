"""A withdrawn forecast is not a cancelled message: the person page and the read API say which
each cancelled row is, and why, in words.

The seed world delivered at ``NOW`` (``tests.dashboard_desk``); alice records S001's CMRT
by hand, which withdraws its follow-ups and escalation at the next plan, and cancels one of
S002's follow-ups with a reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jobs.storage.db import OutboxState
from scheduler.web.dashboard import person
from tests.dashboard_desk import CMRT, Desk, csrf, opened

AUDITOR = "auditor:auditor-secret-0123456789"
API = {"Authorization": f"Bearer {AUDITOR.partition(':')[2]}"}
RECEIVED = "no longer needed: CMRT received on 2017-01-24"


@pytest.fixture
def desk(db_url: str, tmp_path: Path) -> Iterator[Desk]:
    tokens = {"api_tokens": [AUDITOR], "api_scopes": {"auditor": ["read"]}}
    with opened(db_url, tmp_path, **tokens) as made:
        yield made


def test_the_timeline_holds_the_newest_messages_and_events(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A person of many years has more than a page holds: the page shows the newest."""
    monkeypatch.setattr(person, "TIMELINE", 3)
    [s001] = {m.person_id for m in desk.rows() if "/supplier:S001/request/" in m.identity}
    mine = [m.id for m in desk.rows() if m.person_id == s001]
    assert len(mine) > 3
    with desk.client("victor") as viewer:
        page = viewer.get("/dashboard/people/supplier:S001")
    shown = [int(i) for i in re.findall(r'<a href="/dashboard/messages/(\d+)">', page.text)]
    assert sorted(shown) == mine[-3:]
    assert "The latest 3 messages and the latest 3 events are shown." in page.text


def heads(page: httpx.Response) -> list[str]:
    """Return each timeline line's head: when, what, state and detail, tags stripped."""
    found = re.findall(r'<div class="head">(.*?)</div>', page.text)
    return [re.sub(r"<[^>]+>", "", head) for head in found]


def test_withdrawn_forecasts_and_an_operators_cancel_say_why(desk: Desk) -> None:
    follow_up = next(
        m
        for m in desk.rows(OutboxState.PENDING)
        if m.program == CMRT and m.identity.startswith(f"{CMRT}/2016/supplier:S002/follow-up/")
    )
    with desk.client("alice") as operator:
        token = csrf(operator.get("/dashboard/record"))
        recorded = operator.post(
            "/dashboard/record",
            data={
                "csrf": token,
                "program": CMRT,
                "what": "response",
                "person": "supplier:S001",
                "complete": "complete",
                "reason": "CMRT arrived by post",
            },
        )
        assert recorded.status_code == 200, recorded.text
        cancelled = operator.post(
            f"/dashboard/messages/{follow_up.id}/cancel",
            data={"csrf": token, "reason": "supplier asked for a call instead"},
        )
        assert cancelled.status_code == 303
    desk.deliver()  # the plan that reacts to the response
    withdrawn = [
        m
        for m in desk.rows(OutboxState.CANCELLED)
        if m.identity.startswith(f"{CMRT}/2016/") and m.person_id != follow_up.person_id
    ]
    assert len(withdrawn) == 4  # three follow-ups and the escalation to the supplier's owner

    with desk.client("victor") as viewer:
        s001 = heads(viewer.get("/dashboard/people/supplier:S001"))
        s002 = heads(viewer.get("/dashboard/people/supplier:S002"))
        forecast = viewer.get(f"/dashboard/messages/{withdrawn[0].id}").text
        theirs = viewer.get(f"/dashboard/messages/{follow_up.id}").text
    assert '<span class="status withdrawn">withdrawn</span></h1>' in forecast
    assert f"<dt>Withdrawn</dt><dd>{RECEIVED}<br>" in forecast
    assert "no longer planned" not in forecast  # the outbox's own words, not a person's
    assert '<span class="status cancelled">cancelled</span></h1>' in theirs
    assert "<dt>Cancelled</dt><dd>cancelled by user:alice: supplier asked for a call" in theirs
    lines = [line for line in s001 if RECEIVED in line]
    assert len(lines) == 4 and all(" withdrawn " in line for line in lines), s001
    assert not [line for line in s001 if " cancelled " in line]
    # The message's line (its state "cancelled"), not the event line of the cancel itself.
    [mine] = [line for line in s002 if " cancelled " in line and "Message cancelled" not in line]
    assert [line for line in s002 if "Message cancelled" in line], s002  # the event in words
    assert "cancelled by user:alice: supplier asked for a call instead" in mine
    assert not [line for line in s002 if "withdrawn" in line]

    with httpx.Client(base_url=desk.server.url, headers=API, timeout=30) as api:
        listed = api.get(
            "/api/v1/messages", params={"person": "supplier:S001", "state": "cancelled"}
        )
        assert listed.status_code == 200, listed.text
        items = listed.json()["items"]
        assert sorted(m["id"] for m in items) == sorted(m.id for m in withdrawn)
        assert {(m["withdrawn"], m["cancelled_why"]) for m in items} == {(True, RECEIVED)}
        one = api.get(f"/api/v1/messages/{follow_up.id}").json()
        assert (one["state"], one["withdrawn"]) == ("cancelled", False)
        assert one["cancelled_why"] == "cancelled by user:alice: supplier asked for a call instead"
        sent = api.get("/api/v1/messages", params={"person": "supplier:S001", "state": "sent"})
        assert {(m["withdrawn"], m["cancelled_why"]) for m in sent.json()["items"]} == {
            (False, None)
        }
