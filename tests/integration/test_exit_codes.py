"""Exit statuses: 0 done, 1 refused at run time (valid input), 2 usage or invalid input."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from scheduler.cli.main import cli
from tests.integration.test_campaigns import NOW, load_demo

AT = ["--now", NOW.isoformat()]
ELECTION = ["record", "election", "--program", "option-exchange-2003"]


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        # The offer closed in 2003: a valid election that the state refuses.
        ([*ELECTION, "--person", "employee:E1001"], 1, "cutoff was 2003-01-20 21:00 PST"),
        # Invalid input: a person who does not exist, a malformed one, an unknown option.
        ([*ELECTION, "--person", "employee:E9999"], 2, "E9999"),
        ([*ELECTION, "--person", "nobody"], 2, "nobody"),
        (["status", "--colour"], 2, "--colour"),
        (["status"], 0, ""),
    ],
)
def test_exit_statuses(
    db_url: str, monkeypatch: pytest.MonkeyPatch, args: list[str], code: int, says: str
) -> None:
    load_demo(db_url)
    monkeypatch.setenv("TICKLER_DATABASE_URL", db_url)
    result = CliRunner().invoke(cli, [*AT, *args])
    assert result.exit_code == code, result.output
    assert says in result.output
