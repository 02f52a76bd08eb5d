"""One truth whatever the timing (issue 15), as a property: any interleaving of imports of
people (in chunks), imports of facts, single facts, incremental plans, whole plans and time
passing ends as one plan made after everything would: the same live obligations, the same
pending messages, the same ``tickler status`` figures.

Each example replays its steps on a second, fresh database without planning, then plans it
once at the final time: that is the reference. The interleaved database ends as the daemon
does after the last change, with an incremental plan of what changed since the one before.
Derandomised and bounded (a few examples on SQLite, fewer on PostgreSQL), so that a run
takes well under a minute and always tries the same interleavings.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from config.facts import FactKind
from jobs.imports import ImportErrors, Kind, demo_dir, import_csv, load_scenario
from jobs.record import RecordError, record
from jobs.storage.db import (
    EventSource,
    Obligation,
    OutboxMessage,
    OutboxState,
    Person,
    begin_write,
)
from jobs.storage.obligations import RETIRED
from jobs.storage.queries import status_rows
from scheduler.cli.commands import status_data
from scheduler.daemon.loop import EventCursor
from scheduler.daemon.service import Service
from tests import world
from tests.conftest import PostgresServer

NOW = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)
ACTOR = "test:property"
PROGRAMS = {p.id: p for p in world.PROGRAMS}

# ---------------------------------------------------------------------------------------------
# The world: a slice of the demo population, cut into the files the steps import


def _lines(name: str) -> tuple[str, list[str]]:
    header, *rows = (demo_dir() / name).read_text(encoding="utf-8").splitlines(keepends=True)
    return header, rows


def _chunks(folder: Path) -> dict[str, tuple[Kind | None, Path]]:
    """Write the files of the steps: people in chunks, their grants, their facts in two parts."""
    files: dict[str, tuple[Kind | None, Path]] = {}
    header, suppliers = _lines("suppliers.csv")
    for n, part in enumerate((suppliers[:12], suppliers[12:24])):
        files[f"suppliers-{n}"] = ("suppliers", _write(folder / f"s{n}.csv", header, part))
    header, employees = _lines("employees.csv")
    for n, part in enumerate((employees[:20], employees[20:40])):
        files[f"employees-{n}"] = ("employees", _write(folder / f"e{n}.csv", header, part))
    header, third = _lines("third_parties.csv")
    files["third-parties"] = ("third-parties", _write(folder / "t.csv", header, third))
    header, grants = _lines("grants.csv")
    files["grants"] = ("grants", _write(folder / "g.csv", header, grants))
    # The facts about the people above (suppliers S001-S024 in the demo's order).
    known = {f"supplier:{row.split(',', 1)[0]}" for row in suppliers[:24]}
    header, facts = _lines("scenario.csv")
    mine = [row for row in facts if ",supplier:" not in row or row.split(",")[3] in known]
    half = len(mine) // 2
    for n, part in enumerate((mine[:half], mine[half:])):
        files[f"facts-{n}"] = (None, _write(folder / f"f{n}.csv", header, part))
    return files


def _write(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "".join(rows), encoding="utf-8")
    return path


#: Single facts recorded at the clock's time: this year's FCPA acknowledgments, and the
#: RY2026 survey answered early by a supplier.
SINGLE: list[tuple[FactKind, str, str, dict[str, Any]]] = [
    (FactKind.FCPA_ACK, "fcpa", f"employee:E{1000 + n}", {}) for n in (1, 3, 7, 12, 25, 33)
] + [
    (FactKind.FCPA_ACK, "fcpa", "third_party:T002", {}),
    (FactKind.CMRT_RESPONSE, "conflict-minerals-2026", "supplier:S003", {"complete": True}),
    (FactKind.CMRT_RESPONSE, "conflict-minerals-2026", "supplier:S015", {"complete": False}),
]

Step = tuple[str, Any]
STEPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("import"),
            st.sampled_from(
                [
                    "suppliers-0",
                    "suppliers-1",
                    "employees-0",
                    "employees-1",
                    "third-parties",
                    "grants",
                    "facts-0",
                    "facts-1",
                ]
            ),
        ),
        st.tuples(st.just("fact"), st.integers(0, len(SINGLE) - 1)),
        st.tuples(st.just("plan"), st.none()),
        st.tuples(st.just("whole"), st.none()),
        st.tuples(st.just("wait"), st.sampled_from([timedelta(hours=3), timedelta(days=1)])),
    ),
    min_size=4,
    max_size=12,
)


# ---------------------------------------------------------------------------------------------
# Running the steps


@dataclass
class Run:
    """One database, its service, the clock and what the daemon's loop would keep."""

    service: Service
    now: datetime = NOW
    cursor: EventCursor | None = None
    planned_at: datetime | None = None

    def step(self, what: str, arg: Any, files: dict[str, tuple[Kind | None, Path]]) -> None:
        if what == "import":
            self.load(*files[arg])
        elif what == "fact":
            kind, program, person, payload = SINGLE[arg]
            with begin_write(self.service.factory) as session:
                try:
                    record(
                        session,
                        kind=kind,
                        program=program,
                        person=person,
                        at=self.now,
                        actor=ACTOR,
                        source=EventSource.API,
                        payload=payload,
                        programs=PROGRAMS,
                        now=self.now,
                    )
                except RecordError:  # not imported yet, or said already: nothing recorded
                    session.rollback()
        elif what == "wait":
            self.now += arg
        elif what == "whole" or self.cursor is None:
            self.whole()
        else:
            self.tick()

    def load(self, kind: Kind | None, path: Path) -> None:
        with self.service.factory() as session:
            try:
                if kind is None:
                    load_scenario(session, path, programs=PROGRAMS, now=self.now, actor=ACTOR)
                else:
                    import_csv(session, kind, path, now=self.now, actor=ACTOR)
            except ImportErrors:  # grants before their employees, facts before their people
                pass

    def whole(self) -> None:
        """The daemon's whole plan: the event log read up to here, then every part."""
        last = asyncio.run(self.service.last_event_id())
        asyncio.run(self.service.plan(self.now))
        if self.cursor is None:
            self.cursor = EventCursor(low=last)
            self.planned_at = self.now

    def tick(self) -> None:
        """The daemon's incremental plan: what the event log and the clock changed."""
        assert self.cursor is not None and self.planned_at is not None
        ids, scope = asyncio.run(
            self.service.changes(self.cursor.low, self.planned_at, self.now, seen=self.cursor.seen)
        )
        asyncio.run(self.service.plan_scope(self.now, scope, unowned=True))
        self.cursor.advance(ids, time.monotonic())
        self.planned_at = max(self.planned_at, self.now)


def outcome(service: Service, now: datetime) -> dict[str, Any]:
    """Return what must not depend on the timing: live obligations, pending messages, status."""
    with service.factory() as session:
        people = {i: e for i, e in session.execute(select(Person.id, Person.external_id))}
        obligations = sorted(
            (o.program, o.occurrence, people[o.person_id], str(o.kind), o.state, o.due_at)
            for o in session.scalars(select(Obligation).where(Obligation.state != RETIRED))
        )
        pending = sorted(
            (m.identity, m.recipient, m.due_at, m.expires_at)
            for m in session.scalars(
                select(OutboxMessage).where(OutboxMessage.state == OutboxState.PENDING)
            )
        )
        rows = status_rows(session, now)
    status = status_data(rows.obligations, rows.messages, rows.upcoming, rows.failed)
    return {"obligations": obligations, "pending": pending, "status": status}


def check(new_db: Callable[[], Any], tmp: Path, steps: list[Step]) -> None:
    folder = tmp / uuid.uuid4().hex
    folder.mkdir()
    files = _chunks(folder)
    with new_db() as interleaved_url, new_db() as reference_url:
        interleaved = Run(world.service(interleaved_url, folder))
        reference = Run(world.service(reference_url, folder))
        try:
            for what, arg in steps:
                interleaved.step(what, arg, files)
                if what not in ("plan", "whole"):
                    reference.step(what, arg, files)
            interleaved.step("plan", None, files)  # the daemon's reaction to the last change
            reference.step("whole", None, files)
            assert outcome(interleaved.service, interleaved.now) == outcome(
                reference.service, reference.now
            )
        finally:
            asyncio.run(interleaved.service.close())
            asyncio.run(reference.service.close())


EXAMPLES = {"sqlite": 12, "postgres": 4}
WITHDRAWN: list[Step] = [
    ("import", "employees-0"),
    ("import", "third-parties"),
    ("plan", None),
    ("wait", timedelta(days=1)),
    ("fact", 0),
    ("fact", 6),
    ("plan", None),
    ("import", "suppliers-0"),
    ("whole", None),
    ("fact", 7),
    ("wait", timedelta(hours=3)),
]


@pytest.fixture
def new_db(backend: str, request: pytest.FixtureRequest) -> Callable[[], Any]:
    """Return a maker of fresh migrated databases: hypothesis needs one per example."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        folder: Path = request.getfixturevalue("tmp_path")

        @contextmanager
        def sqlite() -> Iterator[str]:
            path = folder / f"{uuid.uuid4().hex}.db"
            shutil.copyfile(template, path)
            yield f"sqlite:///{path}"

        return sqlite
    server: PostgresServer = request.getfixturevalue("postgres_server")
    template_name: str = request.getfixturevalue("postgres_template")

    @contextmanager
    def postgres() -> Iterator[str]:
        name = server.create("tickler_prop", template=template_name)
        try:
            yield server.url(name)
        finally:
            server.drop(name)

    return postgres


def test_any_interleaving_ends_as_one_plan_after_everything(
    backend: str, new_db: Callable[[], Any], tmp_path: Path
) -> None:
    @settings(
        max_examples=EXAMPLES[backend],
        derandomize=True,
        deadline=None,
        database=None,
        # A failing interleaving is at most a dozen steps, readable as it is: no shrinking,
        # which on these examples takes minutes.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(steps=STEPS)
    # Always tried: people planned, then facts that withdraw what was planned for them.
    @example(steps=WITHDRAWN)
    def interleavings(steps: list[Step]) -> None:
        check(new_db, tmp_path, steps)

    interleavings()
