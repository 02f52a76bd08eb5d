"""``tickler record hire --data`` is checked by the API's own model (issue 10 finding 10):
what ``POST /api/v1/hires`` refuses, the command refuses too, and writes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from pydantic import ValidationError
from sqlalchemy import func, select

from jobs.storage.db import Person, make_engine, session_factory
from scheduler.cli.main import cli
from scheduler.web.api import Hire

NOW = datetime(2027, 1, 4, 17, tzinfo=UTC)
GOOD = {
    "kind": "employee",
    "external_id": "E9001",
    "name": "Eve Ng",
    "email": "eve.ng@example.com",
    "start_date": "2027-01-04",
    "country": "US",
}


@pytest.fixture(autouse=True)
def environment(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TICKLER_PROGRAM_DIR", "TICKLER_API_TOKENS", "TICKLER_API_SCOPES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TICKLER_DATABASE_URL", db_url)


def people(db_url: str) -> int:
    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as session:
            return session.scalar(select(func.count()).select_from(Person)) or 0
    finally:
        engine.dispose()


def record(data: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--now", NOW.isoformat(), "record", "hire", "--data", data])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": "\x1b[2JEve"}, "name"),  # before: only CR and LF were refused
        # The API's Line pattern refuses C0 controls and DEL, not C1 (NEL): the same here; the
        # terminal shows it as \x85 (scheduler.cli.terminal).
        ({"name": "Eve\u0085Ng"}, None),
        ({"external_id": "E" * 200}, "external_id"),
        ({"country": "usa"}, "country"),
        ({"role": "overlord"}, "role"),
        ({"salary": 1}, "salary"),  # unknown fields are refused, as by the API
        ({"start_date": 20270104}, "start_date"),  # strict: a date is an ISO string
        ({"email": "eve[/x]@example.com"}, "email"),
        ({"at": "2027-01-04T00:00:00+00:00"}, "at"),  # the time of a hire is --at
    ],
)
def test_hire_data_is_checked_as_the_api_checks_it(
    db_url: str, changes: dict[str, object], field: str | None
) -> None:
    body = json.dumps(GOOD | changes)
    try:
        Hire.model_validate_json(body)
        api_accepts = "at" not in changes
    except ValidationError:
        api_accepts = False
    before = people(db_url)
    code, output = record(body)
    assert (code == 0) == api_accepts, output
    if not api_accepts:
        assert code == 2
        assert f"error: --data: {field}: " in output
        assert "\x1b" not in output
        assert people(db_url) == before
    elif field is None:
        assert people(db_url) == before + 1


def test_a_good_hire_is_recorded_and_bad_json_is_refused(db_url: str) -> None:
    before = people(db_url)
    code, output = record(json.dumps(GOOD))
    assert code == 0, output
    assert output.startswith("recorded hire as event ")
    assert people(db_url) == before + 1
    assert record("{not json")[0] == 2
    assert record("[]")[0] == 2
    result = CliRunner().invoke(cli, ["--now", NOW.isoformat(), "record", "hire"])
    assert result.exit_code == 2 and "needs --data" in result.output
