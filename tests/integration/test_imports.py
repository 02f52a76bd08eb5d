"""CSV imports and the demo data set, on every backend: all or nothing, idempotent, audited."""

from __future__ import annotations

import csv
import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session

from config.loader import load_programs
from jobs.imports import (
    DEMO_FILES,
    DEMO_SCENARIO,
    ImportErrors,
    Kind,
    RowError,
    demo_dir,
    import_all,
    import_csv,
    load_scenario,
)
from jobs.storage.db import EventLog, EventSource, OptionGrant, Person, PersonKind, SupplierTier
from scheduler.cli.imports import import_command
from scheduler.cli.main import cli

T0 = datetime(2026, 1, 5, 17, 0, tzinfo=UTC)
T1 = T0 + timedelta(days=1)
ACTOR = "test:importer"
RESERVED = re.compile(r"@(?:[a-z0-9-]+\.)*(?:example\.(?:com|org|net)|[a-z0-9-]+\.example)$")

SUPPLIERS = "external_id,name,email,tier,owner_email\n"
EMPLOYEES = (
    "external_id,name,email,country,hire_date,termination_date,is_director,"
    "is_executive_officer,role,manager_email\n"
)
PAT = "E1001,Pat Quinn,pat.quinn@example.com,US,1999-04-12,,false,false,employee,\n"
GRANTS = "external_id,employee_id,grant_date,shares,unexercised,price\n"


def write(tmp_path: Path, text: str | bytes, name: str = "people.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8", newline="")
    else:
        path.write_bytes(text)
    return path


def dump(engine: Engine) -> dict[str, list[Any]]:
    """Return every row of the tables an import writes, to compare before and after."""
    with engine.connect() as connection:
        return {
            table.__tablename__: [tuple(r) for r in connection.execute(select(table.__table__))]
            for table in (Person, OptionGrant, EventLog)
        }


def import_demo_csvs(session: Session, now: datetime = T0) -> dict[str, Any]:
    return {
        kind: import_csv(session, kind, demo_dir() / name, now=now, actor=ACTOR)
        for kind, name in DEMO_FILES
    }


@pytest.fixture
def baseline(session: Session, tmp_path: Path) -> None:
    """An employee and a supplier already stored, which the bad files try to change."""
    import_csv(session, "employees", write(tmp_path, EMPLOYEES + PAT), now=T0, actor=ACTOR)
    supplier = "S001,Foxhollow Ltd.,cmrt@foxhollow.example,contract_manufacturer,\n"
    import_csv(session, "suppliers", write(tmp_path, SUPPLIERS + supplier), now=T0, actor=ACTOR)


# Every bad file starts with a good row that would change stored data: nothing may change.
BAD_FILES: list[tuple[str, Kind, str | bytes, tuple[int, str, str]]] = [
    (
        "missing column",
        "suppliers",
        "external_id,name,email,tier\nS001,Foxhollow,new@foxhollow.example,direct\n",
        (1, "owner_email", "missing column"),
    ),
    (
        "unknown column",
        "suppliers",
        "external_id,name,email,tier,owner_email,colour\nS001,F,a@f.example,direct,,blue\n",
        (1, "colour", "unknown column"),
    ),
    (
        "bad date",
        "employees",
        EMPLOYEES
        + PAT.replace("pat.quinn@", "pq@")
        + "E1002,Eleanor Vance,ev@example.com,US,2002-02-30,,true,false,director,\n",
        (3, "hire_date", "'2002-02-30' is not a valid date"),
    ),
    (
        "US date",
        "employees",
        EMPLOYEES + "E1002,Eleanor Vance,ev@example.com,US,12/19/2002,,no,no,director,\n",
        (2, "hire_date", "is not a date (YYYY-MM-DD)"),
    ),
    (
        "9999-12-31 for 'no end date' (it would overflow the rules)",
        "employees",
        EMPLOYEES + "E1002,Eleanor Vance,ev@example.com,US,1994-03-01,9999-12-31,no,no,director,\n",
        (2, "termination_date", "9999-12-31 is not between 1900-01-01 and 2200-12-31"),
    ),
    (
        "a year typed with a digit short",
        "grants",
        GRANTS + "G0001,E1001,0200-05-20,1000,800,6.00\n",
        (2, "grant_date", "0200-05-20 is not between 1900-01-01 and 2200-12-31"),
    ),
    (
        "bad email",
        "suppliers",
        SUPPLIERS
        + "S001,Foxhollow Ltd.,new@foxhollow.example,contract_manufacturer,\n"
        + "S002,Nakamura,quality at nakamura.example,direct,\n",
        (3, "email", "'quality at nakamura.example' is not an email address"),
    ),
    (
        "bad boolean",
        "employees",
        EMPLOYEES + "E1002,Eleanor Vance,ev@example.com,US,1994-03-01,,maybe,no,director,\n",
        (2, "is_director", "'maybe' is not a boolean"),
    ),
    (
        "CR/LF injection in a name",
        "suppliers",
        SUPPLIERS + 'S002,"Evil Co\r\nBcc: all@example.org",e@evil.example,direct,\n',
        (2, "name", "line break"),
    ),
    (
        "duplicate external_id",
        "suppliers",
        SUPPLIERS
        + "S002,A,a@a.example,direct,\nS003,B,b@b.example,direct,\nS002,C,c@c.example,direct,\n",
        (4, "external_id", "duplicate external_id 'S002': lines 2 and 4"),
    ),
    (
        "grant for an unknown employee",
        "grants",
        GRANTS + "G0001,E1001,2000-05-20,1000,800,6.00\nG0002,E9999,2001-03-05,1000,1000,4.50\n",
        (3, "employee_id", "no employee 'E9999'"),
    ),
    (
        "unexercised above shares",
        "grants",
        GRANTS + "G0001,E1001,2000-05-20,1000,1200,6.00\n",
        (2, "unexercised", "1200 unexercised is more than the 1000 shares granted"),
    ),
    (
        "not UTF-8",
        "suppliers",
        (SUPPLIERS + "S002,Müller Präzision GmbH,m@mueller.example,direct,\n").encode("latin-1"),
        (2, "", "not UTF-8"),
    ),
    (
        "blank required cell",
        "suppliers",
        SUPPLIERS + "S002,,m@mueller.example,direct,\n",
        (2, "name", "is blank; a value is required"),
    ),
    (
        "unknown tier",
        "suppliers",
        SUPPLIERS + "S002,Müller,m@mueller.example,tier-1,\n",
        (2, "tier", "'contract_manufacturer', 'direct' or 'indirect'"),
    ),
    (
        "too many fields",
        "suppliers",
        SUPPLIERS + "S002,Müller,m@mueller.example,direct,,extra\n",
        (2, "", "6 fields where the header has 5"),
    ),
    (
        "price with a currency sign",
        "grants",
        GRANTS + "G0001,E1001,2000-05-20,1000,800,$6.00\n",
        (2, "price", "'$6.00' is not a price"),
    ),
    (
        "empty file",
        "grants",
        "",
        (1, "", "empty file"),
    ),
]


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [pytest.param(k, t, e, id=name) for name, k, t, e in BAD_FILES],
)
@pytest.mark.usefixtures("baseline")
def test_a_bad_file_names_row_and_column_and_changes_nothing(
    session: Session,
    engine: Engine,
    tmp_path: Path,
    kind: Kind,
    text: str | bytes,
    expected: tuple[int, str, str],
) -> None:
    before = dump(engine)
    path = write(tmp_path, text, "bad.csv")

    with pytest.raises(ImportErrors) as caught:
        import_csv(session, kind, path, now=T1, actor=ACTOR)

    row, column, message = expected
    assert any(
        e.row == row and e.column == column and message in e.message for e in caught.value.errors
    ), caught.value.errors
    assert dump(engine) == before


@pytest.mark.usefixtures("baseline")
def test_every_error_of_a_file_is_reported_at_once(
    session: Session, engine: Engine, tmp_path: Path
) -> None:
    before = dump(engine)
    text = GRANTS + (
        "G0001,E1001,2000-13-01,1000,800,6.00\n"
        "G0002,E9999,2001-03-05,1000,1000,4.50\n"
        "G0003,E1001,2002-02-28,-5,500,2.18\n"
    )
    with pytest.raises(ImportErrors) as caught:
        import_csv(session, "grants", write(tmp_path, text), now=T1, actor=ACTOR)

    assert [(e.row, e.column) for e in caught.value.errors] == [
        (2, "grant_date"),
        (3, "employee_id"),
        (4, "shares"),
    ]
    assert dump(engine) == before


def test_importing_the_same_files_twice_changes_nothing(session: Session) -> None:
    first = import_demo_csvs(session, T0)
    second = import_demo_csvs(session, T1)

    assert {k: (r.created, r.updated, r.unchanged) for k, r in first.items()} == {
        "suppliers": (223, 0, 0),
        "employees": (40, 0, 0),
        "third-parties": (4, 0, 0),
        "grants": (39, 0, 0),
    }
    assert all(r.created == r.updated == 0 and not r.changes for r in second.values())
    assert {p.updated_at for p in session.scalars(select(Person))} == {T0}
    audit = session.scalars(select(EventLog).where(EventLog.kind == "import")).all()
    assert [(e.source, e.actor, e.payload["kind"], e.payload["unchanged"]) for e in audit[4:]] == [
        (EventSource.IMPORT, ACTOR, kind, n)
        for kind, n in [("suppliers", 223), ("employees", 40), ("third-parties", 4), ("grants", 39)]
    ]
    assert audit[0].payload["file"] == "suppliers.csv"
    assert len(audit[0].payload["sha256"]) == 64


def test_a_changed_email_is_reported_and_updated(session: Session, tmp_path: Path) -> None:
    import_csv(session, "employees", write(tmp_path, EMPLOYEES + PAT), now=T0, actor=ACTOR)
    changed = PAT.replace("pat.quinn@example.com", "pat.q@example.org").replace(",US,", ",us,")

    report = import_csv(
        session, "employees", write(tmp_path, EMPLOYEES + changed), now=T1, actor=ACTOR
    )

    assert (report.created, report.updated, report.unchanged) == (0, 1, 0)
    assert report.changes == ["employee:E1001 email: pat.quinn@example.com -> pat.q@example.org"]
    pat = session.scalars(select(Person)).one()
    assert (pat.email, pat.country, pat.created_at, pat.updated_at) == (
        "pat.q@example.org",
        "US",
        T0,
        T1,
    )
    audit = session.scalars(select(EventLog).order_by(EventLog.id.desc())).first()
    assert audit is not None and audit.payload["changes"] == report.changes


def test_a_changed_grant_names_the_employee(session: Session, tmp_path: Path) -> None:
    two = EMPLOYEES + PAT + "E1002,Eleanor Vance,ev@example.com,US,1994-03-01,,1,0,director,\n"
    import_csv(session, "employees", write(tmp_path, two), now=T0, actor=ACTOR)
    grant = GRANTS + "G0001,E1001,2000-05-20,1000,800,6.00\n"
    import_csv(session, "grants", write(tmp_path, grant, "g.csv"), now=T0, actor=ACTOR)

    moved = GRANTS + "G0001,E1002,2000-05-20,1000,700,6.00\n"
    report = import_csv(session, "grants", write(tmp_path, moved, "g.csv"), now=T1, actor=ACTOR)

    assert report.changes == [
        "grant:G0001 employee_id: E1001 -> E1002",
        "grant:G0001 unexercised: 800 -> 700",
    ]


def test_bom_crlf_and_trailing_blank_rows_are_accepted(session: Session, tmp_path: Path) -> None:
    text = (SUPPLIERS + "S001, Foxhollow ,cmrt@foxhollow.example,DIRECT,\n").replace("\n", "\r\n")
    text = text.replace("DIRECT", "direct") + ",,,,\r\n\r\n"
    path = write(tmp_path, b"\xef\xbb\xbf" + text.encode())

    report = import_csv(session, "suppliers", path, now=T0, actor=ACTOR)

    assert (report.created, report.unchanged) == (1, 0)
    supplier = session.scalars(select(Person)).one()
    assert (supplier.name, supplier.tier, supplier.owner_email) == (
        "Foxhollow",
        SupplierTier.DIRECT,
        None,
    )


def test_progress_follows_the_rows_written(session: Session, tmp_path: Path) -> None:
    rows = "".join(f"S{n:04d},Supplier {n},s{n}@s.example,indirect,\n" for n in range(1, 1201))
    seen: list[int] = []

    import_csv(
        session, "suppliers", write(tmp_path, SUPPLIERS + rows), now=T0, actor=ACTOR,
        progress=seen.append,
    )  # fmt: skip

    assert seen == [500, 1000, 1200]


def test_the_demo_data(session: Session) -> None:
    import_demo_csvs(session)

    tiers = Counter(
        p.tier for p in session.scalars(select(Person).where(Person.kind == PersonKind.SUPPLIER))
    )
    assert tiers == {
        SupplierTier.CONTRACT_MANUFACTURER: 4,
        SupplierTier.DIRECT: 40,
        SupplierTier.INDIRECT: 179,
    }
    pat = session.scalars(select(Person).where(Person.external_id == "E1001")).one()
    assert (pat.name, pat.country, pat.hire_date) == ("Pat Quinn", "US", date(1999, 4, 12))
    grants = session.scalars(
        select(OptionGrant).where(OptionGrant.person_id == pat.id).order_by(OptionGrant.grant_date)
    )
    assert [(g.grant_date, g.unexercised, g.price) for g in grants] == [
        (date(2000, 5, 20), 800, Decimal("6.00")),
        (date(2001, 3, 5), 1000, Decimal("4.50")),
        (date(2002, 2, 28), 500, Decimal("2.18")),
        (date(2002, 7, 1), 500, Decimal("0.40")),
    ]


def test_the_demo_data_uses_only_reserved_domains() -> None:
    checked: dict[str, int] = {}
    for name in [*(n for _, n in DEMO_FILES), DEMO_SCENARIO]:
        with (demo_dir() / name).open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                for column in ("email", "owner_email", "manager_email"):
                    if row.get(column):
                        assert RESERVED.search(row[column]), (name, row[column])
                        checked[name] = checked.get(name, 0) + 1
    # Every address of the demo population was looked at (a renamed column would otherwise
    # leave nothing to check): 223 suppliers and their owners, 40 employees, 4 third parties.
    assert checked["suppliers.csv"] >= 2 * 223
    assert checked["employees.csv"] >= 40
    assert checked["third_parties.csv"] >= 4


def test_the_demo_scenario_is_recorded_once(session: Session) -> None:
    import_demo_csvs(session)
    programs = {p.id: p for p in load_programs(None)}

    first = load_scenario(
        session, demo_dir() / DEMO_SCENARIO, programs=programs, now=T0, actor=ACTOR
    )
    second = load_scenario(
        session, demo_dir() / DEMO_SCENARIO, programs=programs, now=T1, actor=ACTOR
    )

    assert first.recorded == {
        "cmrt_response": 213,
        "election": 11,
        "withdrawal": 1,
        "termination": 1,
        "fcpa_ack": 10,
    }
    assert (second.recorded, second.skipped) == ({}, 236)
    responses = session.scalars(select(EventLog).where(EventLog.kind == "cmrt_response")).all()
    assert len({e.person_id for e in responses}) == 205  # of 223: 92%
    assert sum(not e.payload["complete"] for e in responses) == 12
    # The termination is a recorded fact: re-importing the HR file (blank date) keeps it.
    session.rollback()  # an import starts its own transaction
    import_demo_csvs(session, T1)
    leaver = session.scalars(select(Person).where(Person.external_id == "E1016")).one()
    assert leaver.termination_date == date(2003, 5, 15)


def test_scenario_events_after_now_are_left_for_a_later_run(session: Session) -> None:
    import_demo_csvs(session)
    programs = {p.id: p for p in load_programs(None)}
    scenario = demo_dir() / DEMO_SCENARIO
    then = datetime(2017, 2, 1, tzinfo=UTC)

    early = load_scenario(session, scenario, programs=programs, now=then, actor=ACTOR)
    rest = load_scenario(session, scenario, programs=programs, now=T0, actor=ACTOR)

    assert early.later > 0
    assert sum(early.recorded.values()) + early.later == 236
    assert (rest.skipped, sum(rest.recorded.values()), rest.later) == (
        236 - early.later,
        early.later,
        0,
    )
    assert "dated after now left for later" in str(early)


def test_a_scenario_row_the_rules_refuse_changes_nothing(
    session: Session, engine: Engine, tmp_path: Path
) -> None:
    import_demo_csvs(session)
    programs = {p.id: p for p in load_programs(None)}
    before = dump(engine)
    text = (
        "at,kind,program,person,payload\n"
        "2003-01-14T10:12:00-08:00,election,option-exchange-2003,employee:E1001,{}\n"
        "2003-01-21T09:00:00-08:00,election,option-exchange-2003,employee:E1005,{}\n"
        "2017-02-01T10:00:00-08:00,cmrt_response,conflict-minerals-2016,supplier:S999,{}\n"
        "2017-02-01 10:00,fcpa_ack,fcpa,employee:E1001,[1]\n"
    )
    with pytest.raises(ImportErrors) as caught:
        load_scenario(session, write(tmp_path, text), programs=programs, now=T0, actor=ACTOR)
    assert [(e.row, e.column) for e in caught.value.errors] == [(5, "at"), (5, "payload")]

    with pytest.raises(ImportErrors) as caught:
        load_scenario(
            session, write(tmp_path, "\n".join(text.splitlines()[:4])), programs=programs,
            now=T0, actor=ACTOR,
        )  # fmt: skip
    assert [e.row for e in caught.value.errors] == [3, 4]
    assert "election refused: the election cutoff was 2003-01-20 21:00 PST" in str(caught.value)
    assert "no supplier with id 'S999'" in str(caught.value)
    assert dump(engine) == before


def test_row_errors_read_line_column_message() -> None:
    assert str(RowError(row=3, column="email", message="bad")) == "3: email: bad"
    assert str(RowError(row=2, column="", message="not UTF-8")) == "2: not UTF-8"


# --- the command ------------------------------------------------------------------------------


@pytest.fixture
def tickler(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[click.Group, Path]:
    """Return the CLI with ``import`` registered, on an SQLite file of its own."""
    database = tmp_path / "cli.sqlite"
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("TICKLER_DATABASE_URL", f"sqlite:///{database}")
    monkeypatch.delenv("TICKLER_PROGRAM_DIR", raising=False)
    monkeypatch.setitem(cli.commands, "import", import_command)
    return cli, database


def test_import_demo_through_the_cli_twice(tickler: tuple[click.Group, Path]) -> None:
    group, _ = tickler
    runner = CliRunner()

    first = runner.invoke(group, ["import", "demo"], catch_exceptions=False)
    second = runner.invoke(group, ["import", "demo"], catch_exceptions=False)

    assert first.exit_code == 0, first.stderr
    assert "suppliers: 223 created, 0 updated, 0 unchanged" in first.stdout
    assert "events: 236 recorded" in first.stdout
    assert second.exit_code == 0, second.stderr
    assert "suppliers: 0 created, 0 updated, 223 unchanged" in second.stdout
    assert "grants: 0 created, 0 updated, 39 unchanged" in second.stdout
    assert "events: 0 recorded (none), 236 already recorded" in second.stdout


def test_cli_errors_exit_2_naming_file_row_and_column(
    tickler: tuple[click.Group, Path], tmp_path: Path
) -> None:
    group, _ = tickler
    bad = write(tmp_path, SUPPLIERS + "S001,A,a@a.example,direct,\nS002,B,b-at-b,direct,\n")
    runner = CliRunner()

    result = runner.invoke(group, ["import", "suppliers", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:3: email: 'b-at-b' is not an email address" in result.stderr

    assert runner.invoke(group, ["import", "suppliers"]).exit_code == 2
    assert runner.invoke(group, ["import", "demo", str(bad)]).exit_code == 2
    assert runner.invoke(group, ["import", "grants", str(tmp_path / "nope.csv")]).exit_code == 2
    assert runner.invoke(group, ["import", "vendors", str(bad)]).exit_code == 2


def test_cli_refuses_a_placeholder_date_naming_file_row_and_column(
    tickler: tuple[click.Group, Path], tmp_path: Path
) -> None:
    group, _ = tickler
    bad = write(tmp_path, EMPLOYEES + PAT.replace("1999-04-12,,", "1999-04-12,9999-12-31,"))

    result = CliRunner().invoke(group, ["import", "employees", str(bad)])

    assert result.exit_code == 2, result.output
    assert f"{bad}:2: termination_date: 9999-12-31 is not between 1900-01-01 and 2200-12-31" in (
        result.stderr
    )
    assert "leave the value out" in result.stderr


def test_cli_imports_a_large_file_with_a_progress_bar(
    tickler: tuple[click.Group, Path], tmp_path: Path
) -> None:
    group, _ = tickler
    rows = "".join(f"S{n:04d},Supplier {n},s{n}@s.example,indirect,\n" for n in range(1, 1502))
    path = write(tmp_path, SUPPLIERS + rows)

    result = CliRunner().invoke(group, ["import", "suppliers", str(path)], catch_exceptions=False)

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "suppliers: 1501 created, 0 updated, 0 unchanged\n"


def demo_copy(tmp_path: Path, last: str = "", last_file: str = DEMO_SCENARIO) -> Path:
    """Copy the demo files into ``tmp_path``, ``last`` appended to ``last_file``."""
    for name in [*(n for _, n in DEMO_FILES), DEMO_SCENARIO]:
        data = (demo_dir() / name).read_bytes()
        (tmp_path / name).write_bytes(data + last.encode() if name == last_file else data)
    return tmp_path


@pytest.mark.parametrize(
    ("last_file", "last", "expected"),
    [
        pytest.param(
            DEMO_SCENARIO,
            "2025-12-01T09:00:00-08:00,fcpa_ack,fcpa,employee:E9999,{}\n",
            (238, "", "no employee with id 'E9999'"),
            id="a fact the rules refuse, last row of the scenario",
        ),
        pytest.param(
            DEMO_SCENARIO,
            "2003-01-01T09:00:00-08:00,fcpa_ack,fcpa,employee:E1001,{}\n",
            (238, "at", "facts are recorded in date order"),
            id="a fact out of date order",
        ),
        pytest.param(
            "grants.csv",
            "G9999,E1001,2000-05-20,100,100,$1\n",
            (41, "price", "is not a price"),
            id="a bad grant, last row of the last CSV",
        ),
    ],
)
def test_import_all_is_one_transaction_a_bad_last_row_changes_nothing(
    session: Session,
    engine: Engine,
    tmp_path: Path,
    last_file: str,
    last: str,
    expected: tuple[int, str, str],
) -> None:
    """``tickler import demo``: people, grants and facts commit together or not at all."""
    folder = demo_copy(tmp_path, last, last_file)
    programs = {p.id: p for p in load_programs(None)}
    before = dump(engine)

    with pytest.raises(ImportErrors) as caught:
        import_all(
            session,
            [(kind, folder / name) for kind, name in DEMO_FILES],
            scenario=folder / DEMO_SCENARIO,
            programs=programs,
            now=T0,
            actor=ACTOR,
        )

    assert caught.value.path == folder / last_file
    row, column, message = expected
    assert [(e.row, e.column) for e in caught.value.errors] == [(row, column)]
    assert message in caught.value.errors[0].message
    assert dump(engine) == before  # the first files' people are gone with the last file's row

    done = import_all(
        session,
        [(kind, demo_dir() / name) for kind, name in DEMO_FILES],
        scenario=demo_dir() / DEMO_SCENARIO,
        programs=programs,
        now=T0,
        actor=ACTOR,
    )
    assert [r.created for r in done.files] == [223, 40, 4, 39]
    assert done.events is not None and sum(done.events.recorded.values()) == 236


def test_import_demo_names_the_file_of_a_bad_row_and_changes_nothing(
    tickler: tuple[click.Group, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo reads several files: the error names the one of the bad row; exit 2."""
    group, database = tickler
    folder = demo_copy(tmp_path, "2025-12-01T09:00:00-08:00,fcpa_ack,fcpa,employee:E9999,{}\n")
    monkeypatch.setattr("jobs.imports.demo_dir", lambda: folder)

    result = CliRunner().invoke(group, ["--now", T0.isoformat(), "import", "demo"])

    assert result.exit_code == 2, result.output
    assert f"{folder / DEMO_SCENARIO}:238: fcpa_ack: no employee with id 'E9999'" in result.stderr
    assert "created" not in result.stdout  # no report of files that were rolled back
    engine = create_engine(f"sqlite:///{database}")
    try:
        assert dump(engine) == {"people": [], "option_grants": [], "event_log": []}
    finally:
        engine.dispose()


def test_a_large_file_is_read_a_batch_at_a_time(session: Session, tmp_path: Path) -> None:
    """Memory follows the batch, not the file: 6 times the rows, about the same peak."""
    import tracemalloc

    def peak(rows: int, name: str) -> int:
        path = write(
            tmp_path,
            SUPPLIERS
            + "".join(
                f"{name}{n:06d},Supplier {n},s{n}@s.example,indirect,\n" for n in range(rows)
            ),
            f"{name}.csv",
        )
        tracemalloc.start()
        try:
            import_csv(session, "suppliers", path, now=T0, actor=ACTOR)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(1_000, "A"), peak(6_000, "B")
    assert large < 1.5 * small, (small, large)


def test_change_lines_beyond_the_audit_limit_are_counted_not_kept(
    session: Session, tmp_path: Path
) -> None:
    """A file that changes every row keeps 1,000 change lines (in memory and in the audit row)
    and counts the rest."""

    def suppliers(name: str) -> Path:
        rows = "".join(f"S{n:04d},{name} {n},s{n}@s.example,indirect,\n" for n in range(1, 1101))
        return write(tmp_path, SUPPLIERS + rows)

    import_csv(session, "suppliers", suppliers("Supplier"), now=T0, actor=ACTOR)
    report = import_csv(session, "suppliers", suppliers("Vendor"), now=T1, actor=ACTOR)

    assert (report.updated, len(report.changes), report.more_changes) == (1100, 1000, 100)
    audit = session.scalars(select(EventLog).order_by(EventLog.id.desc())).first()
    assert audit is not None
    assert (len(audit.payload["changes"]), audit.payload["changes_omitted"]) == (1000, 100)
