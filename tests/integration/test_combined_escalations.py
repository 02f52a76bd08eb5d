"""Escalations combined: 39 people escalated the same day reach the Compliance Officer as one
email listing them all; exactly once across a crash; whoever acknowledges first drops out.

Real SMTP (the aiosmtpd sink), a real database (SQLite and PostgreSQL), the real planner.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from calendars.escalations import COMBINED_JOBS
from config.facts import FactKind
from jobs.mail.mime import OutgoingMessage
from jobs.mail.transport import DeliveryResult, Transport
from jobs.record import record
from jobs.storage import evidence, outbox
from jobs.storage.db import (
    EventLog,
    EventSource,
    FcpaRole,
    OutboxMessage,
    OutboxState,
    Person,
    PersonKind,
    SentMessage,
    begin_write,
)
from scheduler.cli.main import cli
from scheduler.daemon.service import Service
from tests.smtp_sink import Server, sinks
from tests.world import PROGRAMS, settings

FCPA = [p for p in PROGRAMS if p.id == "fcpa"]
OFFICER = "cfo@example.com"
HIRED = date(2026, 1, 5)  # onboarding acknowledgment due 4 February 2026
BEFORE = datetime.fromisoformat("2026-02-20T12:00:00+00:00")
PEOPLE = 40  # E2001 acknowledges after planning, before the send: 39 are escalated


class Crash(Exception):
    """The process died: raised by ``DiesAfterSending`` once the server accepted the email."""


class DiesAfterSending:
    """A real SMTP transport whose process dies right after the server accepts a message to
    ``victim``: the message is out, its ``sent`` mark never committed."""

    def __init__(self, inner: Transport, victim: str) -> None:
        self.inner, self.victim, self.died = inner, victim, False

    async def send(self, msg: OutgoingMessage, *, date: datetime) -> DeliveryResult:
        result = await self.inner.send(msg, date=date)
        if msg.to == (self.victim,) and not self.died:
            self.died = True
            raise Crash(msg.message_id)
        return result

    async def close(self) -> None:
        await self.inner.close()


SINK: Server  # the test's sink (set by the ``smtp`` fixture): each tick connects anew


@pytest.fixture
def smtp() -> Iterator[Server]:
    global SINK
    with sinks() as started:
        SINK = started.start()
        yield SINK


@pytest.fixture
def svc(db_url: str, tmp_path: Path, smtp: Server) -> Iterator[Service]:
    service = Service(settings(db_url, tmp_path), FCPA, transport=smtp.transport())
    with begin_write(service.factory) as session:
        session.add_all(
            Person(
                kind=PersonKind.EMPLOYEE,
                external_id=f"E{2001 + n}",
                name=f"Employee {2001 + n:04}",
                email=f"e{2001 + n}@example.com",
                hire_date=HIRED,
                role=FcpaRole.EMPLOYEE if n % 2 else FcpaRole.OFFICER,
                is_director=False,
                is_executive_officer=False,
                created_at=BEFORE,
                updated_at=BEFORE,
            )
            for n in range(PEOPLE)
        )
    try:
        yield service
    finally:
        service.engine.dispose()


def run(service: Service, now: datetime, transport: Transport | None = None) -> None:
    """Plan and deliver at ``now``, as a tick of the daemon does (each tick on an event loop
    of its own, and so its own SMTP connections)."""

    async def tick() -> None:
        service.transport = transport or SINK.transport()
        await service.plan(now)
        try:
            await service.deliver(now)
        finally:
            await service.transport.close()

    asyncio.run(tick())


def escalation_rows(service: Service) -> list[OutboxMessage]:
    with service.factory() as session:
        return list(
            session.scalars(
                select(OutboxMessage)
                .where(
                    OutboxMessage.job == "fcpa_escalation",
                    OutboxMessage.occurrence == "2026-02-04",  # the onboarding cycle
                )
                .order_by(OutboxMessage.id)
            )
        )


def escalation_due(service: Service) -> datetime:
    """Plan at ``BEFORE`` and return the instant the 40 escalations are due (one for all)."""
    run(service, BEFORE)
    due = {row.due_at for row in escalation_rows(service)}
    assert len(due) == 1 and len(escalation_rows(service)) == PEOPLE
    return due.pop()


def acknowledge(service: Service, external_id: str, at: datetime) -> None:
    with begin_write(service.factory) as session:
        record(
            session,
            kind=FactKind.FCPA_ACK,
            program="fcpa",
            person=f"employee:{external_id}",
            at=at,
            actor="test",
            source=EventSource.API,
            payload={},
            programs={p.id: p for p in service.programs},
            now=at,
        )


def to_officer(smtp: Server) -> list[EmailMessage]:
    out = []
    for received in smtp.recorder.received:
        if received.rcpt_tos == [OFFICER]:
            message = email.message_from_bytes(received.content, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            out.append(message)
    return out


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def check_one_email_of_39(service: Service, smtp: Server) -> EmailMessage:
    """The officer got one email (by Message-ID) listing the 39, each row sent once, the bytes
    kept once; return it."""
    received = to_officer(smtp)
    assert len({m["Message-ID"] for m in received}) == 1, [m["Subject"] for m in received]
    message = received[0]
    text = text_of(message)
    assert message["Subject"] == "Escalation: 39 people have not acknowledged the FCPA policy"
    listed = re.findall(r"^- (Employee \d{4}) \((e\d{4}@example\.com), (\w+)\): (.*)$", text, re.M)
    assert [name for name, *_ in listed] == [f"Employee {n:04}" for n in range(2002, 2041)]
    for _, _, role, rest in listed:
        assert role in ("employee", "officer")
        # What they owe and how overdue, as a person reads it: the due day written out.
        assert rest == "acknowledgment due Wednesday 4 February 2026, 28 days overdue", rest
    assert not re.search(r"\d{4}-\d{2}-\d{2}", text)  # no ISO dates
    html = message.get_body(("html",))
    assert html is not None and str(html.get_content()).count("<li>") == 39

    rows = escalation_rows(service)
    states = Counter(row.state for row in rows)
    assert states == {OutboxState.SENT: 39, OutboxState.CANCELLED: 1}
    sent = [row for row in rows if row.state == OutboxState.SENT]
    with service.factory() as session:
        kept = list(
            session.scalars(
                select(SentMessage).where(SentMessage.outbox_id.in_([r.id for r in sent]))
            )
        )
        assert len(kept) == 39
        assert {k.message_id for k in kept} == {message["Message-ID"].strip("<>")}
        assert sum(1 for k in kept if k.body) == 1  # the bytes once
        # Every row's evidence is the email as sent, whichever row keeps the bytes.
        for row in sent:
            found = evidence.load(session, row.id)
            assert found is not None
            assert email.message_from_bytes(found.data)["Message-ID"] == message["Message-ID"]
    return message


def test_39_escalations_due_the_same_day_are_one_email(svc: Service, smtp: Server) -> None:
    due = escalation_due(svc)
    # E2001 acknowledges after planning wrote the escalations, before they go out.
    acknowledge(svc, "E2001", due - timedelta(hours=1))
    run(svc, due + timedelta(minutes=1))
    message = check_one_email_of_39(svc, smtp)
    assert "Employee 2001" not in text_of(message)
    cancelled = [r for r in escalation_rows(svc) if r.state == OutboxState.CANCELLED]
    assert [r.identity for r in cancelled] == [
        "fcpa/2026-02-04/cfo@example.com/escalation/employee:E2001"
    ]
    # The Message-ID is on the domain of the rows' own Message-IDs.
    domain = escalation_rows(svc)[0].message_id.rpartition("@")[2]
    assert message["Message-ID"].endswith(f"@{domain}>")
    # Nothing is sent again on the next tick.
    run(svc, due + timedelta(minutes=2))
    assert len(to_officer(smtp)) == 1


def test_a_group_claimed_by_a_worker_that_died_goes_out_once(svc: Service, smtp: Server) -> None:
    due = escalation_due(svc)
    acknowledge(svc, "E2001", due - timedelta(hours=1))
    run(svc, due - timedelta(minutes=1))  # what was due before goes out
    now = due + timedelta(minutes=1)
    asyncio.run(svc.plan(now))
    # A worker claims a batch of 5 (the last follow-ups and escalations, all due at the same
    # instant) and dies before sending: a claimed escalation brings its whole group along.
    lease = svc.options.lease
    with svc.factory.begin() as session:
        claimed = outbox.claim_due(
            session, now=now, owner="dead", lease=lease, limit=5, combine=COMBINED_JOBS
        )
    assert sum(m.notice.job == "fcpa_escalation" for m in claimed) == 39
    # Nothing goes out while its lease holds; then the next worker reaps and sends it, once.
    run(svc, now + timedelta(seconds=1))
    assert to_officer(smtp) == []
    run(svc, now + lease + timedelta(seconds=2))
    check_one_email_of_39(svc, smtp)
    assert len(to_officer(smtp)) == 1


def test_a_crash_after_the_server_accepted_repeats_one_message_id(
    svc: Service, smtp: Server
) -> None:
    due = escalation_due(svc)
    acknowledge(svc, "E2001", due - timedelta(hours=1))
    now = due + timedelta(minutes=1)
    dying = DiesAfterSending(smtp.transport(), OFFICER)
    with pytest.raises(Crash):
        run(svc, now, dying)
    claimed = [r for r in escalation_rows(svc) if r.state == OutboxState.CLAIMED]
    assert len(claimed) == 39  # sent, never recorded: the one window a crash can repeat
    run(svc, now + svc.options.lease + timedelta(seconds=2))
    message = check_one_email_of_39(svc, smtp)
    # The repeat is the same email under the same Message-ID, and the rows were sent once.
    assert [m["Message-ID"] for m in to_officer(smtp)] == [message["Message-ID"]] * 2


def test_a_group_larger_than_one_email_lists_goes_out_in_several(
    svc: Service, smtp: Server
) -> None:
    due = escalation_due(svc)
    svc.options = replace(svc.options, combine_max=10)
    run(svc, due + timedelta(minutes=1))
    received = to_officer(smtp)
    # 40 escalated, 10 to an email: four emails, each with its own Message-ID, none repeated.
    assert len(received) == 4 and len({m["Message-ID"] for m in received}) == 4
    listed = [line for m in received for line in text_of(m).splitlines() if line.startswith("- ")]
    assert len(listed) == len(set(listed)) == 40
    assert (
        sorted(m["Subject"] for m in received)
        == ["Escalation: 10 people have not acknowledged the FCPA policy"] * 4
    )
    assert Counter(row.state for row in escalation_rows(svc)) == {OutboxState.SENT: 40}


def tickler(service: Service, tmp_path: Path, *args: str) -> Result:
    """Run ``tickler messages ARGS`` on the service's database, as an operator would."""
    env = {
        "TICKLER_DATABASE_URL": service.settings.database_url,
        "TICKLER_MAILDIR": str(tmp_path / "maildir"),
    }
    return CliRunner().invoke(cli, ["messages", *args], env=env)


def stored(service: Service) -> tuple[list[tuple[int, str, datetime]], int]:
    """Return every outbox row's (id, state, updated_at) and the event log's length."""
    with service.factory() as session:
        rows = session.execute(
            select(OutboxMessage.id, OutboxMessage.state, OutboxMessage.updated_at).order_by(
                OutboxMessage.id
            )
        )
        logged = session.scalar(select(func.count()).select_from(EventLog))
        return [(i, str(s), u) for i, s, u in rows], int(logged or 0)


def test_messages_show_takes_the_combined_emails_message_id(
    svc: Service, smtp: Server, tmp_path: Path
) -> None:
    due = escalation_due(svc)
    acknowledge(svc, "E2001", due - timedelta(hours=1))
    run(svc, due + timedelta(minutes=1))
    mid = check_one_email_of_39(svc, smtp)["Message-ID"]
    [received] = [r.content for r in smtp.recorder.received if r.rcpt_tos == [OFFICER]]
    sent = [r.id for r in escalation_rows(svc) if r.state == OutboxState.SENT]
    before = stored(svc)

    for ref in (mid, mid.strip("<>"), f" {mid} "):
        shown = tickler(svc, tmp_path, "show", ref)
        assert shown.exit_code == 0, shown.output
        head, _, body = shown.stdout_bytes.partition(b"\n\n")
        text = head.decode()
        assert f"message-id:  {mid}" in text and "rows:        39 (one email)" in text
        assert re.findall(r"^ +(\d+) +sent +employee:E\d+ +fcpa_escalation ", text, re.M) == [
            str(i) for i in sent
        ]
        assert "server:      250 " in text
        assert body == received  # the email once, as the server took it
    raw = tickler(svc, tmp_path, "show", "--raw", mid)
    assert raw.exit_code == 0 and raw.stdout_bytes == received
    # A row of it, by id, names the email it went out in.
    one = tickler(svc, tmp_path, "show", str(sent[5]))
    assert one.exit_code == 0, one.output
    assert f"sent within: {mid} (one email of 39 rows: show it)" in one.stdout
    # E2001's escalation, withdrawn when E2001 acknowledged, is no message of it.
    [gone] = [r.id for r in escalation_rows(svc) if r.state == OutboxState.CANCELLED]
    withdrawn = tickler(svc, tmp_path, "show", str(gone))
    assert "withdrawn:   no longer needed: acknowledged on 2026-03-" in withdrawn.stdout
    assert "sent within" not in withdrawn.stdout

    refused = [
        ("<nobody@example.com>", "no message '<nobody@example.com>' (an id, an identity or"),
        ("' OR '1'='1", "no message \"' OR '1'='1\""),
        ("<>", "MESSAGE is empty: give an id, an identity or a Message-ID"),
        ("x" * 2000, "MESSAGE is 2000 characters long: an id, an identity or a Message-ID has"),
        (f"\x1b[2J{mid}", "has a control character at position 1"),
        (f"{mid}\r\nBcc: x@example.com", "has a control character at position"),
    ]
    for ref, error in refused:
        bad = tickler(svc, tmp_path, "show", ref)
        assert bad.exit_code == 2, (ref, bad.output)
        assert error in bad.stderr and bad.stdout == "", (ref, bad.stderr)
        assert "\x1b" not in bad.stderr and "\r" not in bad.stderr
    assert stored(svc) == before
