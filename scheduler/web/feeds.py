"""Feeds: which events each published calendar holds, their revisions, and its bytes.

Two kinds of feed, named so that a name says what it shows:

- ``program:{program_id}:{audience}``: a program's events for one audience (the compliance
  team's Form SD calendar, the employees' offer calendar);
- ``person:{kind}:{external_id}``: one person's own calendar (``calendars.personal``).

SEQUENCE and LAST-MODIFIED are the events' stored revisions (``calendars.versions``, kept in
``event_versions``). Program events are revised under the program id by the planning job, so
feeds and invitations agree; a person's own events under ``person:{id}`` with keys
``{program}/{event key}``. Rendering finds the revisions up to date (or, for a person's own
events, which no plan computes, or a program not planned yet, brings them up to date through
the same rule and the same ``versions.write``), so the bytes depend on stored state alone and
stay the same until an event does: that is what makes the ETag strong.

A rendered feed carries a ``stamp``, a cheap summary of what it was built from (last event-log
id, the count and sequence total of its version rows, the day); the HTTP layer re-renders only
when the stamp moved.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from calendars.events import Audience, Event, EventKind
from calendars.ical import FeedItem, FeedMeta, render_feed
from calendars.kinds import effective, expand_program, personal_calendar
from calendars.notices import PersonView, Snapshot, Team
from calendars.versions import revise
from config.programs import Program
from jobs.storage import Session, SessionFactory, facts, snapshot, versions
from jobs.storage.db import PersonKind, begin_write
from jobs.storage.snapshot import load_facts

PROGRAM = "program"
PERSON = "person"
NAME_MAX = 128  # feed_tokens.feed
_LABELS = {
    Audience.COMPLIANCE: "compliance team",
    Audience.SUPPLIERS: "suppliers",
    Audience.EMPLOYEES: "employees",
    Audience.REPRESENTATIVES: "representatives and third parties",
}
_COLORS = {
    Audience.COMPLIANCE: "#8e24aa",
    Audience.SUPPLIERS: "#ef6c00",
    Audience.EMPLOYEES: "#1e88e5",
    Audience.REPRESENTATIVES: "#43a047",
}
_PERSON_COLOR = "#00897b"

Stamp = tuple[int, int, int, str]


class FeedError(Exception):
    """Not a feed: a malformed name, an unknown program or audience, an unknown person."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgramFeed:
    program: str
    audience: Audience

    @property
    def name(self) -> str:
        return f"{PROGRAM}:{self.program}:{self.audience}"


@dataclass(frozen=True, slots=True, kw_only=True)
class PersonFeed:
    kind: PersonKind
    external_id: str

    @property
    def name(self) -> str:
        return f"{PERSON}:{self.kind}:{self.external_id}"


FeedRef = ProgramFeed | PersonFeed


def parse_feed(name: str) -> FeedRef:
    """Parse a feed name; raise ``FeedError`` saying what is wrong with it."""
    prefix, _, rest = name.partition(":")
    if len(name) > NAME_MAX:
        raise FeedError(f"feed name longer than {NAME_MAX} characters")
    if prefix == PROGRAM:
        program, sep, audience = rest.rpartition(":")
        if not sep or not program:
            raise FeedError(f"{name!r}: a program feed is program:PROGRAM_ID:AUDIENCE")
        if audience not in {a.value for a in Audience}:
            choices = ", ".join(a.value for a in Audience)
            raise FeedError(f"{name!r}: audience {audience!r} is not one of {choices}")
        return ProgramFeed(program=program, audience=Audience(audience))
    if prefix == PERSON:
        kind, sep, external_id = rest.partition(":")
        if not sep or not external_id or kind not in {k.value for k in PersonKind}:
            choices = ", ".join(k.value for k in PersonKind)
            raise FeedError(f"{name!r}: a person feed is person:KIND:ID with KIND one of {choices}")
        return PersonFeed(kind=PersonKind(kind), external_id=external_id)
    raise FeedError(f"{name!r}: a feed name starts with program: or person:")


@dataclass(frozen=True, slots=True, kw_only=True)
class Rendered:
    """A feed's bytes and what HTTP needs to answer conditional requests for it."""

    name: str
    body: bytes
    etag: str
    last_modified: datetime | None
    scopes: tuple[str, ...]
    stamp: Stamp


@dataclass(frozen=True, slots=True, kw_only=True)
class _Plan:
    """What a feed shows before versions are attached: events per version scope."""

    meta: FeedMeta
    tracked: dict[str, list[Event]]  # scope -> every live event versioned there
    shown: list[tuple[str, Event]]  # (scope, event) published live
    withdrawn: list[tuple[str, Event]]  # (scope, event) published cancelled, if ever live


class FeedSource:
    """Build feeds from the database for the configured programs; one per process."""

    def __init__(
        self,
        factory: SessionFactory,
        programs: Sequence[Program],
        *,
        team: Team,
        timezone: str,
    ) -> None:
        self.factory = factory
        self.programs = {p.id: p for p in programs}
        self.team = team
        self.timezone = timezone

    def check(self, session: Session, name: str) -> FeedRef:
        """Return the parsed feed, or raise ``FeedError`` if it names nothing that exists."""
        ref = parse_feed(name)
        if isinstance(ref, ProgramFeed):
            if ref.program not in self.programs:
                known = ", ".join(sorted(self.programs))
                raise FeedError(f"{name!r}: no program {ref.program!r}; known: {known}")
        elif snapshot.person(session, ref.kind, ref.external_id) is None:
            raise FeedError(f"{name!r}: no {ref.kind} with id {ref.external_id!r}")
        return ref

    def program_feeds(self, now: datetime) -> list[str]:
        """Return the name of every program feed that has at least one event."""
        names: set[str] = set()
        for program in self.programs.values():
            for event in expand_program(program, now=now):
                names.update(
                    ProgramFeed(program=program.id, audience=a).name for a in event.audiences
                )
        return sorted(names)

    def render(self, name: str, now: datetime) -> Rendered:
        """Return the feed ``name`` as of ``now``; raise ``FeedError`` if it does not exist."""
        # Each part of the stamp is read before the data it summarises: a change that lands
        # in between leaves a stamp that no longer matches, and the next request re-renders.
        with self.factory() as session:
            last_event = facts.last_id(session)
            ref = self.check(session, name)
            plan = self._plan(session, ref, now)
            scopes = tuple(sorted(plan.tracked))
            totals = versions.totals(session, scopes)
            stored = versions.load(session, scopes)
        if any(revise(stored[scope], events, now) for scope, events in plan.tracked.items()):
            self._track(plan.tracked, now)
            with self.factory() as session:
                totals = versions.totals(session, scopes)
                stored = versions.load(session, scopes)
        items = _items(plan, stored)
        body = render_feed(items, plan.meta)
        return Rendered(
            name=name,
            body=body,
            etag=f'"{hashlib.sha256(body).hexdigest()[:40]}"',
            last_modified=max((item.last_modified for item in items), default=None),
            scopes=scopes,
            stamp=(last_event, *totals, feed_day(now)),
        )

    def stamp(self, session: Session, scopes: Sequence[str], now: datetime) -> Stamp:
        """Return what a feed over ``scopes`` is built from, cheaply (indexed lookups)."""
        return (facts.last_id(session), *versions.totals(session, scopes), feed_day(now))

    def _plan(self, session: Session, ref: FeedRef, now: datetime) -> _Plan:
        if isinstance(ref, ProgramFeed):
            return self._program_plan(session, ref, now)
        person = snapshot.person(session, ref.kind, ref.external_id)
        if person is None:
            raise FeedError(f"{ref.name!r}: no such person")
        return self._person_plan(session, person, now)

    def program_events(
        self, session: Session, program_id: str, now: datetime
    ) -> tuple[list[Event], list[Event]]:
        """Return a program's events as of ``now`` (recorded extensions applied), and those of
        them its feeds publish, for one audience or another (the dashboard's calendar)."""
        program = self.programs[program_id]
        events = expand_program(effective(program, load_facts(session)), now=now)
        # A vesting schedule without a person is `tickler plan`'s example grant, not a date
        # anyone owes: personal feeds carry the real ones.
        published = [e for e in events if not (e.kind == EventKind.VESTING and not e.person)]
        return events, published

    def _program_plan(self, session: Session, ref: ProgramFeed, now: datetime) -> _Plan:
        program = self.programs[ref.program]
        events, published = self.program_events(session, program.id, now)
        label = _LABELS[ref.audience]
        meta = FeedMeta(
            name=f"{program.name}: {label}",
            description=f"{program.name}: the dates for the {label}, published by Tickler.",
            color=_COLORS[ref.audience],
            timezone=program.timezone,
        )
        shown = [(program.id, e) for e in published if ref.audience in e.audiences]
        return _Plan(meta=meta, tracked={program.id: events}, shown=shown, withdrawn=[])

    def _person_plan(self, session: Session, person: PersonView, now: datetime) -> _Plan:
        known = Snapshot(
            people=[person],
            grants=snapshot.load_grants(session, person.id),
            facts=load_facts(session),
            team=self.team,
        )
        calendar = personal_calendar(list(self.programs.values()), person, known, now)
        tracked: dict[str, list[Event]] = {}
        for program_id in sorted({e.program for e in calendar.shared}):
            program = effective(self.programs[program_id], known.facts)
            tracked[program_id] = expand_program(program, now=now)
        scope = f"{PERSON}:{person.id}"
        tracked[scope] = [_scoped(o.event) for o in calendar.own if o.live]
        meta = FeedMeta(
            name=f"{person.name}: compliance dates",
            description=(
                f"The dates {person.name} is owed or owes under the company's compliance "
                "programs, published by Tickler."
            ),
            color=_PERSON_COLOR,
            timezone=self.timezone,
        )
        return _Plan(
            meta=meta,
            tracked=tracked,
            shown=[(e.program, e) for e in calendar.shared]
            + [(scope, o.event) for o in calendar.own if o.live],
            withdrawn=[(scope, o.event) for o in calendar.own if not o.live],
        )

    def _track(self, tracked: Mapping[str, Sequence[Event]], now: datetime) -> None:
        # Read again under the write lock: another renderer or the planner may have revised
        # these events since; the upsert keeps the higher SEQUENCE if two write at once.
        with begin_write(self.factory) as session:
            stored = versions.load(session, list(tracked))
            for scope, events in tracked.items():
                versions.write(session, scope, revise(stored[scope], events, now))


def _scoped(event: Event) -> Event:
    """Return ``event`` keyed as stored under a person's scope: ``{program}/{key}``."""
    return dataclasses.replace(event, key=f"{event.program}/{event.key}")


def feed_day(now: datetime) -> str:
    """Return the part of a stamp that moves with the day.

    Continuous programs publish a horizon that moves with it.
    """
    return now.date().isoformat()


def _items(plan: _Plan, stored: versions.Revisions) -> list[FeedItem]:
    items = []
    for scope, event in plan.shown:
        key = event.key if scope == event.program else _scoped(event).key
        row = stored[scope][key]
        items.append(FeedItem(event=event, sequence=row.sequence, last_modified=row.last_modified))
    for scope, event in plan.withdrawn:
        found = stored.get(scope, {}).get(_scoped(event).key)
        if found is not None and found.cancelled:
            items.append(
                FeedItem(
                    event=event,
                    sequence=found.sequence,
                    last_modified=found.last_modified,
                    cancelled=True,
                )
            )
    return items
