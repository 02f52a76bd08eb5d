"""Recipients act from the email: the message caught by a real SMTP server, its link followed
over a real socket, the form submitted, the fact recorded and the follow-ups gone.

Each test plays the recipient with a plain HTTP client (cookies kept, as a browser keeps them):
no JavaScript is needed by any page. The browser test (``test_action_browser``) walks the
same pages in Chromium.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import httpx
import pytest

from config.facts import FactKind
from jobs.storage.db import EventSource, OutboxState
from tests.cmrt_workbooks import with_macros, workbook, zip_bomb
from tests.daemon_support import WAVE_1
from tests.integration.conftest import CONTACT, WAVE_CUTOFF, Recipient, body
from tests.world import OFFER


def test_elect_then_withdraw_from_the_announcement_then_refused_after_the_cutoff(
    recipient: Recipient,
) -> None:
    recipient.run()
    [announcement] = recipient.mail("e1001@example.com", "elect before")
    url = recipient.link(announcement)
    page, csrf = recipient.open(url)
    assert page.status_code == 200 and csrf
    assert page.headers["referrer-policy"] == "no-referrer"
    # The slide-9 table, and the cutoff in Pacific time with its zone named.
    assert "Monday 20 January 2003, 9:00 PM PST" in page.text
    assert "not eligible" in page.text and ">600<" in page.text and "1725" in page.text
    assert recipient.outbox("cutoff_reminder", "e1001@example.com")  # pending until she elects

    done = recipient.client.post(url, data={"csrf": csrf, "choice": "elect"})
    assert done.status_code == 200 and "Your election is recorded" in done.text
    [election] = recipient.facts(FactKind.ELECTION)
    assert (election.actor, election.program) == ("link:employee:E1001", OFFER)
    recipient.run()
    assert set(recipient.outbox("cutoff_reminder", "e1001@example.com")) == {OutboxState.CANCELLED}
    [receipt] = recipient.mail("e1001@example.com", "Receipt")
    assert recipient.link(receipt)
    # One thread per obligation, answered to the program's named contact.
    assert receipt["References"] == announcement["References"] == receipt["In-Reply-To"]
    assert str(receipt["References"]).endswith(".option-exchange-2003@example.com>")
    assert (
        receipt["Reply-To"]
        == announcement["Reply-To"]
        == f'"{CONTACT.split(" <")[0]}" <dana.kim@example.com>'
    )
    assert "Questions: Dana Kim, Stock Administration" in body(receipt, "plain")

    # A replay shows what is recorded and records nothing more.
    again = recipient.client.post(url, data={"csrf": csrf, "choice": "elect"})
    assert "Your election is recorded" in again.text and "Withdraw my election" in again.text
    assert len(recipient.facts(FactKind.ELECTION)) == 1

    recipient.clock.advance(timedelta(minutes=10))
    withdrawn = recipient.client.post(url, data={"csrf": csrf, "choice": "withdraw"})
    assert "Your withdrawal is recorded" in withdrawn.text
    assert len(recipient.facts(FactKind.WITHDRAWAL)) == 1

    # One minute after the cutoff (2003-01-21T05:00Z), judged by the server's clock.
    recipient.clock.now = WAVE_CUTOFF + timedelta(minutes=1)
    late_page, _ = recipient.open(url)
    assert "The offer closed on Monday 20 January 2003, 9:00 PM PST" in late_page.text
    late = recipient.client.post(url, data={"csrf": csrf, "choice": "elect"})
    assert late.status_code == 409
    assert "the election cutoff was 2003-01-20 21:00 PST" in late.text
    assert len(recipient.facts(FactKind.ELECTION)) == 1


def test_acknowledge_the_fcpa_policy_and_the_follow_ups_stop(recipient: Recipient) -> None:
    recipient.clock.now = WAVE_1 + timedelta(minutes=1)
    recipient.run()
    [request] = recipient.mail("t001@example.com", "FCPA")
    url = recipient.link(request)
    page, csrf = recipient.open(url)
    assert "policy version <strong>2017-1</strong>" in page.text
    assert recipient.outbox("fcpa_reminder", "t001@example.com")
    done = recipient.client.post(url, data={"csrf": csrf})
    assert done.status_code == 200 and "Thank you" in done.text
    [ack] = recipient.facts(FactKind.FCPA_ACK)
    assert ack.payload["policy_version"] == "2017-1" and ack.payload["client"] == "127.0.0.1"
    # The event log says how the answer came: through the person's own link.
    assert (ack.source, ack.actor) == (EventSource.LINK, "link:third_party:T001")
    recipient.run()
    assert set(recipient.outbox("fcpa_reminder", "t001@example.com")) <= {OutboxState.CANCELLED}
    # Opened again (a forwarded link, a second click): what is recorded, no form.
    again, csrf_again = recipient.open(url)
    assert "You acknowledged policy version 2017-1 on Monday 9 January 2017" in again.text
    assert not csrf_again


def test_upload_an_incomplete_then_a_complete_cmrt(recipient: Recipient) -> None:
    recipient.clock.now = WAVE_1 + timedelta(minutes=1)
    recipient.run()
    [request] = recipient.mail("s001@example.com", "CMRT")
    url = recipient.link(request)
    page, csrf = recipient.open(url)
    assert 'enctype="multipart/form-data"' in page.text

    incomplete = workbook(blank=("D15", "D51"))
    files = {"file": ("acme-cmrt.xlsx", incomplete)}
    got = recipient.client.post(url, data={"csrf": csrf}, files=files)
    assert got.status_code == 200 and "incomplete" in got.text
    assert "Declaration!D15</strong>: Contact email is required" in got.text
    assert "Declaration!D51</strong>: Question 6 (Gold) is required" in got.text
    [response] = recipient.facts(FactKind.CMRT_RESPONSE)
    assert response.payload["complete"] is False
    assert (response.source, response.actor) == (EventSource.LINK, "link:supplier:S001")
    # The file as uploaded is kept, named by its sha256 in the fact.
    assert response.payload["sha256"] == hashlib.sha256(incomplete).hexdigest()
    assert recipient.upload(response.payload["sha256"]) == incomplete
    assert "Declaration!D15: Contact email is required" in response.payload["issues"]
    recipient.run()  # the correction request goes out at once, naming the cells
    [correction] = recipient.mail("s001@example.com", "correct")
    assert "Declaration!D15" in body(correction, "plain")

    recipient.clock.advance(timedelta(minutes=5))
    complete = workbook()
    files = {"file": ("acme-cmrt.xlsx", complete)}
    got = recipient.client.post(url, data={"csrf": csrf}, files=files)
    assert got.status_code == 200 and "is complete" in got.text
    latest = recipient.facts(FactKind.CMRT_RESPONSE)[-1]
    assert latest.payload["complete"] is True
    assert recipient.upload(latest.payload["sha256"]) == complete
    recipient.run()
    pending = [
        s
        for job in ("cmrt_follow_up", "cmrt_correction")
        for s in recipient.outbox(job, "s001@example.com")
        if s in (OutboxState.PENDING, OutboxState.CLAIMED)
    ]
    assert pending == []


@pytest.mark.parametrize(
    ("upload", "status", "says"),
    [
        (b"%PDF-1.4", 422, "not an Excel workbook"),
        ("macros", 422, "contains macros"),
        ("bomb", 422, "expands to far more"),
        (b"x" * (6 * 1024 * 1024), 413, "at most 5 MB"),
    ],
)
def test_bad_uploads_are_a_clear_page_and_record_nothing(
    recipient: Recipient, upload: bytes | str, status: int, says: str
) -> None:
    recipient.clock.now = WAVE_1 + timedelta(minutes=1)
    recipient.run()
    [request] = recipient.mail("s001@example.com", "CMRT")
    url = recipient.link(request)
    _, csrf = recipient.open(url)
    data = {"macros": with_macros(workbook()), "bomb": zip_bomb()}.get(str(upload), upload)
    assert isinstance(data, bytes)
    got = recipient.client.post(url, data={"csrf": csrf}, files={"file": ("c.xlsx", data)})
    assert (got.status_code, says in got.text) == (status, True), got.text
    assert "Traceback" not in got.text
    assert recipient.facts(FactKind.CMRT_RESPONSE) == []
    assert recipient.upload(hashlib.sha256(data).hexdigest()) is None  # nothing kept


def test_tampered_foreign_expired_and_csrf_less_requests_change_nothing(
    recipient: Recipient,
) -> None:
    recipient.run()
    [announcement] = recipient.mail("e1001@example.com", "elect before")
    url = recipient.link(announcement)
    head, _, tail = url.rpartition(".")
    bad = [url[:-3], head + "." + tail[::-1], recipient.server.url + "/act/nonsense"]
    for target in bad:
        page = recipient.client.get(target)
        assert page.status_code == 404 and "This link is not valid" in page.text
    # Without the form's value, or from a client without the cookie: refused.
    page, csrf = recipient.open(url)
    assert recipient.client.post(url, data={"choice": "elect"}).status_code == 403
    with httpx.Client(timeout=30) as stranger:
        assert stranger.post(url, data={"csrf": csrf, "choice": "elect"}).status_code == 403
    # Long after the offer: the link has expired, and says what it was for.
    recipient.clock.now = WAVE_CUTOFF + timedelta(days=60)
    expired = recipient.client.get(url)
    assert expired.status_code == 410 and "2003 Stock Option Exchange Program" in expired.text
    assert recipient.facts(FactKind.ELECTION) == []


_ISO = re.compile(r"\d{4}-\d{2}-\d{2}")


def test_every_email_a_recipient_gets_reads_as_written_for_people(recipient: Recipient) -> None:
    """No raw ISO date or instant in any subject, text or HTML part; times with their zone;
    every message that asks for something carries its link, in both parts."""
    # The offer opened on 2002-12-19; at 17:05 PST that day (01:05 UTC the next), the next
    # day's presentation is still ahead: the announcement and its invitation go out.
    recipient.clock.now = datetime(2002, 12, 20, 1, 5, tzinfo=UTC)
    recipient.run()
    [announcement] = recipient.mail("e1001@example.com", "elect before")
    url = recipient.link(announcement)
    _, csrf = recipient.open(url)
    recipient.client.post(url, data={"csrf": csrf, "choice": "elect"})
    recipient.run()  # the election receipt
    recipient.clock.now = WAVE_1 + timedelta(minutes=1)
    recipient.run()  # FCPA requests, CMRT requests
    [survey] = recipient.mail("s001@example.com", "CMRT")
    survey_url = recipient.link(survey)
    _, csrf = recipient.open(survey_url)
    files = {"file": ("c.xlsx", workbook(blank=("D15",)))}
    recipient.client.post(survey_url, data={"csrf": csrf}, files=files)
    recipient.run()  # the correction request
    seen = set()
    for received in recipient.smtp.recorder.received:
        message = email.message_from_bytes(received.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        seen.add(str(message["Subject"]))
        text, html = body(message, "plain"), body(message, "html")
        for part in (str(message["Subject"]), text, html):
            assert not _ISO.search(part), (message["Subject"], part)
        assert "<br>" not in html
        if "/act/" in text:
            assert recipient.link(message)
    receipt = recipient.mail("e1001@example.com", "Receipt")[0]
    # The issue's example: not "2002-12-20T01:05:00+00:00", the wrong local day.
    assert "recorded your election on Thursday 19 December 2002, 5:05 PM PST" in body(
        receipt, "plain"
    )
    assert len(seen) >= 6, seen
