"""`tickler plan` and `tickler check` end to end: the seeds' calendar as a user sees it."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from scheduler.cli.main import _instant, cli

TICKLER = Path(sys.executable).parent / "tickler"


def plan(*args: str, now: str = "2026-11-22T00:00:00+00:00") -> list[dict[str, Any]]:
    result = CliRunner().invoke(cli, ["--now", now, "plan", "--format", "json", *args])
    assert result.exit_code == 0, result.output
    events: list[dict[str, Any]] = json.loads(result.output)
    return events


def one(events: list[dict[str, Any]], uid: str) -> dict[str, Any]:
    [event] = [e for e in events if e["uid"] == uid]
    return event


OFFER = "option-exchange-2003"


@pytest.mark.parametrize(
    ("uid", "start", "end", "all_day"),
    [
        (f"{OFFER}/offer-open@tickler", "2002-12-19", "2002-12-20", True),
        (
            f"{OFFER}/presentation/2002-12-19@tickler",
            "2002-12-19T15:30:00-08:00",
            "2002-12-19T16:30:00-08:00",
            False,
        ),
        (
            f"{OFFER}/presentation/2002-12-20@tickler",
            "2002-12-20T08:30:00-08:00",
            "2002-12-20T09:30:00-08:00",
            False,
        ),
        (
            f"{OFFER}/election-cutoff@tickler",
            "2003-01-20T21:00:00-08:00",
            "2003-01-20T21:00:00-08:00",
            False,
        ),
        (f"{OFFER}/promise-to-grant@tickler", "2003-01-21", "2003-01-22", True),
        (f"{OFFER}/exercise-price-date@tickler", "2003-07-18", "2003-07-19", True),
        (f"{OFFER}/grant-date@tickler", "2003-07-21", "2003-07-22", True),
        (f"{OFFER}/vesting/1@tickler", "2004-01-21", "2004-01-22", True),
        (f"{OFFER}/vesting/2@tickler", "2004-02-21", "2004-02-22", True),
        (f"{OFFER}/vesting/25@tickler", "2006-01-21", "2006-01-22", True),
        (f"{OFFER}/option-expiration@tickler", "2013-07-21", "2013-07-22", True),
        ("conflict-minerals-2016/form-sd-due@tickler", "2017-05-31", "2017-06-01", True),
        ("conflict-minerals-2026/form-sd-due@tickler", "2027-06-01", "2027-06-02", True),
        ("fcpa/ack-due/2027@tickler", "2027-03-31", "2027-04-01", True),
    ],
)
def test_seed_dates(uid: str, start: str, end: str, all_day: bool) -> None:
    event = one(plan(), uid)
    assert (event["start"], event["end"], event["all_day"]) == (start, end, all_day)
    assert event["timezone"] == "America/Los_Angeles"


def test_every_kind_and_field_is_there() -> None:
    events = plan()
    kinds = {e["kind"] for e in events}
    assert kinds >= {
        "form_sd_due",
        "cmrt_wave",
        "cmrt_response_due",
        "cmrt_follow_up",
        "milestone",
        "offer_open",
        "presentation",
        "election_cutoff",
        "promise_to_grant",
        "grant_date",
        "exercise_price_date",
        "vesting",
        "option_expiration",
        "fcpa_ack_due",
    }
    for event in events:
        assert {
            "uid",
            "program",
            "kind",
            "title",
            "start",
            "end",
            "all_day",
            "timezone",
            "details",
        } <= set(event)
    assert len({e["uid"] for e in events}) == len(events)


def test_example_grant_vesting_in_details() -> None:
    vesting = [e for e in plan("--program", OFFER) if e["kind"] == "vesting"]
    assert len(vesting) == 25
    assert vesting[0]["details"] == {"tranche": 1, "shares": 500, "cumulative": 500, "total": 1000}
    assert sum(e["details"]["shares"] for e in vesting) == 1000
    assert {e["details"]["shares"] for e in vesting[1:]} == {20, 21}  # 500 / 24 = 20.8 a month


def test_window_and_program_filters() -> None:
    events = plan(
        "--program", "conflict-minerals-2016", "--from", "2017-05-01", "--to", "2017-05-31"
    )
    assert {e["program"] for e in events} == {"conflict-minerals-2016"}
    assert all("2017-05-01" <= e["start"][:10] <= "2017-05-31" for e in events)
    assert [e["kind"] for e in events][-1] == "form_sd_due"


def test_csv_and_table() -> None:
    result = CliRunner().invoke(cli, ["plan", "--program", OFFER, "--format", "csv"])
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert rows[0]["uid"] == f"{OFFER}/offer-open@tickler"
    assert json.loads(rows[-1]["details"])  # details stay JSON in a cell
    table = CliRunner().invoke(cli, ["plan", "--program", OFFER, "--to", "2003-01-31"])
    assert table.exit_code == 0 and "2003-01-20 21:00 PST" in table.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["plan", "--program", "nope"], "unknown program nope"),
        (["plan", "--from", "2017-13-01"], "is not a date"),
        (["plan", "--from", "2018-01-01", "--to", "2017-01-01"], "is before --from"),
        (["plan", "--format", "xml"], "Invalid value for '--format'"),
        (["--now", "2026-01-01T00:00:00", "plan"], "needs a UTC offset"),
        (["--now", "2026-01-01T00:00:00Z@", "plan"], "'' after @ is not a Unix time"),
        (["--now", "2026-01-01T00:00:00Z@soon", "plan"], "'soon' after @ is not a Unix time"),
        (["--now", "2026-01-01T00:00:00Z@nan", "plan"], "'nan' after @ is not a Unix time"),
        (["--now", "2026-01-01T00:00:00Z@1.5@2", "plan"], "'1.5@2' after @ is not a Unix time"),
        (["plan", "--config", "/nonexistent"], "not a directory"),
    ],
)
def test_bad_arguments(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert message in result.output + (result.stderr if result.stderr_bytes else "")


def test_the_installed_command(tmp_path: Path) -> None:
    # The console script a user runs, with a program directory of their own.
    programs = tmp_path / "programs"
    programs.mkdir()
    shutil.copy(Path(__file__).parents[2] / "config" / "defaults" / "fcpa.toml", programs)
    version = subprocess.run([TICKLER, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("tickler, version ")
    out = subprocess.run(
        [TICKLER, "plan", "--config", str(programs), "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert {e["program"] for e in json.loads(out.stdout)} == {"fcpa"}
    (programs / "fcpa.toml").write_text("id = 'fcpa'\nkind = 'fcpa'\n")
    bad = subprocess.run(
        [TICKLER, "check", "--config", str(programs)], capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert "fcpa.toml: name: required field is missing" in bad.stderr


def test_now_at_a_unix_time_is_moved_on_by_the_real_time_since() -> None:
    # What tests give daemons started one after the other: one pretend clock for all.
    an_hour_ago = time.time() - 3600
    now = _instant(f"2026-01-01T00:00:00+00:00@{an_hour_ago!r}")
    assert timedelta(minutes=59) < now - datetime(2026, 1, 1, tzinfo=UTC) < timedelta(minutes=61)
