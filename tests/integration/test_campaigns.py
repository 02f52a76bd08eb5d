"""The seeds' campaigns replayed on a virtual clock over the demo data, counted message by message.

The expected counts are derived here, independently of the planners, from the demo scenario's
facts and the programs' published dates: what each person should have received and when.
"""

from __future__ import annotations

import asyncio
import csv
import email
import email.header
import email.policy
import json
import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from config.loader import load_programs
from config.settings import Settings
from jobs.imports import DEMO_FILES, DEMO_SCENARIO, demo_dir, import_csv, load_scenario
from jobs.mail.transport import MaildirTransport
from jobs.storage.db import (
    OutboxMessage,
    OutboxState,
    SentMessage,
    make_engine,
    session_factory,
)
from scheduler.daemon.loop import simulate
from scheduler.daemon.service import Service

pytestmark = pytest.mark.slow
PROGRAMS = {p.id: p for p in load_programs(None)}
NOW = datetime(2026, 11, 22, tzinfo=UTC)


def z(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def scenario() -> list[dict[str, Any]]:
    with (demo_dir() / DEMO_SCENARIO).open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["at"] = z(row["at"])
        row["payload"] = json.loads(row["payload"])
    return rows


def load_demo(url: str) -> None:
    engine = make_engine(url)
    factory = session_factory(engine)
    for kind, name in DEMO_FILES:
        with factory() as session:
            import_csv(session, kind, demo_dir() / name, now=NOW, actor="test")
    with factory() as session:
        load_scenario(session, demo_dir() / DEMO_SCENARIO, programs=PROGRAMS, now=NOW, actor="test")
    engine.dispose()


def run(url: str, tmp_path: Path, program: str, start: datetime, end: datetime) -> Counter[str]:
    """Simulate ``program`` and return the sent messages per job, checked against the Maildir."""
    settings = Settings(database_url=url, maildir=tmp_path / "maildir")
    service = Service(
        settings, [PROGRAMS[program]], transport=MaildirTransport(tmp_path / "maildir")
    )
    asyncio.run(simulate(service, start=start, end=end))
    engine = make_engine(url)
    with session_factory(engine)() as session:
        sent = session.execute(
            select(OutboxMessage.job, OutboxMessage.identity, SentMessage.message_id)
            .join(SentMessage, SentMessage.outbox_id == OutboxMessage.id)
            .where(OutboxMessage.state == OutboxState.SENT)
        ).all()
        assert session.scalar(
            select(func.count()).where(OutboxMessage.state == OutboxState.SENT)
        ) == len(sent)  # every sent row has its evidence
    engine.dispose()
    mailed: dict[str, str] = {}
    for path in (tmp_path / "maildir" / "new").iterdir():
        message = email.message_from_bytes(path.read_bytes())
        header = email.header.make_header(email.header.decode_header(message["X-Tickler-Identity"]))
        assert message["Message-ID"] not in mailed  # nothing went out twice
        _reads_as_written_for_people(path.read_bytes())
        mailed[message["Message-ID"]] = "".join(str(header).split())
    # Every row sent is in the Maildir exactly once, and nothing else is: alone, or (an
    # escalation) in the one email of its recipient's day, sent as that group's first row.
    rows: dict[str, list[tuple[str, str]]] = {}
    for job, identity, message_id in sent:
        rows.setdefault(f"<{message_id.strip('<>')}>", []).append((job, identity))
    assert sorted(mailed) == sorted(rows)
    for message_id, group in rows.items():
        assert mailed[message_id] in {identity for _, identity in group}
        assert len(group) == 1 or {job for job, _ in group} == {"cmrt_escalation"}, group
    return Counter(job for job, _, _ in sent)


_ISO = re.compile(r"\d{4}-\d{2}-\d{2}")


def _reads_as_written_for_people(raw: bytes) -> None:
    """Every kind of email the campaigns send, as the planner made it: no raw ISO date or
    instant in the subject, the text or the HTML, and no HTML made of the text's lines."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    parts = [str(message["Subject"])]
    for kind in ("plain", "html"):
        body = message.get_body((kind,))
        assert isinstance(body, EmailMessage), (message["Subject"], kind)
        parts.append(str(body.get_content()))
    for text in parts:
        assert not _ISO.search(text), (message["Subject"], _ISO.search(text))
    assert "<br>" not in parts[2], message["Subject"]


def in_force(facts: list[dict[str, Any]], person: str, at: datetime) -> bool:
    """Return whether ``person`` has an election in force at ``at``."""
    state = False
    for fact in sorted(facts, key=lambda f: f["at"]):
        if fact["person"] == person and fact["at"] <= at:
            state = fact["kind"] == "election"
    return state


def test_option_exchange_campaign(db_url: str, tmp_path: Path) -> None:
    load_demo(db_url)
    got = run(
        db_url,
        tmp_path,
        "option-exchange-2003",
        z("2002-12-01T00:00:00+00:00"),
        z("2006-02-01T00:00:00+00:00"),
    )
    facts = [r for r in scenario() if r["program"] == "option-exchange-2003"]
    terminated = {
        r["person"]: date.fromisoformat(r["payload"]["date"])
        for r in scenario()
        if r["kind"] == "termination"
    }
    eligible = ["employee:E1001", *(f"employee:E{n}" for n in range(1005, 1023))]
    cutoff = z("2003-01-20T21:00:00-08:00")
    # When the reminders go out: "7d" at the 09:00 send time; "1d" (Sunday) and "3h" (Martin
    # Luther King Day) on the Friday before, at 09:00 and at 18:00.
    reminders = [
        z("2003-01-13T09:00:00-08:00"),
        z("2003-01-17T09:00:00-08:00"),
        z("2003-01-17T18:00:00-08:00"),
    ]
    participants = [p for p in eligible if in_force(facts, p, cutoff)]
    granted = [p for p in participants if terminated.get(p, date.max) > date(2003, 7, 21)]
    expected = {
        "offer_announcement": len(eligible),
        "presentation_invitation": 2 * len(eligible),
        "cutoff_reminder": sum(not in_force(facts, p, r) for p in eligible for r in reminders),
        "election_receipt": sum(f["kind"] == "election" for f in facts),
        "withdrawal_receipt": sum(f["kind"] == "withdrawal" for f in facts),
        "promise_to_grant": len(participants),
        "grant_notice": len(granted),
        "vesting_notice": 25 * len(granted),
    }
    digests = got.pop("digest", 0)
    assert dict(got) == expected
    assert expected == {
        "offer_announcement": 19,
        "presentation_invitation": 38,
        "cutoff_reminder": 33,  # E1019 elected Friday 15:10, after the 1d reminder (now 09:00)
        "election_receipt": 11,
        "withdrawal_receipt": 1,
        "promise_to_grant": 10,
        "grant_notice": 9,
        "vesting_notice": 225,
    }
    # a digest goes out on the Mondays when something is due within the week
    assert 10 <= digests <= 60


def test_conflict_minerals_cycle(db_url: str, tmp_path: Path) -> None:
    load_demo(db_url)
    got = run(
        db_url,
        tmp_path,
        "conflict-minerals-2016",
        z("2017-01-01T00:00:00+00:00"),
        z("2017-06-30T00:00:00+00:00"),
    )
    responses: dict[str, list[dict[str, Any]]] = {}
    for row in scenario():
        if row["kind"] == "cmrt_response":
            responses.setdefault(row["person"], []).append(row)
    with (demo_dir() / "suppliers.csv").open(encoding="utf-8") as handle:
        suppliers = {f"supplier:{r['external_id']}": r["tier"] for r in csv.DictReader(handle)}

    def at9(day: date) -> datetime:  # 09:00 Pacific, PST or PDT
        return z(f"{day.isoformat()}T09:00:00{'-08:00' if day < date(2017, 3, 12) else '-07:00'}")

    follow_ups = escalations = corrections = 0
    for supplier, tier in suppliers.items():
        due = date(2017, 2, 24) if tier == "indirect" else date(2017, 2, 10)
        mine = sorted(responses.get(supplier, []), key=lambda r: r["at"])
        first = mine[0]["at"] if mine else None
        times = [at9(due + timedelta(days=7 * n)) for n in (1, 2, 3)]
        follow_ups += sum(first is None or first > t for t in times)
        escalations += first is None or first > at9(due + timedelta(days=28))
        for i, response in enumerate(mine):
            if response["payload"].get("complete", True):
                continue
            following = mine[i + 1]["at"] if i + 1 < len(mine) else None
            steps = [response["at"] + timedelta(days=7 * k) for k in range(3)]
            corrections += sum(following is None or following > t for t in steps)
    expected = {
        "cmrt_request": 223,
        "cmrt_follow_up": follow_ups,
        "cmrt_escalation": escalations,
        "cmrt_correction": corrections,
        "cmrt_milestone": 4,
        "form_sd_reminder": 2,
    }
    digests = got.pop("digest", 0)
    assert dict(got) == expected
    # 223 surveyed, 205 responded (92%); 2 of them only after their escalation
    assert len(suppliers) == 223 and len(responses) == 205
    assert expected["cmrt_escalation"] == 20
    assert 5 <= digests <= 30
