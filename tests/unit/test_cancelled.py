"""Why a cancelled message is cancelled, as the person page and the read API say it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from jobs.storage.cancelled import Fact, why
from jobs.storage.messages import Message
from jobs.storage.outbox import UNPLANNED

LA = ZoneInfo("America/Los_Angeles")
PLANNED = datetime(2017, 1, 3, 17, tzinfo=UTC)
WITHDRAWN = datetime(2017, 1, 24, 20, tzinfo=UTC)  # 12:00 PST
MESSAGE = Message(
    id=7,
    identity="fcpa/2017-01-31/employee:E1/overdue/1",
    message_id="7@x.example",
    program="fcpa",
    occurrence="2017-01-31",
    person="employee:E1",
    recipient="e1@example.com",
    job="fcpa_overdue",
    step="overdue/1",
    state="cancelled",
    due_at=datetime(2017, 2, 7, 17, tzinfo=UTC),
    expires_at=None,
    attempts=0,
    last_code=None,
    last_error=UNPLANNED,
    sent_at=None,
    resend_of=None,
    created_at=PLANNED,
    updated_at=WITHDRAWN,
)
# Recorded the evening before the withdrawal, Pacific time: the 23rd there, the 24th in UTC.
ACK = Fact(
    kind="fcpa_ack",
    at=datetime(2017, 1, 24, 6, tzinfo=UTC),
    received_at=datetime(2017, 1, 24, 6, tzinfo=UTC),
)
LATER = Fact(kind="termination", at=WITHDRAWN, received_at=datetime(2017, 2, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("changes", "answered", "facts", "withdrawn", "said"),
    [
        (
            {},
            {"acknowledged_at": "2017-01-24T06:00:00+00:00"},
            [ACK],
            True,
            "no longer needed: acknowledged on 2017-01-23",
        ),
        (
            {},
            {"responded_at": "2017-01-20T17:00:00+00:00", "wave": "1"},
            [],
            True,
            "no longer needed: CMRT received on 2017-01-20",
        ),
        # Answered after the withdrawal: not why it was withdrawn; the fact before it is.
        (
            {},
            {"elected_at": "2017-02-01T00:00:00+00:00"},
            [ACK, LATER],
            True,
            "withdrawn by the planner on 2017-01-24, after the acknowledgment recorded on "
            "2017-01-23",
        ),
        (
            {},
            {"elected_at": None},
            [replace(ACK, kind="withdrawal")],
            True,
            "withdrawn by the planner on 2017-01-24, after the withdrawal of the election "
            "recorded on 2017-01-23",
        ),
        (
            {},
            None,
            [],
            True,
            "withdrawn by the planner on 2017-01-24: the facts no longer call for it",
        ),
        (
            {},
            None,
            [replace(ACK, kind="some_new_kind")],
            True,
            "withdrawn by the planner on 2017-01-24, after the some new kind recorded on "
            "2017-01-23",
        ),
        # Tried (a 4xx) before the answer came: a message the planner cancelled.
        (
            {"attempts": 2},
            {"acknowledged_at": "2017-01-24T06:00:00+00:00"},
            [ACK],
            False,
            "no longer needed: acknowledged on 2017-01-23 (cancelled by the planner on "
            "2017-01-24 after 2 attempts to send it)",
        ),
        (
            {"attempts": 1},
            None,
            [],
            False,
            "cancelled by the planner on 2017-01-24 after 1 attempt to send it: the facts no "
            "longer call for it",
        ),
        (
            {"last_error": "cancelled by user:alice: wrong person"},
            {"acknowledged_at": "2017-01-24T06:00:00+00:00"},
            [ACK],
            False,
            "cancelled by user:alice: wrong person",
        ),
    ],
)
def test_why_a_message_is_cancelled(
    changes: dict[str, Any],
    answered: dict[str, Any] | None,
    facts: list[Fact],
    withdrawn: bool,
    said: str,
) -> None:
    found = why(replace(MESSAGE, **changes), answered=answered, facts=facts, zone=LA)
    assert found is not None
    assert (found.withdrawn, found.why) == (withdrawn, said)


@pytest.mark.parametrize("state", ["pending", "claimed", "sent", "failed", "skipped"])
def test_a_message_not_cancelled_has_no_why(state: str) -> None:
    assert why(replace(MESSAGE, state=state), answered=None, facts=[ACK], zone=LA) is None
