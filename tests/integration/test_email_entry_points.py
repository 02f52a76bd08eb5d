"""Every way an address comes in refuses the same bad one, says why the same way, and says where.

Program files, settings, CSV imports, ``tickler record`` and the JSON API all check addresses
with ``config.emails.parse_email``; each names its own place (file, line and field; the
variable; row and column; the payload field; the body field) around the same reason.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from config.emails import parse_email
from config.loader import ProgramFileErrors, default_program_dir, load_programs
from jobs.imports import ImportErrors, import_csv
from jobs.storage.db import EventLog, Person
from scheduler.cli.main import cli
from scheduler.web.http import create_app
from tests.world import HR_TOKEN, OPEN_WEEK, FakeClock, seeded, service

BAD = "Ada Byrne <ada.byrne@example.com>"
WHY = f"{BAD!r} is not an email address: it contains a space at position 4"
HIRE = {
    "kind": "employee",
    "external_id": "E2001",
    "name": "Ada Byrne",
    "email": "ada.byrne@example.com",
    "start_date": "2003-01-13",
}


def people(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        return [
            tuple(r)
            for table in (Person, EventLog)
            for r in connection.execute(select(table.__table__))
        ]


def test_the_reason_is_the_rules() -> None:
    with pytest.raises(ValueError, match="give the bare address only") as caught:
        parse_email(BAD)
    assert str(caught.value).startswith(WHY)


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> None:
    """Run the CLI on the test's database, without the caller's variables or ``.env``."""
    for name in list(os.environ):
        if name.upper().startswith("TICKLER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TICKLER_DATABASE_URL", db_url)
    monkeypatch.setenv("TICKLER_MAILDIR", str(tmp_path / "maildir"))


def test_a_program_file_names_file_line_and_field(tmp_path: Path) -> None:
    directory = tmp_path / "programs"
    shutil.copytree(default_program_dir(), directory)
    path = directory / "fcpa.toml"
    text = path.read_text()
    anchor = 'policy_version = "2017-1"\n'
    line = text[: text.index(anchor)].count("\n") + 2
    path.write_text(text.replace(anchor, f'{anchor}compliance_officer = "{BAD}"\n'))
    with pytest.raises(ProgramFileErrors) as caught:
        load_programs(directory)
    assert f"{path}:{line}: compliance_officer: {WHY}" in str(caught.value)


@pytest.mark.usefixtures("environment")
@pytest.mark.parametrize("name", ["COMPLIANCE_EMAIL", "COMPLIANCE_OFFICER_EMAIL"])
def test_a_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(f"TICKLER_{name}", BAD)
    result = CliRunner().invoke(cli, ["check"])
    assert result.exit_code == 2
    assert f"setting TICKLER_{name}: " in result.stderr
    assert WHY in result.stderr


@pytest.mark.parametrize("column", ["email", "owner_email"])
def test_an_import_names_row_and_column(
    session: Session, engine: Engine, tmp_path: Path, column: str
) -> None:
    good = "S001,Foxhollow Ltd.,cmrt@foxhollow.example,direct,\n"
    bad = (
        f'S002,Nakamura,"{BAD}",direct,\n'
        if column == "email"
        else f'S002,Nakamura,q@nakamura.example,direct,"{BAD}"\n'
    )
    path = tmp_path / "suppliers.csv"
    path.write_text("external_id,name,email,tier,owner_email\n" + good + bad, encoding="utf-8")
    with pytest.raises(ImportErrors) as caught:
        import_csv(session, "suppliers", path, now=OPEN_WEEK, actor="test")
    assert [(e.row, e.column) for e in caught.value.errors] == [(3, column)]
    assert caught.value.errors[0].message.startswith(WHY)
    assert people(engine) == []


@pytest.mark.usefixtures("environment")
@pytest.mark.parametrize("field", ["email", "manager_email"])
def test_tickler_record_names_the_payload_field(engine: Engine, field: str) -> None:
    before = people(engine)
    data = json.dumps(HIRE | {field: BAD})
    result = CliRunner().invoke(
        cli, ["--now", "2003-01-14T12:00:00+00:00", "record", "hire", "--data", data]
    )
    assert result.exit_code != 0
    assert f"--data: {field}: {WHY}" in result.stderr  # checked by the API's Hire model
    assert people(engine) == before


@pytest.mark.parametrize("field", ["email", "manager_email"])
async def test_the_api_names_the_body_field(db_url: str, tmp_path: Path, field: str) -> None:
    svc = seeded(service(db_url, tmp_path))
    app = create_app(svc, clock=FakeClock(datetime(2003, 1, 14, 12, tzinfo=UTC)))
    before = people(svc.engine)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tickler") as client:
            response = await client.post(
                "/api/v1/hires",
                json=HIRE | {field: BAD},
                headers={"Authorization": f"Bearer {HR_TOKEN.partition(':')[2]}"},
            )
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert body["detail"].startswith(f"{field}: {WHY}")
        assert [e["field"] for e in body["errors"]] == [field]
        assert people(svc.engine) == before
    finally:
        svc.engine.dispose()
