"""A combined escalation, rendered from the planner's own notices as its recipient reads it."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from calendars import cmrt_notices
from calendars.escalations import combined_context, group_key, group_message_id
from calendars.notices import Snapshot
from jobs.render import render
from tests.unit.test_notices import CM, TEAM, supplier

AFTER = datetime(2017, 4, 1, tzinfo=UTC)  # the wave-1 escalation (10 March 2017) has passed


def test_a_buyers_silent_suppliers_are_one_email_listing_each() -> None:
    # Three of one buyer's suppliers in wave 1, none of whom responded.
    people = [supplier(n) for n in (3, 1, 2)]
    snapshot = Snapshot(people=people, grants=[], facts=[], team=TEAM)
    notices = [n for n in cmrt_notices.plan(CM, snapshot, AFTER).notices]
    escalations = [n for n in notices if n.job == "cmrt_escalation"]
    assert len(escalations) == 3
    keys = {group_key(n) for n in escalations}
    assert len(keys) == 1  # one recipient, one day: one email
    key = keys.pop()
    assert key is not None
    assert group_key(next(n for n in notices if n.job == "cmrt_request")) is None
    first = escalations[0].identity
    assert group_message_id(key, first, "example.com").endswith(".combined@example.com")
    # Another first row (the next email of a large group): another Message-ID.
    assert group_message_id(key, first, "x.com") != group_message_id(key, "other", "x.com")

    context = combined_context(escalations, CM.zone) | {"timezone": CM.timezone}
    out = render("cmrt_escalation", context)
    assert out.subject == "Escalation: 3 suppliers have not returned the CMRT for 2016"
    lines = [line for line in out.text.splitlines() if line.startswith("- ")]
    assert lines == [
        f"- Supplier {n} (S00{n}, s{n}@example.com): CMRT due Friday 10 February 2017, "
        "28 days overdue, 3 follow-ups unanswered"
        for n in (1, 2, 3)
    ]
    assert "Form SD is due Wednesday 31 May 2017." in out.text
    assert not re.search(r"\d{4}-\d{2}-\d{2}", out.subject + out.text + out.html)
    assert out.html.count("<li>") == 3


def test_one_escalated_person_reads_as_one() -> None:
    snapshot = Snapshot(people=[supplier(7)], grants=[], facts=[], team=TEAM)
    one = [n for n in cmrt_notices.plan(CM, snapshot, AFTER).notices if n.job == "cmrt_escalation"]
    out = render("cmrt_escalation", combined_context(one, CM.zone))
    assert out.subject == "Escalation: 1 supplier has not returned the CMRT for 2016"
    assert "One supplier you own has not returned" in out.text
