"""`tickler status` says something useful on a fresh database, in each program's zone."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from config.settings import Settings
from jobs.mail.transport import MaildirTransport
from scheduler.cli.main import cli
from scheduler.daemon.service import Service
from tests.integration.test_campaigns import NOW, PROGRAMS, load_demo

AT = ["--now", NOW.isoformat()]


def test_status_on_a_fresh_database(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKLER_DATABASE_URL", db_url)
    result = CliRunner().invoke(cli, [*AT, "status"])
    assert result.exit_code == 0, result.output
    assert "nothing planned yet" in result.stdout
    assert "next in the calendar: 2027-01-11 conflict-minerals-2026" in result.stdout
    data = json.loads(CliRunner().invoke(cli, [*AT, "status", "--format", "json"]).stdout)
    assert {e["program"] for e in data["next_events"]} >= {"conflict-minerals-2026", "fcpa"}


@pytest.mark.slow
def test_status_shows_next_sends_in_the_program_zone(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_demo(db_url)
    settings = Settings(database_url=db_url, maildir=tmp_path / "maildir")
    service = Service(
        settings, list(PROGRAMS.values()), transport=MaildirTransport(tmp_path / "maildir")
    )

    async def plan() -> None:
        await service.plan(NOW)
        await service.close()

    asyncio.run(plan())
    monkeypatch.setenv("TICKLER_DATABASE_URL", db_url)
    result = CliRunner().invoke(cli, [*AT, "status", "--format", "json"])
    upcoming = json.loads(result.stdout)["upcoming"]
    survey = next(r for r in upcoming if r["job"] == "cmrt_request")
    # 09:00 Pacific on 2027-01-11 is 17:00 UTC
    assert survey["due"].startswith("2027-01-11T17:00:00")
    assert survey["due_local"] == "2027-01-11 09:00 PST"
    text = CliRunner().invoke(cli, [*AT, "status"]).stdout
    assert "next: 2027-01-11 09:00 PST conflict-minerals-2026 cmrt_request" in text
    assert "nothing planned yet" not in text
