"""Hostile input fuzzed (issue 10): CSV files and program files get clear errors, nothing else.

Arbitrary bytes, arbitrary text, and valid files with one value replaced by something hostile
(a 9999-12-31, a huge number, an offset past the timedelta range, deep nesting, control
characters) or with bytes inserted and cut. The parse paths of ``jobs.imports`` may only raise
``ImportErrors``, ``config.loader`` only ``ProgramFileErrors``: never a traceback. What they
accept is safe to plan: every date of an accepted row is in the plausible range, and an
accepted program file expands and plans for stand-in people without raising.

Bounded and derandomized: a few hundred examples in seconds, the same ones on every run, so a
failure reproduces.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from calendars.rehearsal import rehearse
from config.dates import EARLIEST, LATEST
from config.loader import ProgramFileErrors, default_program_dir, load_program_file
from jobs.imports import (
    PERSON_ROWS,
    GrantRow,
    ImportErrors,
    Row,
    ScenarioRow,
    columns,
    demo_dir,
    parse_rows,
    read_table,
)

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
NOW = datetime(2026, 1, 5, 17, 0, tzinfo=UTC)

MODELS: dict[str, type[Row]] = {"grants": GrantRow, "scenario": ScenarioRow}
for _kind, _model in PERSON_ROWS.items():
    MODELS[_kind] = _model
DEMO_CSV = {
    "suppliers": "suppliers.csv",
    "employees": "employees.csv",
    "third-parties": "third_parties.csv",
    "grants": "grants.csv",
    "scenario": "scenario.csv",
}
PROGRAM_FILES = sorted(default_program_dir().glob("*.toml"))

# Values that broke, or could break, something downstream of a parser.
HOSTILE = [
    "9999-12-31",
    "0001-01-01",
    "2200-12-31",
    "2201-01-01",
    "1899-12-31",
    "99999-01-01",
    "2024-02-30",
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00+14:00",
    "99999999999999999999",
    "-1",
    "1e309",
    "NaN",
    "\x00",
    "\r\n",
    '"',
    "=cmd|' /C calc'!A0",
    "a" * 5000,
    "[/x]",
    "employee:E1001",
    '{"complete": false}',
    "{" * 200,
]


def _csv_cell() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(HOSTILE), st.text(max_size=40))


def _mutate(data: bytes, cuts: list[tuple[int, int, bytes]]) -> bytes:
    """Replace ``data[i:i+n]`` by ``b`` for each (i, n, b), positions taken modulo the length."""
    for start, length, insert in cuts:
        start %= len(data) + 1
        data = data[:start] + insert + data[start + length :]
    return data


CUTS = st.lists(
    st.tuples(st.integers(0, 10_000), st.integers(0, 8), st.binary(max_size=8)), max_size=4
)


def parse_csv(kind: str, data: bytes) -> None:
    """Run the parse path of an import (everything before the database) on ``data``."""
    model = MODELS[kind]
    try:
        rows, _errors = parse_rows(read_table(data, columns(model)), model)
    except ImportErrors:
        event("refused")
        return
    event(f"{len(rows)} rows accepted" if rows else "no row accepted")
    for _line, row in rows:
        for value in row.model_dump().values():
            if isinstance(value, datetime):
                assert EARLIEST <= value.date() <= LATEST, value
            elif isinstance(value, date):
                assert EARLIEST <= value <= LATEST, value


@FUZZ
@given(kind=st.sampled_from(sorted(MODELS)), data=st.binary(max_size=3000))
def test_csv_bytes(kind: str, data: bytes) -> None:
    parse_csv(kind, data)


@FUZZ
@given(
    kind=st.sampled_from(sorted(MODELS)),
    rows=st.lists(st.lists(_csv_cell(), min_size=1, max_size=12), max_size=6),
)
def test_csv_rows_of_hostile_cells_under_the_right_header(kind: str, rows: list[list[str]]) -> None:
    header = ",".join(columns(MODELS[kind]))
    body = "".join(",".join(_quote(cell) for cell in row) + "\n" for row in rows)
    parse_csv(kind, (header + "\n" + body).encode("utf-8", "surrogatepass"))


@FUZZ
@given(
    kind=st.sampled_from(sorted(MODELS)),
    line=st.integers(1, 6),
    column=st.integers(0, 11),
    value=_csv_cell(),
    cuts=CUTS,
)
def test_csv_demo_files_with_a_cell_replaced_and_bytes_cut(
    kind: str, line: int, column: int, value: str, cuts: list[tuple[int, int, bytes]]
) -> None:
    lines = (demo_dir() / DEMO_CSV[kind]).read_text(encoding="utf-8").splitlines()[:7]
    cells = lines[line % len(lines)].split(",")
    cells[column % len(cells)] = _quote(value)
    lines[line % len(lines)] = ",".join(cells)
    data = ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")
    parse_csv(kind, _mutate(data, cuts))


def _quote(cell: str) -> str:
    return '"' + cell.replace('"', '""') + '"' if any(c in cell for c in ',"\r\n') else cell


# Program files ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="tickler-fuzz-") as name:
        yield Path(name)


def load(workdir: Path, data: bytes) -> None:
    """Load ``data`` as a program file: a clear error, or a program the rules can plan."""
    path = workdir / "program.toml"
    path.write_bytes(data)
    try:
        program = load_program_file(path)
    except ProgramFileErrors as exc:
        assert exc.errors and all(str(e).startswith(str(path)) for e in exc.errors)
        event("refused")
        return
    event("accepted, then rehearsed")
    rehearse(program, now=NOW)


def _toml_value() -> st.SearchStrategy[str]:
    scalars = st.one_of(
        st.integers().map(str),
        st.integers(0, 10**30).map(lambda n: f'"{n}d"'),
        st.sampled_from(["d", "w", "h", "m", "D", "W", "H", "M"]).flatmap(
            lambda unit: st.integers(0, 10**12).map(
                lambda n: f'"P{n}{unit}"' if unit.isupper() else f'"{n}{unit}"'
            )
        ),
        st.dates().map(date.isoformat),
        st.datetimes().map(lambda d: d.isoformat(timespec="seconds")),
        st.sampled_from(["9999-12-31", "0001-01-01", "2200-12-31", "9999-12-31T23:59:59"]),
        st.text(max_size=20).map(lambda s: '"' + s.replace("\\", "").replace('"', "") + '"'),
        st.sampled_from(["true", "nan", "inf", "-0", "1e400", '"1/0"', '"0/1"', '"-1/2"']),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
            st.integers(1, 300).map(lambda n: "[" * n + "1" + "]" * n),
        ),
        max_leaves=6,
    )


@FUZZ
@given(data=st.binary(max_size=3000))
def test_program_file_bytes(workdir: Path, data: bytes) -> None:
    load(workdir, data)


@FUZZ
@given(file=st.sampled_from(PROGRAM_FILES), line=st.integers(0, 200), value=_toml_value())
def test_program_files_with_a_value_replaced(
    workdir: Path, file: Path, line: int, value: str
) -> None:
    lines = file.read_text(encoding="utf-8").splitlines()
    assignments = [i for i, text in enumerate(lines) if "=" in text and not text.startswith("#")]
    target = assignments[line % len(assignments)]
    key = lines[target].split("=", 1)[0]
    lines[target] = f"{key}= {value}"
    load(workdir, ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass"))


@FUZZ
@given(file=st.sampled_from(PROGRAM_FILES), cuts=CUTS)
def test_program_files_with_bytes_cut_and_inserted(
    workdir: Path, file: Path, cuts: list[tuple[int, int, bytes]]
) -> None:
    load(workdir, _mutate(file.read_bytes(), cuts))


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")
_INT = re.compile(r"^-?\d+$")
_OFFSETS = re.compile(r'^\[\s*"\d+[dwhm]"(\s*,\s*"\d+[dwhm]")*\s*\]$')


def _typed(value: str) -> bool:
    return any(p.match(value) for p in (_DATE, _DATETIME, _INT, _OFFSETS))


def _like(value: str) -> st.SearchStrategy[str]:
    """Return values of the same TOML type as ``value``: what still passes the parser, so the
    model's own checks (and then the rules) are what gets tried. Mostly near the edges of the
    plausible range, where sums of dates and offsets could overflow."""
    edge = st.dates(date(1890, 1, 1), date(2210, 12, 31))
    if _DATE.match(value):
        return st.one_of(edge, edge, st.dates()).map(date.isoformat)
    if _DATETIME.match(value):
        times = st.one_of(edge, edge, st.dates()).map(
            lambda d: datetime.combine(d, datetime.min.time())
        )
        return times.map(lambda d: d.isoformat(timespec="seconds"))
    if _INT.match(value):
        return st.one_of(st.integers(-400, 400), st.integers(-5000, 5000), st.integers()).map(str)
    if _OFFSETS.match(value):
        offset = st.tuples(
            st.one_of(st.integers(0, 10_000), st.integers(0, 10**9)), st.sampled_from("dwhm")
        ).map(lambda t: f'"{t[0]}{t[1]}"')
        return st.lists(offset, min_size=1, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]")
    return st.just(value)


@FUZZ
@given(file=st.sampled_from(PROGRAM_FILES), data=st.data())
def test_program_files_with_values_of_the_same_type(
    workdir: Path, file: Path, data: st.DataObject
) -> None:
    lines = file.read_text(encoding="utf-8").splitlines()
    typed = {}
    for i, text in enumerate(lines):
        key, sep, rest = text.partition("=")
        value = rest.split("#", 1)[0].strip()
        if sep and not text.lstrip().startswith("#") and _typed(value):
            typed[i] = (key, value)
    for i in data.draw(st.lists(st.sampled_from(sorted(typed)), min_size=1, max_size=2)):
        key, value = typed[i]
        lines[i] = f"{key}= {data.draw(_like(value))}"
    load(workdir, ("\n".join(lines) + "\n").encode())
