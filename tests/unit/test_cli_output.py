"""Untrusted text in the CLI's output is shown, never obeyed (issue 10 findings 7 and 10):
no terminal escape sequence, no Rich markup, no spreadsheet formula from data."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from scheduler.cli.main import cli
from scheduler.cli.terminal import csv_cell, shown, shown_lines

REPO = Path(__file__).resolve().parents[2]
NAME = "CM \x1b]0;pwned\x07[/x] \x9b2J \u202eevil"
TITLE = '=HYPERLINK("http://evil") \x1b[2J[red]x[/red] [/x]'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain text, [brackets] and üñíçødé", "plain text, [brackets] and üñíçødé"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("title\x1b]0;pwned\x07", "title\\x1b]0;pwned\\x07"),
        ("csi \x9b2J, nel \x85", "csi \\x9b2J, nel \\x85"),
        ("over\rwrite\bx", "over\\x0dwrite\\x08x"),
        ("two\nlines\ttab", "two\\x0alines\\x09tab"),
        ("\u202eoverride \u2066isolate\u2069", "\\u202eoverride \\u2066isolate\\u2069"),
    ],
)
def test_shown(value: str, expected: str) -> None:
    assert shown(value) == expected


def test_shown_lines_keeps_line_breaks_and_tabs() -> None:
    assert (
        shown_lines("Dear Pat,\n\tsee \x1b[8mhidden\r\n")
        == "Dear Pat,\n\tsee \\x1b[8mhidden\\x0d\n"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("a=1", "a=1"),
        ("", ""),
        (True, True),
    ],
)
def test_csv_cell(value: object, expected: object) -> None:
    assert csv_cell(value) == expected


@pytest.fixture
def hostile_programs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A program whose name and a milestone's title carry escapes, markup and a formula."""
    directory = tmp_path / "programs"
    directory.mkdir()
    path = directory / "conflict-minerals-2026.toml"
    shutil.copy(REPO / "config" / "defaults" / "conflict-minerals-2026.toml", path)
    text = path.read_text(encoding="utf-8")
    for old, new in (
        ("Conflict minerals RY2026 (Form SD)", NAME),
        ("Close the CMRT survey; freeze response statistics", TITLE),
    ):
        assert old in text
        escaped = new.encode("unicode_escape").decode().replace('"', '\\"')
        text = text.replace(old, escaped.replace("\\x", "\\u00"), 1)
    path.write_text(text, encoding="utf-8")
    for name in ("TICKLER_PROGRAM_DIR", "TICKLER_API_TOKENS", "TICKLER_API_SCOPES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TICKLER_PROGRAM_DIR", str(directory))
    return directory


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def assert_inert(output: str) -> None:
    assert not any(char in output for char in "\x1b\x07\x9b\u202e"), repr(output)


def test_check_shows_a_hostile_program_name_inert(hostile_programs: Path) -> None:
    output = run("check")
    assert_inert(output)
    assert "CM \\x1b]0;pwned\\x07[/x] \\x9b2J \\u202eevil" in output


def test_plan_table_shows_markup_as_text(hostile_programs: Path) -> None:
    output = run("--now", "2026-12-01T00:00:00+00:00", "plan", "--to", "2027-12-31")
    assert_inert(output)
    # Rich would have stopped at "[/x]" (MarkupError) or coloured "[red]x[/red]".
    assert "[red]x[/red]" in output and "[/x]" in output


def test_plan_csv_cells_are_no_formulas(hostile_programs: Path) -> None:
    output = run("--now", "2026-12-01T00:00:00+00:00", "plan", "--format", "csv")
    assert_inert(output)
    rows = {row["uid"]: row for row in csv.DictReader(io.StringIO(output))}
    title = rows["conflict-minerals-2026/milestone/survey-close@tickler"]["title"]
    assert title == "'" + shown(TITLE)
    assert all(
        not v.startswith(("=", "+", "-", "@")) for row in rows.values() for v in row.values()
    )
