"""Feeds built from the database: content, revisions, cancellations, DST, calcurse."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from config.programs import OptionExchange, Presentation
from jobs.record import record
from jobs.storage import tokens
from jobs.storage.db import FeedToken, begin_write
from scheduler.cli.main import cli
from scheduler.daemon.service import Service
from scheduler.web.feeds import FeedError, FeedSource, parse_feed
from tests.world import OFFER, OPEN_WEEK, PROGRAMS, events_by_uid, parse, seeded, service, utc

PAT = "person:employee:E1001"
CUTOFF_UID = f"{OFFER}/election-cutoff@tickler"
#: After the seed offer's grant, during the RY2016 CMRT follow-ups, with FCPA cycles running.
LATER = datetime(2017, 3, 15, 18, 0, tzinfo=UTC)


@pytest.fixture
def svc(db_url: str, tmp_path: Path) -> Iterator[Service]:
    s = seeded(service(db_url, tmp_path))
    yield s
    s.engine.dispose()


def source(s: Service) -> FeedSource:
    return FeedSource(s.factory, s.programs, team=s.team, timezone=s.settings.timezone)


def record_fact(
    s: Service,
    kind: str,
    *,
    at: datetime,
    program: str | None = OFFER,
    person: str | None = "employee:E1001",
    **payload: Any,
) -> int:
    with begin_write(s.factory) as session:
        return record(
            session,
            kind=kind,
            program=program,
            person=person,
            at=at,
            actor="test",
            source="cli",
            payload=payload,
            programs={p.id: p for p in s.programs},
            now=at,
        )


def all_feeds(feeds: FeedSource, now: datetime) -> list[str]:
    people = [f"person:{k}" for k in ("employee:E1001", "employee:E1002", "supplier:S001")]
    people += ["person:supplier:S002", "person:third_party:T001"]
    return feeds.program_feeds(now) + people


def test_every_feed_parses_lints_and_renders_the_same_bytes_twice(svc: Service) -> None:
    record_fact(svc, "election", at=OPEN_WEEK)
    record_fact(
        svc,
        "cmrt_response",
        at=utc("2017-02-20T10:00:00-08:00"),
        program="conflict-minerals-2016",
        person="supplier:S001",
        complete=True,
    )
    feeds = source(svc)
    names = all_feeds(feeds, LATER)
    assert "program:conflict-minerals-2016:compliance" in names
    assert "program:option-exchange-2003:employees" in names
    for name in names:
        first = feeds.render(name, LATER)
        again = feeds.render(name, LATER + timedelta(hours=1))
        assert again.body == first.body, name
        assert again.etag == first.etag and again.stamp[:3] == first.stamp[:3]
        cal, _ = parse(first.body)
        assert str(cal["METHOD"]) == "PUBLISH"
        program = name.split(":")[1] if name.startswith("program:") else None
        events = [dict(e) for e in cal.events]
        assert events, f"{name} has no event: the checks below would pass on nothing"
        for event in events:
            assert event["DTSTAMP"].to_ical() == event["LAST-MODIFIED"].to_ical()
            assert str(event["DESCRIPTION"]).strip(), (name, event["UID"])
            categories = [str(c) for c in event["CATEGORIES"].cats]  # type: ignore[union-attr]
            assert program is None or categories[0] == program
    # the compliance team's calendar: internal milestones and the Form SD due date
    compliance = events_by_uid(
        feeds.render("program:conflict-minerals-2016:compliance", LATER).body
    )
    assert "conflict-minerals-2016/form-sd-due@tickler" in compliance
    assert any("/milestone/" in uid for uid in compliance)
    # the employees' offer calendar has no compliance-only reminders and no example grant
    employees = events_by_uid(feeds.render(f"program:{OFFER}:employees", LATER).body)
    assert CUTOFF_UID in employees
    assert not [u for u in employees if "cutoff-reminder" in u or "/vesting/" in u]


def test_personal_feeds_hold_what_each_person_is_owed(svc: Service) -> None:
    record_fact(svc, "election", at=OPEN_WEEK)
    feeds = source(svc)
    pat = events_by_uid(feeds.render(PAT, LATER).body)
    vesting = sorted(
        (str(e["DTSTART"].dt), str(e["SUMMARY"])) for u, e in pat.items() if "/vesting/" in u
    )
    assert len(vesting) == 25
    assert vesting[0] == ("2004-01-21", "Vesting 1/25: 863 shares")
    assert vesting[-1] == ("2006-01-21", "Vesting 25/25: 36 shares")
    assert {CUTOFF_UID, f"{OFFER}/grant-date@tickler"} <= set(pat)
    assert any(u.startswith("fcpa/ack/employee:E1001/") for u in pat)  # FCPA renewals
    # the director is not eligible: no offer, only FCPA
    director = events_by_uid(feeds.render("person:employee:E1002", LATER).body)
    assert director and all(u.startswith("fcpa/") for u in director)
    # a supplier: its wave's request and due date, then reminders while silent
    supplier = events_by_uid(feeds.render("person:supplier:S001", LATER).body)
    due = supplier["conflict-minerals-2016/wave-1/response-due@tickler"]
    assert due["DTSTART"].dt == date(2017, 2, 10)
    reminders = [
        e for u, e in supplier.items() if u.startswith("conflict-minerals-2016/follow-up/")
    ]
    assert [str(e["STATUS"]) for e in reminders] == ["CONFIRMED"] * 3


def test_extension_raises_sequence_and_moves_the_cutoff_and_the_vesting(svc: Service) -> None:
    record_fact(svc, "election", at=OPEN_WEEK)
    feeds = source(svc)
    program_feed = f"program:{OFFER}:employees"
    before = events_by_uid(feeds.render(program_feed, OPEN_WEEK).body)
    mine_before = events_by_uid(feeds.render(PAT, OPEN_WEEK).body)
    cutoff = before[CUTOFF_UID]
    assert (cutoff["SEQUENCE"], cutoff["DTSTART"].dt.astimezone(UTC)) == (
        0,
        utc("2003-01-21T05:00:00+00:00"),
    )

    announced = OPEN_WEEK + timedelta(days=2)
    record_fact(svc, "offer_extension", at=announced, person=None, cutoff="2003-02-03T21:00:00")
    later = announced + timedelta(minutes=5)
    after = events_by_uid(feeds.render(program_feed, later).body)
    cutoff = after[CUTOFF_UID]
    assert cutoff["SEQUENCE"] == 1
    assert cutoff["DTSTART"].to_ical() == b"20030203T210000"
    assert cutoff["DTSTART"].params["TZID"] == "America/Los_Angeles"
    assert cutoff["LAST-MODIFIED"].dt == later
    grant = after[f"{OFFER}/grant-date@tickler"]  # every date hangs on the expiration
    assert (grant["SEQUENCE"], grant["DTSTART"].dt) == (1, date(2003, 8, 4))
    mine = events_by_uid(feeds.render(PAT, later).body)
    first = f"{OFFER}/vesting/employee:E1001/1@tickler"
    assert mine_before[first]["DTSTART"].dt == date(2004, 1, 21)
    assert (mine[first]["SEQUENCE"], mine[first]["DTSTART"].dt) == (1, date(2004, 2, 4))
    # The planning job versions the program's events by the same rule: nothing moves again.
    body = feeds.render(program_feed, later).body
    import asyncio

    asyncio.run(svc.plan(later + timedelta(minutes=1)))
    assert feeds.render(program_feed, later + timedelta(minutes=2)).body == body


def test_withdrawal_cancels_the_vesting_and_a_new_election_restores_it(svc: Service) -> None:
    feeds = source(svc)
    first = f"{OFFER}/vesting/employee:E1001/1@tickler"
    assert not [u for u in events_by_uid(feeds.render(PAT, OPEN_WEEK).body) if "/vesting/" in u]

    def vesting(now: datetime) -> set[tuple[str, int]]:
        events = events_by_uid(feeds.render(PAT, now).body)
        return {
            (str(e["STATUS"]), int(e["SEQUENCE"])) for u, e in events.items() if "/vesting/" in u
        }

    t = OPEN_WEEK
    record_fact(svc, "election", at=t)
    assert vesting(t) == {("CONFIRMED", 0)}
    t += timedelta(hours=1)
    record_fact(svc, "withdrawal", at=t)
    assert vesting(t) == {("CANCELLED", 1)}
    t += timedelta(hours=1)
    record_fact(svc, "election", at=t)
    assert vesting(t) == {("CONFIRMED", 2)}
    assert first in events_by_uid(feeds.render(PAT, t).body)


def test_stamp_moves_with_every_change_and_only_then(svc: Service) -> None:
    feeds = source(svc)
    rendered = feeds.render(PAT, OPEN_WEEK)
    with svc.factory() as session:
        assert feeds.stamp(session, rendered.scopes, OPEN_WEEK) == rendered.stamp
    record_fact(svc, "election", at=OPEN_WEEK)
    with svc.factory() as session:
        assert feeds.stamp(session, rendered.scopes, OPEN_WEEK) != rendered.stamp
    again = feeds.render(PAT, OPEN_WEEK)
    with svc.factory() as session:
        assert feeds.stamp(session, again.scopes, OPEN_WEEK) == again.stamp
        assert feeds.stamp(session, again.scopes, OPEN_WEEK + timedelta(days=1)) != again.stamp


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("calendar", "starts with program: or person:"),
        ("program:fcpa", "program:PROGRAM_ID:AUDIENCE"),
        ("program:fcpa:everyone", "audience 'everyone' is not one of"),
        ("person:vendor:V1", "KIND one of supplier, employee, third_party"),
        ("person:employee:", "person:KIND:ID"),
        ("person:employee:" + "E" * 120, "longer than 128"),
    ],
)
def test_malformed_feed_names_say_what_is_wrong(name: str, message: str) -> None:
    with pytest.raises(FeedError, match=message):
        parse_feed(name)


def test_unknown_program_or_person_is_no_feed(svc: Service) -> None:
    feeds = source(svc)
    with pytest.raises(FeedError, match="no program 'sox'; known: conflict-minerals-2016"):
        feeds.render("program:sox:compliance", OPEN_WEEK)
    with pytest.raises(FeedError, match="no employee with id 'E404'"):
        feeds.render("person:employee:E404", OPEN_WEEK)


# DST -----------------------------------------------------------------------------------------


def dst_offer() -> OptionExchange:
    """The seed offer moved to March 2026: presentations either side of the spring-forward
    Sunday (8 March) and a cutoff on the Monday after it, reminded 1 day and 3 hours before."""
    seed = next(p for p in PROGRAMS if isinstance(p, OptionExchange))
    return seed.model_copy(
        update={
            "id": "dst-offer-2026",
            "open": date(2026, 3, 2),
            "cutoff": datetime(2026, 3, 9, 21, 0),
            "cutoff_reminders": ["1d", "3h"],
            "presentations": [
                Presentation(
                    key="fri", start=datetime(2026, 3, 6, 9), end=datetime(2026, 3, 6, 10)
                ),
                Presentation(
                    key="mon", start=datetime(2026, 3, 9, 9), end=datetime(2026, 3, 9, 10)
                ),
                # 1 November 2026: 01:30 happens twice; the rule takes the first (PDT)
                Presentation(
                    key="fall", start=datetime(2026, 11, 1, 1, 30), end=datetime(2026, 11, 1, 3)
                ),
            ],
            "example_shares": None,
        }
    )


def test_dst_weeks_render_at_the_right_local_time(db_url: str, tmp_path: Path) -> None:
    s = service(db_url, tmp_path, programs=[dst_offer()])
    try:
        feeds = source(s)
        now = datetime(2026, 3, 1, tzinfo=UTC)
        data = feeds.render("program:dst-offer-2026:compliance", now).body
    finally:
        s.engine.dispose()
    events = events_by_uid(data)

    def start(key: str) -> tuple[bytes, datetime]:
        value = events[f"dst-offer-2026/{key}@tickler"]["DTSTART"]
        return value.to_ical(), value.dt.astimezone(UTC)

    assert start("presentation/fri") == (b"20260306T090000", utc("2026-03-06T17:00:00+00:00"))
    assert start("presentation/mon") == (b"20260309T090000", utc("2026-03-09T16:00:00+00:00"))
    assert start("election-cutoff") == (b"20260309T210000", utc("2026-03-10T04:00:00+00:00"))
    # a day before at the send time (09:00 on the Sunday, the first day of PDT), 3 hours
    # before in real time
    assert start("cutoff-reminder/1d") == (b"20260308T090000", utc("2026-03-08T16:00:00+00:00"))
    assert start("cutoff-reminder/3h") == (b"20260309T180000", utc("2026-03-10T01:00:00+00:00"))
    assert start("presentation/fall") == (b"20261101T013000", utc("2026-11-01T08:30:00+00:00"))
    end = events["dst-offer-2026/presentation/fall@tickler"]["DTEND"].dt.astimezone(UTC)
    assert end == utc("2026-11-01T11:00:00+00:00")  # 03:00 PST: two and a half real hours
    # calcurse converts with the system zone database: the same instants
    if shutil.which("calcurse"):
        assert dump_calcurse(data, tmp_path)[0] >= {
            f"apt {int(utc('2026-03-06T17:00:00+00:00').timestamp())}",
            f"apt {int(utc('2026-03-09T16:00:00+00:00').timestamp())}",
        }


# calcurse ------------------------------------------------------------------------------------


def dump_calcurse(data: bytes, tmp_path: Path) -> tuple[set[str], int]:
    """Import ``data`` with calcurse; return the start lines of appointments and the item count.

    Fails when calcurse skips an item (exit 1 and a log in $TMPDIR).
    """
    calcurse = shutil.which("calcurse")
    assert calcurse is not None
    work = tmp_path / f"calcurse-{len(list(tmp_path.glob('calcurse-*')))}"
    for name in ("data", "conf", "tmp"):
        (work / name).mkdir(parents=True)
    feed = work / "feed.ics"
    feed.write_bytes(data)
    env = {**os.environ, "TMPDIR": str(work / "tmp"), "HOME": str(work), "TZ": "UTC"}
    command = [calcurse, "-D", str(work / "data"), "-C", str(work / "conf"), "-q"]
    command += ["-i", str(feed), "--dump-imported"]
    command += ["--format-apt", "apt %(start:epoch)\\n", "--format-recur-apt", "rapt\\n"]
    command += ["--format-event", "event\\n", "--format-recur-event", "revent\\n"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    logs = {path.name: path.read_text() for path in (work / "tmp").iterdir()}
    assert (result.returncode, result.stderr, logs) == (0, "", {})
    lines = result.stdout.splitlines()
    return {line for line in lines if line.startswith("apt ")}, len(lines)


@pytest.mark.skipif(
    shutil.which("calcurse") is None,
    reason="calcurse is not on PATH (apt-get install calcurse; CI installs it)",
)
def test_calcurse_imports_every_feed_without_skipping_an_item(svc: Service, tmp_path: Path) -> None:
    record_fact(svc, "election", at=OPEN_WEEK)
    record_fact(svc, "withdrawal", at=OPEN_WEEK + timedelta(hours=1))
    feeds = source(svc)
    feeds.render(PAT, OPEN_WEEK)  # published while elected...
    record_fact(svc, "election", at=OPEN_WEEK + timedelta(hours=2))
    for name in all_feeds(feeds, LATER):
        data = feeds.render(name, LATER).body
        _, items = dump_calcurse(data, tmp_path)
        assert items > 0 and items == data.count(b"BEGIN:VEVENT"), name


# tickler feeds ... -----------------------------------------------------------------------------


def run_cli(env: Mapping[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--now", "2003-01-10T18:00:00+00:00", *args], env=dict(env))
    return result.exit_code, result.stdout, result.stderr


def test_feeds_cli_issues_rotates_revokes_lists_and_exports(svc: Service, tmp_path: Path) -> None:
    env = {
        "TICKLER_DATABASE_URL": svc.settings.database_url,
        "TICKLER_PUBLIC_URL": "https://tickler.example.com/",
        "TICKLER_PUBLIC_FEEDS": '["program:fcpa:representatives"]',
        "TICKLER_MAILDIR": str(tmp_path / "maildir"),
    }
    code, out, _ = run_cli(env, "feeds", "url", PAT, "program:fcpa:representatives")
    assert code == 0, out
    lines = out.splitlines()
    prefix = f"{PAT}  https://tickler.example.com/feeds/"
    assert lines[0].startswith(prefix) and lines[0].endswith(".ics")
    assert lines[1] == (
        "program:fcpa:representatives  "
        "https://tickler.example.com/feeds/public/program:fcpa:representatives.ics  (public)"
    )
    token = lines[0].removeprefix(prefix).removesuffix(".ics")
    with svc.factory() as session:
        assert tokens.resolve(session, token) == PAT
        stored = session.scalars(select(FeedToken.token_hash)).all()
    assert stored == [tokens.token_hash(token)]  # the hash, never the token

    code, _, err = run_cli(env, "feeds", "url", PAT)
    assert code == 1 and "already has a URL" in err and "feeds rotate" in err

    code, out, _ = run_cli(env, "feeds", "rotate", PAT)
    assert code == 0
    new = out.split()[-1].rsplit("/", 1)[-1].removesuffix(".ics")
    with svc.factory() as session:
        assert tokens.resolve(session, token) is None
        assert tokens.resolve(session, new) == PAT

    code, out, _ = run_cli(env, "feeds", "revoke", PAT)
    assert (code, out) == (0, f"{PAT}  revoked\n")
    with svc.factory() as session:
        assert tokens.resolve(session, new) is None

    code, out, _ = run_cli(env, "feeds", "list")
    assert code == 0 and out.count("revoked") >= 2 and "program:fcpa:representatives" in out

    code, _, err = run_cli(env, "feeds", "rotate", "person:employee:E404", "program:nope:x")
    assert code == 2
    assert "no employee with id 'E404'" in err and "audience 'x' is not one of" in err

    target = tmp_path / "pat.ics"
    code, _, err = run_cli(env, "feeds", "export", PAT, "-o", str(target))
    assert code == 0 and "wrote" in err
    parse(target.read_bytes())
    assert target.read_bytes() == source(svc).render(PAT, OPEN_WEEK).body
