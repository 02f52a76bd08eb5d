"""A small, explicit world for feed and HTTP tests: the seed programs, a few people, a clock,
and the ASGI app served by uvicorn on a real loopback socket."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import icalendar
from ical.calendar import Calendar as IcalCalendar
from ical.calendar_stream import IcsCalendarStream
from sqlalchemy.orm import Session

from config.loader import load_programs
from config.programs import Program
from config.settings import Settings
from jobs.storage.db import (
    FcpaRole,
    OptionGrant,
    Person,
    PersonKind,
    SupplierTier,
    begin_write,
)
from scheduler.daemon.service import Service
from scheduler.web import http
from tests.ical_lint import lint_ics

PROGRAMS = load_programs(None)
OFFER = "option-exchange-2003"
#: Ten days before the seed offer's cutoff (2003-01-20 21:00 PST).
OPEN_WEEK = datetime(2003, 1, 10, 18, 0, tzinfo=UTC)
HR_TOKEN = "hr:hr-secret-0123456789"
PORTAL_TOKEN = "portal:portal-secret-0123456789"
ELECTIONS_ONLY = "kiosk:kiosk-secret-0123456789"


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def settings(db_url: str, tmp_path: Path, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "maildir": tmp_path / "maildir",
        "api_tokens": [HR_TOKEN, PORTAL_TOKEN, ELECTIONS_ONLY],
        "api_scopes": {"hr": "*", "portal": "*", "kiosk": ["election", "withdrawal"]},
        "public_feeds": ["program:fcpa:representatives"],
        "feed_check_seconds": 0,  # every request asks the database (see test_http for > 0)
    }
    return Settings(**(values | changes))


def service(
    db_url: str, tmp_path: Path, programs: Sequence[Program] = PROGRAMS, **changes: Any
) -> Service:
    return Service(settings(db_url, tmp_path, **changes), programs)


# The seed's reference holder (slide 9): 800 + 1000 + 500 shares exchanged for 1725 new ones.
SLIDE_9 = [
    (date(2000, 5, 20), 800, "6.00"),
    (date(2001, 3, 5), 1000, "4.50"),
    (date(2002, 2, 28), 500, "2.18"),
    (date(2002, 7, 1), 500, "0.40"),
]


def seed_people(session: Session, now: datetime = OPEN_WEEK) -> None:
    """Store an eligible employee, a director, two suppliers and a third party."""

    def person(kind: PersonKind, external_id: str, name: str, **fields: Any) -> Person:
        row = Person(
            kind=kind,
            external_id=external_id,
            name=name,
            email=f"{external_id.lower()}@example.com",
            created_at=now,
            updated_at=now,
            **fields,
        )
        session.add(row)
        return row

    pat = person(
        PersonKind.EMPLOYEE,
        "E1001",
        "Pat Quinn",
        country="US",
        hire_date=date(1999, 4, 12),
        role=FcpaRole.EMPLOYEE,
        is_director=False,
        is_executive_officer=False,
    )
    person(
        PersonKind.EMPLOYEE,
        "E1002",
        "Eleanor Vance",
        country="US",
        hire_date=date(1994, 3, 1),
        role=FcpaRole.DIRECTOR,
        is_director=True,
        is_executive_officer=False,
    )
    person(
        PersonKind.SUPPLIER,
        "S001",
        "Foxhollow Contract Manufacturing Ltd.",
        tier=SupplierTier.CONTRACT_MANUFACTURER,
        owner_email="dana.kim@example.com",
    )
    person(PersonKind.SUPPLIER, "S002", "Zhōngshān Bright Circuit", tier=SupplierTier.INDIRECT)
    person(
        PersonKind.THIRD_PARTY,
        "T001",
        "Harborline Distribution S.A.",
        role=FcpaRole.DISTRIBUTOR,
        start_date=date(2016, 5, 2),
    )
    session.flush()
    for n, (day, unexercised, price) in enumerate(SLIDE_9, start=1):
        session.add(
            OptionGrant(
                external_id=f"G{n:04}",
                person_id=pat.id,
                grant_date=day,
                shares=unexercised,
                unexercised=unexercised,
                price=Decimal(price),
            )
        )
    session.flush()


def seeded(service: Service) -> Service:
    with begin_write(service.factory) as session:
        seed_people(session)
    return service


def parse(data: bytes) -> tuple[icalendar.Calendar, IcalCalendar]:
    """Lint ``data`` and read it with icalendar and with Home Assistant's ical; both must agree."""
    assert lint_ics(data) == []
    cal = icalendar.Calendar.from_ical(data)
    other = IcsCalendarStream.calendar_from_ics(data.decode())
    assert sorted(str(e["UID"]) for e in cal.events) == sorted(str(e.uid) for e in other.timeline)
    return cal, other


def events_by_uid(data: bytes) -> dict[str, Any]:
    """Return the events of ``data`` by UID (values typed loosely: icalendar's are unions)."""
    cal, _ = parse(data)
    return {str(e["UID"]): e for e in cal.events}


class LiveServer:
    """The app served by uvicorn on 127.0.0.1 (a free port), on an event loop of its own thread.

    The tests talk to it over a real socket with a blocking client, as a calendar client would.
    """

    def __init__(self, app: Any) -> None:
        self.sock = http.listen("127.0.0.1", 0)
        self.port = int(self.sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._app = app
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="live-server", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._started.set()
            await http.serve(self._app, self.sock, self._stop)

        asyncio.run(main())

    def start(self) -> None:
        self._thread.start()
        assert self._started.wait(10), "the server did not start"

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        assert not self._thread.is_alive(), "the server did not stop"


@contextmanager
def live_server(app: Any) -> Iterator[LiveServer]:
    server = LiveServer(app)
    server.start()
    try:
        yield server
    finally:
        server.close()


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)
