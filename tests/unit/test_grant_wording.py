"""The grant notice says what the offer's rules give, rendered from the planner's own context."""

from __future__ import annotations

from jobs.render import render
from tests.unit.test_notices import employee, fact, offer_plan
from tests.world import OFFER


def test_the_grant_notice_lists_the_schedule_the_price_rule_and_the_expiry() -> None:
    facts = [fact(1, "election", "2003-01-10T10:00:00-08:00", 1, OFFER)]
    [grant] = [n for n in offer_plan([employee(1)], facts).notices if n.job == "grant_notice"]
    text = render(grant.template, {"timezone": "America/Los_Angeles", **grant.context}).text
    assert "Today, Monday 21 July 2003, you were granted a new option for 1725 shares" in text
    assert "closing price of the last trading day before the grant date, Friday 18 July" in text
    assert "expires on Sunday 21 July 2013" in text
    assert "It vests in 25 installments:" in text
    assert "- Wednesday 21 January 2004: 863 shares" in text  # half, rounded cumulatively
    assert "- Saturday 21 January 2006: 36 shares" in text
    assert "six months from today" not in text
