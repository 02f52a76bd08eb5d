"""What the database and CSV files hold reaches the terminal inert (issue 10 findings 7, 10):
``tickler status`` with markup and escapes in a failed message, an import's hostile header."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from jobs.storage.db import OutboxMessage, OutboxState, make_engine, session_factory
from scheduler.cli.main import cli

NOW = datetime(2027, 1, 4, 17, tzinfo=UTC)
RAW = ("\x1b", "\x07", "\x9b")


@pytest.fixture(autouse=True)
def environment(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TICKLER_PROGRAM_DIR", "TICKLER_API_TOKENS", "TICKLER_API_SCOPES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TICKLER_DATABASE_URL", db_url)


def test_status_shows_markup_and_escapes_in_data_as_text(db_url: str) -> None:
    # An SMTP reply quotes what it refused; before, "[/x]" stopped `tickler status` with a
    # MarkupError and "[white on white]" hid the rest of the line.
    engine = make_engine(db_url)
    with session_factory(engine).begin() as session:
        session.add(
            OutboxMessage(
                identity="fcpa/2027/[/x]\x1b[2J@evil.example/request",
                message_id="status-escaping.1@tickler",
                program="fcpa",
                occurrence="2027",
                recipient="pat@example.com",
                job="fcpa_request",
                step="request",
                template="fcpa_request",
                context={},
                due_at=NOW,
                state=OutboxState.FAILED,
                attempts=1,
                next_attempt_at=NOW,
                last_code=550,
                last_error="5.1.1 <[/x]@evil> \x1b]0;pwned\x07 [white on white]hidden\x9b2J",
                created_at=NOW,
                updated_at=NOW,
            )
        )
    engine.dispose()
    result = CliRunner().invoke(cli, ["--now", NOW.isoformat(), "status"])
    assert result.exit_code == 0, result.output
    assert not any(char in result.output for char in RAW), repr(result.output)
    assert (
        "failed fcpa/2027/[/x]\\x1b[2J@evil.example/request: 550 5.1.1 <[/x]@evil> "
        "\\x1b]0;pwned\\x07 [white on white]hidden\\x9b2J"
    ) in " ".join(result.output.split())  # as one line: Rich wraps at the terminal's width
    for command in (["messages", "list"], ["messages", "show", "status-escaping.1@tickler"]):
        shown = CliRunner().invoke(cli, ["--now", NOW.isoformat(), *command])
        assert shown.exit_code == 0, shown.output
        assert not any(char in shown.output for char in RAW), repr(shown.output)
        if command[1] == "show":  # the identity and the server's reply, as text
            assert "\\x1b[2J@evil.example" in shown.output
            assert "\\x1b]0;pwned\\x07 [white on white]hidden" in shown.output


def test_an_import_error_shows_a_hostile_header_inert(tmp_path: Path) -> None:
    path = tmp_path / "suppliers.csv"
    path.write_text("external_id,name,email,tier,owner_email,\x1b]0;pwned\x07[/x]\n")
    result = CliRunner().invoke(cli, ["import", "suppliers", str(path)])
    assert result.exit_code == 2, result.output
    assert not any(char in result.output for char in RAW), repr(result.output)
    assert "\\x1b]0;pwned\\x07[/x]: unknown column" in result.output
