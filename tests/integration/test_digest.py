"""The weekly digest as the compliance team reads it: names, plain job names, local times."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sqlalchemy import select

from jobs.storage.db import OutboxMessage
from tests.integration.conftest import Recipient, body
from tests.world import OPEN_WEEK

_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


def _digests(recipient: Recipient) -> list[str]:
    team = recipient.service.settings.compliance_email
    return [
        f"{m['Subject']}\n{body(m, 'plain')}"
        for m in recipient.mail(str(team), "Compliance digest")
    ]


def test_the_digest_reads_as_a_report(recipient: Recipient) -> None:
    # Monday 13 January 2003, 08:30 PST: the week of the seed offer's last full week.
    recipient.clock.now = OPEN_WEEK.replace(day=13, hour=16, minute=30)
    recipient.run()
    [text] = _digests(recipient)
    assert text.startswith("Compliance digest, week of Monday 13 January 2003:")
    assert "Messages due in the next 7 days:" in text
    # Times in the deployment's zone, the zone named; no raw ISO instants, no job identifiers.
    assert not _ISO.search(text), text
    assert "PST" in text
    assert "cutoff_reminder" not in text and "Cutoff reminder" in text
    # People by name, with their address.
    assert re.search(r"to [A-Z][a-z]+ [A-Z][a-z]+ <[^>]+@[^>]+>", text), text


def test_the_digest_waits_for_the_day_after_a_monday_holiday(recipient: Recipient) -> None:
    # Monday 20 January 2003 is Martin Luther King Day: that week's digest is due on Tuesday
    # at 08:00 PST, and is still the digest of the week of the 20th.
    recipient.clock.now = OPEN_WEEK.replace(day=20, hour=17)
    recipient.run()
    with recipient.service.factory() as session:
        due = session.scalars(
            select(OutboxMessage.due_at).where(
                OutboxMessage.job == "digest", OutboxMessage.occurrence == "2003-01-20"
            )
        ).one()
    assert due == datetime(2003, 1, 21, 16, 0, tzinfo=UTC)
    assert not _digests(recipient)  # nothing went out on the holiday
