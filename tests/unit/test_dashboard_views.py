"""The dashboard's page assembly without HTTP: the response chart, the sent text, the timeline."""

from __future__ import annotations

from datetime import UTC, date, datetime
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import pytest

from calendars.notices import PersonView
from jobs.storage.dashboard import Curve
from jobs.storage.messages import Message
from scheduler.web.dashboard.overview import HEIGHT, PAD_BOTTOM, WIDTH, chart
from scheduler.web.dashboard.person import Loaded, event_title, owed, sent_text, timeline

LA = ZoneInfo("America/Los_Angeles")
DUE = datetime(2017, 6, 1, 7, tzinfo=UTC)  # 2017-06-01 00:00 PDT


def test_no_answers_no_chart() -> None:
    assert chart(Curve(per_day=[], due=DUE), 10, DUE, LA) is None


@pytest.mark.parametrize(
    ("per_day", "asked", "answered", "top"),
    [
        ([(date(2017, 5, 1), 3), (date(2017, 5, 20), 2)], 10, 5, 10),
        # More answers than people asked now (someone left the program): the axis grows.
        ([(date(2017, 5, 1), 12)], 10, 12, 12),
    ],
)
def test_the_curve_climbs_to_everyone_answered(
    per_day: list[tuple[date, int]], asked: int, answered: int, top: int
) -> None:
    drawn = chart(Curve(per_day=per_day, due=DUE), asked, datetime(2017, 7, 1, tzinfo=UTC), LA)
    assert drawn is not None
    assert (drawn.answered, drawn.total) == (answered, top)
    points = [tuple(map(float, p.split(","))) for p in drawn.points.split()]
    assert points[0][1] == HEIGHT - PAD_BOTTOM  # starts at zero
    ys = [y for _, y in points]
    assert ys == sorted(ys, reverse=True)  # never goes down
    assert all(0 <= x <= WIDTH for x, _ in points)
    assert drawn.due_x is not None and drawn.due_label == "due 2017-06-01 00:00 PDT"


def test_sent_text_is_the_plain_part() -> None:
    message = EmailMessage()
    message["Subject"] = "FCPA"
    message.set_content("Please acknowledge <the policy>.\n")
    message.add_alternative("<p>Please acknowledge</p>", subtype="html")
    assert sent_text(bytes(message)) == "Please acknowledge <the policy>.\n"
    assert sent_text(b"not a mime message at all") == "not a mime message at all"


def test_timeline_is_newest_first_in_the_zone() -> None:
    sent = datetime(2017, 1, 10, 17, tzinfo=UTC)
    message = Message(
        id=7,
        identity="fcpa/x/y/request",
        message_id="<7@x>",
        program="fcpa",
        occurrence="2017",
        person="employee:E1",
        recipient="e1@example.com",
        job="fcpa_request",
        step="request",
        state="sent",
        due_at=sent,
        expires_at=None,
        attempts=1,
        last_code=250,
        last_error=None,
        sent_at=sent,
        resend_of=None,
        created_at=sent,
        updated_at=sent,
    )
    body = EmailMessage()
    body.set_content("Hello")
    loaded = Loaded(
        person=PersonView(
            id=1, kind="employee", external_id="E1", name="E", email="e1@example.com"
        ),
        messages=[message],
        texts={7: (250, "2.0.0 Ok: queued", bytes(body))},
        events=[
            {
                "at": "2017-02-01T12:00:00+00:00",
                "kind": "fcpa_ack",
                "program": "fcpa",
                "actor": "link:employee:E1",
                "source": "api",
                "backfill": False,
                "payload": {"policy_version": "2017"},
            }
        ],
        feed_since=None,
    )
    first, second = timeline(loaded, LA)
    assert (first.kind, first.when) == ("event", "2017-02-01 04:00 PST")
    assert first.title == "Acknowledgment"  # the fact in words, not fcpa_ack
    assert (second.title, second.when) == ("FCPA request to e1@example.com", "2017-01-10 09:00 PST")
    assert second.href == "/dashboard/messages/7" and first.href == ""  # its page: retry, resend
    assert second.detail == "fcpa · 250 2.0.0 Ok: queued" and second.text == "Hello\n"


def test_owed_leaves_retired_out_and_uses_each_programs_zone() -> None:
    loaded = Loaded(
        person=PersonView(id=1, kind="supplier", external_id="S1", name="S", email="s@x.example"),
        messages=[],
        texts={},
        events=[],
        feed_since=None,
        owes=[
            {
                "program": "cmrt",
                "occurrence": "2016",
                "state": "pending",
                "due_at": "2017-02-10T17:00:00+00:00",
            },
            {"program": "fcpa", "occurrence": "2017", "state": "retired", "due_at": None},
        ],
    )
    [only] = owed(loaded, {"cmrt": ZoneInfo("America/New_York")}, LA)
    assert (only.program, only.state, only.due) == ("cmrt", "pending", "2017-02-10 12:00 EST")


@pytest.mark.parametrize(
    ("kind", "title"),
    [
        ("cmrt_response", "CMRT response"),
        ("withdrawal", "Withdrawal of the election"),
        ("termination", "Departure"),
        ("extension_retraction", "Retraction of the offer extension"),
        ("message_retried", "Message retried"),  # not a fact: its name, spaced
    ],
)
def test_the_timeline_says_each_event_in_words(kind: str, title: str) -> None:
    assert event_title(kind) == title
