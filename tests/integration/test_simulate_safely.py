"""`tickler simulate` next to a running daemon: the live database is read, never written."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from config.settings import Settings
from jobs.mail.transport import MaildirTransport
from jobs.storage.db import EventLog, OutboxMessage, Person, make_engine, session_factory
from scheduler.cli.main import cli
from scheduler.daemon.service import Service
from tests.integration.test_campaigns import NOW, PROGRAMS, load_demo

pytestmark = pytest.mark.slow


def live_state(url: str) -> tuple[list[Any], int, int]:
    """Return every outbox row as it stands, and how many people and facts there are."""
    engine = make_engine(url)
    with session_factory(engine)() as session:
        outbox = [tuple(row) for row in session.execute(select(OutboxMessage.__table__)).all()]
        people = session.scalar(select(func.count()).select_from(Person)) or 0
        facts = session.scalar(select(func.count()).select_from(EventLog)) or 0
    engine.dispose()
    return sorted(outbox), people, facts


@pytest.fixture
def daemon(db_url: str, tmp_path: Path) -> Any:
    """A live database with a planned outbox and a daemon's hold on it (SQLite's lock)."""
    load_demo(db_url)
    settings = Settings(database_url=db_url, maildir=tmp_path / "live-maildir")
    service = Service(
        settings, list(PROGRAMS.values()), transport=MaildirTransport(tmp_path / "live-maildir")
    )
    service.claim_single_replica()
    asyncio.run(service.plan(NOW))
    yield service
    asyncio.run(service.close())


def test_simulate_next_to_a_daemon_changes_nothing_live(
    daemon: Service, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TICKLER_DATABASE_URL", db_url)
    monkeypatch.setenv("TICKLER_MAILDIR", str(tmp_path / "live-maildir"))
    before = live_state(db_url)
    assert any(row for row in before[0])  # pending renewals and digests to protect
    result = CliRunner().invoke(cli, ["simulate", "--from", "2002-12-01", "--to", "2003-02-01"])
    assert result.exit_code == 0, result.output
    assert live_state(db_url) == before
    assert "scratch database: " in result.stdout
    assert f"of {before[1]} people" in result.stdout and f"{before[2]} facts" in result.stdout
    emails = Path(result.stdout.split("emails: ", 1)[1].splitlines()[0])
    sent = list((emails / "new").iterdir())
    assert sent and not (tmp_path / "live-maildir").exists()
    assert "offer_announcement" in result.stdout and "total" in result.stdout
    shutil.rmtree(emails.parent)


def test_simulate_refuses_the_live_database(
    daemon: Service, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TICKLER_DATABASE_URL", db_url)
    before = live_state(db_url)
    args = ["simulate", "--from", "2002-12-01", "--to", "2003-02-01", "--database", db_url]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert "--database is the live database" in result.stderr
    assert live_state(db_url) == before


def test_simulate_refuses_a_file_a_daemon_holds(
    daemon: Service, db_url: str, backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite's daemon lock; a PostgreSQL daemon is refused as the live database")
    monkeypatch.setenv("TICKLER_DATABASE_URL", f"sqlite:///{tmp_path / 'elsewhere.sqlite'}")
    before = live_state(db_url)
    args = ["simulate", "--from", "2002-12-01", "--to", "2003-02-01", "--database", db_url]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert "a tickler daemon holds" in result.stderr
    assert live_state(db_url) == before
