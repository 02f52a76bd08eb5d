"""Broken program files: each kind of mistake gives exit 2 and names the file, field and line."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from calendars.rehearsal import rehearse
from config.loader import default_program_dir, load_programs, locate
from scheduler.cli.main import cli

OFFER = "option-exchange-2003.toml"
CM = "conflict-minerals-2016.toml"


@pytest.fixture
def program_dir(tmp_path: Path) -> Path:
    target = tmp_path / "programs"
    shutil.copytree(default_program_dir(), target)
    return target


def edit(path: Path, old: str, new: str) -> int:
    """Replace ``old`` by ``new`` once; return the 1-based line where it was."""
    text = path.read_text()
    assert old in text, old
    line = text[: text.index(old)].count("\n") + 1
    path.write_text(text.replace(old, new, 1))
    return line


def check(program_dir: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["check", "--config", str(program_dir)])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


@pytest.mark.parametrize(
    ("file", "old", "new", "field", "message"),
    [
        (
            OFFER,
            "example_shares = 1000",
            "example_shares = 1000\ncolour = 'red'",
            "colour",
            "unknown field",
        ),
        (
            CM,
            "reporting_year = 2016",
            'reporting_year = "twenty"',
            "reporting_year",
            "valid integer",
        ),
        (
            OFFER,
            'timezone = "America/Los_Angeles"',
            'timezone = "Pacific/Nowhere"',
            "timezone",
            "unknown time zone 'Pacific/Nowhere'",
        ),
        (
            OFFER,
            "cutoff = 2003-01-20T21:00:00",
            "cutoff = 2002-12-01T21:00:00",
            "cutoff",
            "before the open date 2002-12-19",
        ),
        (
            OFFER,
            'portion = "1/48"',
            'portion = "1/50"',
            "vesting.steps",
            "vesting portions add up to 49/50, not 1",
        ),
        (
            OFFER,
            'portion = "1/48"',
            'portion = "half"',
            "vesting.steps[1].portion",
            "is not a fraction",
        ),
        (
            OFFER,
            "cutoff = 2003-01-20T21:00:00",
            "cutoff = 2003-01-20T21:00:00-08:00",
            "cutoff",
            "has a UTC offset",
        ),
        (
            OFFER,
            'cutoff_reminders = ["7d", "1d", "3h"]',
            'cutoff_reminders = ["7d", "soon"]',
            "cutoff_reminders",
            "'soon' is not an offset",
        ),
        (
            CM,
            "response_due = 2017-02-24",
            "response_due = 2017-01-20",
            "waves[1].response_due",
            "must be after send 2017-01-23",
        ),
        (
            OFFER,
            "end = 2002-12-20T09:30:00",
            "end = 2002-12-20T08:00:00",
            "presentations[1].end",
            "must be after start",
        ),
        (
            OFFER,
            'allocation = "CUMULATIVE_ROUNDING"',
            'allocation = "ROUND_ROBIN"',
            "vesting.allocation",
            "CUMULATIVE_ROUNDING",
        ),
        (
            CM,
            'kind = "conflict_minerals"',
            'kind = "conflict_mineral"',
            "kind",
            "kind must be one of",
        ),
        (CM, 'key = "wave-2"', 'key = "wave-1"', "waves", "wave key 'wave-1' appears twice"),
        (
            OFFER,
            'day_of_month = "VESTING_START_DAY_OR_LAST_DAY_OF_MONTH"',
            'day_of_month = "29"',
            "vesting.day_of_month",
            "use '01'..'28'",
        ),
        # Found by the fuzz test (tests/unit/test_input_fuzz.py): a TypeError, and a window
        # the offer's rules refused only when planning.
        (CM, 'kind = "conflict_minerals"', "kind = []", "kind", "kind must be one of"),
        (
            OFFER,
            "lookback_end = 2002-12-19",
            "lookback_end = 2002-01-01",
            "eligibility.lookback_end",
            "lookback_end 2002-01-01 is before lookback_start 2002-06-19",
        ),
        (
            OFFER,
            "lookback_end = 2002-12-19",
            "",
            "eligibility.lookback_end",
            "give both lookback_start and lookback_end, or neither",
        ),
        # Hostile values (issue 10): each was accepted, then overflowed or hung the rules.
        (
            OFFER,
            'cutoff_reminders = ["7d", "1d", "3h"]',
            'cutoff_reminders = ["99999999999d"]',
            "cutoff_reminders",
            "offset '99999999999d' is longer than 3660 days",
        ),
        (
            OFFER,
            'cutoff_reminders = ["7d", "1d", "3h"]',
            'cutoff_reminders = ["P9999999D"]',
            "cutoff_reminders",
            "longer than 3660 days",
        ),
        (
            "fcpa.toml",
            'reminders_before = ["14d", "3d"]',
            'reminders_before = ["9' + "9" * 5000 + 'd"]',
            "reminders_before",
            "longer than 3660 days",
        ),
        (
            OFFER,
            "cutoff = 2003-01-20T21:00:00",
            "cutoff = 9999-12-31T21:00:00",
            "cutoff",
            "9999-12-31T21:00:00 is not between 1900-01-01 and 2200-12-31",
        ),
        (
            "fcpa.toml",
            "effective = 2017-01-01",
            "effective = 9999-12-31",
            "effective",
            "9999-12-31 is not between 1900-01-01 and 2200-12-31; 9999-12-31 stands for",
        ),
        (CM, "send = 2017-01-09", "send = 0001-01-01", "waves[0].send", "is not between"),
        (
            OFFER,
            "hired_before = 2002-12-19",
            "hired_before = 9999-12-31",
            "eligibility.hired_before",
            "is not between",
        ),
        (
            CM,
            "extra_closures = []",
            "extra_closures = [9999-12-31]",
            "extra_closures[0]",
            "is not between",
        ),
        (
            CM,
            "offset_days = -60",
            "offset_days = -6000000000",
            "milestones[0].offset_days",
            "greater than or equal to -3660",
        ),
        (
            CM,
            "offset_business_days = -10",
            "offset_business_days = -100000000",
            "milestones[2].offset_business_days",
            "greater than or equal to -2600",
        ),
    ],
)
def test_broken_file(
    program_dir: Path, file: str, old: str, new: str, field: str, message: str
) -> None:
    path = program_dir / file
    before = {p.name: p.read_bytes() for p in program_dir.iterdir()}
    edit(path, old, new)
    code, output = check(program_dir)
    assert code == 2, output
    assert f"{path}:" in output
    assert f" {field}:" in output
    assert message in output
    # the line named is the line of the field (or its table) in the file
    line = int(output.split(f"{path}:")[1].split(":")[0])
    assert line > 0
    assert path.read_text().splitlines()[line - 1].strip()
    # checking changes nothing on disk
    assert {p.name for p in program_dir.iterdir()} == set(before)


@pytest.mark.parametrize(
    "value",
    ["[" * 100_000 + "]" * 100_000, "{a = " * 5000 + "1" + "}" * 5000, "[" * 40 + "]" * 40],
    ids=["arrays", "inline tables", "just too deep"],
)
def test_deep_nesting_is_refused_with_its_line(program_dir: Path, value: str) -> None:
    path = program_dir / "fcpa.toml"
    version = 'policy_version = "2017-1"'
    line = edit(path, version, f"{version}\nroles = {value}") + 1
    code, output = check(program_dir)
    assert code == 2, output
    assert f"{path}:{line}: arrays or inline tables nested more than 32 deep" in output
    assert "Traceback" not in output


def test_brackets_in_strings_and_comments_are_not_nesting(program_dir: Path) -> None:
    path = program_dir / "fcpa.toml"
    edit(path, 'name = "FCPA policy acknowledgments"', 'name = "FCPA [' + "[" * 50 + '"')
    edit(path, "[renewal]", "# " + "{" * 50 + "\n[renewal]")
    code, output = check(program_dir)
    assert code == 0, output


def test_no_follow_ups_at_all_is_a_program_the_rules_plan(program_dir: Path) -> None:
    # max = 0 (escalate at once) made the planners raise (found by the fuzz test).
    edit(program_dir / CM, "max = 3", "max = 0")
    edit(program_dir / "fcpa.toml", "max = 4", "max = 0")
    code, output = check(program_dir)
    assert code == 0, output


def test_line_of_an_unknown_field(program_dir: Path) -> None:
    path = program_dir / OFFER
    line = edit(path, "[exchange]\n", "[exchange]\nratoi = 0.75\n") + 1
    code, output = check(program_dir)
    assert code == 2
    assert f"{path}:{line}: exchange.ratoi: unknown field" in output


def test_not_toml(program_dir: Path) -> None:
    path = program_dir / CM
    line = edit(path, "max = 3", "max = = 3")
    code, output = check(program_dir)
    assert code == 2
    assert f"{path}:{line}: not valid TOML" in output


def test_missing_required_field(program_dir: Path) -> None:
    path = program_dir / "fcpa.toml"
    edit(path, 'policy_version = "2017-1"\n', "")
    code, output = check(program_dir)
    assert code == 2
    assert "policy_version: required field is missing" in output


def test_every_error_is_reported(program_dir: Path) -> None:
    edit(program_dir / OFFER, 'timezone = "America/Los_Angeles"', 'timezone = "Mars/Base"')
    edit(program_dir / CM, "interval_days = 7", "interval_days = 0")
    code, output = check(program_dir)
    assert code == 2
    assert "Mars/Base" in output
    assert "follow_up.interval_days" in output


def test_duplicate_program_ids(program_dir: Path) -> None:
    shutil.copy(program_dir / CM, program_dir / "copy.toml")
    code, output = check(program_dir)
    assert code == 2
    assert "program id 'conflict-minerals-2016' is also used by" in output


def test_empty_and_missing_directories(tmp_path: Path) -> None:
    code, output = check(tmp_path)
    assert code == 2 and "no *.toml files" in output
    code, output = check(tmp_path / "nope")
    assert code == 2 and "not a directory" in output


def test_shipped_programs_are_valid() -> None:
    code, output = check(default_program_dir())
    assert code == 0, output
    assert output.count("ok  ") == 4


@pytest.mark.parametrize(
    ("loc", "line"),
    [
        (("id",), 1),
        (("waves", 0, "send"), 4),
        (("waves", 1, "send"), 7),
        (("waves", 1), 6),
        (("vesting", "steps", 1, "portion"), 14),
        (("vesting", "nope"), 10),
        (("missing",), None),
    ],
)
def test_locate(loc: tuple[object, ...], line: int | None) -> None:
    text = "\n".join(
        [
            'id = "x"',  # 1
            "",
            "[[waves]]",  # 3
            "send = 2017-01-09",  # 4
            "# a comment",
            "[[waves]]",  # 6
            "send = 2017-01-23",  # 7
            "[vesting]",  # 8
            "",
            "allocation = 'X'",  # 10
            "[[vesting.steps]]",  # 11
            "portion = '1/2'",  # 12
            "[[vesting.steps]]",  # 13
            "portion = '1/48'",  # 14
        ]
    )
    assert locate(text, loc) == (line if loc != ("vesting", "nope") else 8)


def test_rehearsal_takes_every_path_and_surfaces_what_overflows() -> None:
    now = datetime(2026, 1, 5, tzinfo=UTC)
    for program in load_programs(None):
        rehearse(program, now=now)
    # A date that got past the model (built without it) is what the rehearsal is there for.
    [fcpa] = [p for p in load_programs(None) if p.kind == "fcpa"]
    with pytest.raises(OverflowError):
        rehearse(fcpa.model_copy(update={"effective": date(9999, 12, 31)}), now=now)
