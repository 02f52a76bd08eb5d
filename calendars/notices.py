"""What each person is owed, and when: the pure planning of every outgoing message.

A planner takes a program, a snapshot of the people and of the facts recorded so far (responses,
elections, acknowledgments, terminations, extensions) and ``now``, and returns the complete
set of notices the program calls for, past and future, plus each person's obligation state.
The shell reconciles that set with the outbox: new notices are inserted, pending ones that
are no longer wanted (a supplier responded, an employee elected) are cancelled. Because the
set is recomputed from the facts, planning twice, after a restart or on two replicas, gives the
same identities and sends nothing twice.

Facts dated after ``now`` have not happened yet: that is what lets ``tickler simulate`` replay
a campaign on a virtual clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from calendars.businessdays import BusinessCalendar, calendar
from calendars.clock import local_instant
from calendars.events import Event
from config.facts import FactKind
from config.programs import ProgramBase


@dataclass(frozen=True, slots=True, kw_only=True)
class PersonView:
    """A supplier, employee or third party as the planners see them."""

    id: int
    kind: str  # "supplier" | "employee" | "third_party"
    external_id: str
    name: str
    email: str
    country: str | None = None
    hire_date: date | None = None
    termination_date: date | None = None
    is_director: bool = False
    is_executive_officer: bool = False
    role: str | None = None
    manager_email: str | None = None
    tier: str | None = None
    owner_email: str | None = None
    start_date: date | None = None
    locale: str | None = None  # the language of their emails; None: the default

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.external_id}"

    def employed_on(self, day: date) -> bool:
        """Return whether the person is still employed on ``day``.

        ``termination_date`` is the day employment ended: someone terminated on the grant date
        is not employed on it.
        """
        return self.termination_date is None or day < self.termination_date


@dataclass(frozen=True, slots=True, kw_only=True)
class GrantView:
    id: int
    person_id: int
    external_id: str
    grant_date: date
    unexercised: int
    price: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class Fact:
    """A recorded event from the event log."""

    id: int
    kind: FactKind
    at: datetime
    program: str | None
    person_id: int | None
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Team:
    """The internal addresses notices go to, and the domain their Message-IDs are on."""

    compliance: str
    compliance_officer: str
    #: The right-hand side of every planned Message-ID (TICKLER_MESSAGE_ID_DOMAIN).
    domain: str = "tickler"


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """What the planners read: people, grants and facts, as of one moment."""

    people: Sequence[PersonView]
    grants: Sequence[GrantView]
    facts: Sequence[Fact]
    team: Team
    # SEQUENCE of each event (by event key) and the time it last changed, from storage.
    versions: Mapping[str, tuple[int, datetime]] = field(default_factory=dict)
    # Each event as storage last kept it, by event key: a removed one as it was before its
    # removal (what its cancellation shows). Rows stored before storage kept events have none.
    events: Mapping[str, Event] = field(default_factory=dict)

    def facts_until(self, now: datetime, program: str, kinds: Iterable[FactKind]) -> list[Fact]:
        wanted = set(kinds)
        return sorted(
            (f for f in self.facts if f.at <= now and f.program == program and f.kind in wanted),
            key=lambda f: (f.at, f.id),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice:
    """One message a program calls for, and the outbox row that sends it.

    ``identity`` is program/occurrence/recipient_key/step: planning the same message twice
    gives the same identity, which the outbox stores once. The outbox keeps every field as it
    is and a claim gives the same ``Notice`` back (``jobs.storage.outbox``), so a new field is
    declared here and nowhere else but its column. ``context`` must be JSON-serialisable (dates
    as ISO text); ``expires`` is when sending loses its purpose.
    """

    program: str
    occurrence: str
    person_id: int | None
    recipient_key: str
    recipient: str
    job: str
    step: str
    template: str
    context: Mapping[str, Any]
    due: datetime
    expires: datetime
    #: The domain of its Message-ID (``Team.domain``). Not stored apart: the outbox keeps the
    #: Message-ID, and a claim reads the domain back from it.
    domain: str = "tickler"
    # Derived once here, not on each read: planning compares identities by the thousand and
    # delivery reads both for every message it sends.
    identity: str = field(init=False)
    #: A deterministic Message-ID: a resend after a crash carries the same one.
    message_id: str = field(init=False)

    def __post_init__(self) -> None:
        identity = f"{self.program}/{self.occurrence}/{self.recipient_key}/{self.step}"
        digest = hashlib.sha256(identity.encode()).hexdigest()[:32]
        object.__setattr__(self, "identity", identity)
        object.__setattr__(self, "message_id", f"{digest}.{self.program}@{self.domain}")
        for name, value in (("due", self.due), ("expires", self.expires)):
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError(f"{identity}: {name} {value.isoformat()} is naive")


@dataclass(frozen=True, slots=True, kw_only=True)
class ObligationState:
    """A person's obligation under a program occurrence, as the facts leave it."""

    program: str
    occurrence: str
    person_id: int
    kind: FactKind  # the fact that discharges it: a response, an election, an acknowledgment
    state: str
    due: datetime | None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    notices: list[Notice]
    obligations: list[ObligationState]


def at_send_time(program: ProgramBase, day: date) -> datetime:
    """Return the UTC instant a notice scheduled for ``day`` goes out (the program's send_time)."""
    return local_instant(day, program.send_time, program.zone).astimezone(UTC)


def utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


DAY = timedelta(days=1)
# A notice that had expired this long before it was first planned is history (a past campaign,
# a yearly cycle long closed), not a backlog: planning does not queue it, so a planner may
# leave it out.
HISTORY = timedelta(days=7)


@dataclass(frozen=True, slots=True, kw_only=True)
class SendDays:
    """The days a program's scheduled emails go out on: its send calendar's business days."""

    business: BusinessCalendar
    zone: ZoneInfo

    def place(self, due: datetime, expires: datetime) -> datetime:
        """Return when a send scheduled at ``due`` goes out: on a business day, same wall time.

        A send that falls on a weekend or holiday (its local date in the program's zone) moves
        forward to the next business day; when that would reach ``expires`` (a reminder before
        a deadline that falls on a closed day, or the day after one), it moves back to the last
        business day before instead. The wall-clock time is kept, so across DST 09:00 stays
        09:00; a time the DST gap skips moves forward by the gap.
        """
        local = due.astimezone(self.zone)
        if self.business.is_business_day(local.date()):
            return due
        ahead = local_instant(self.business.on_or_after(local.date()), local.time(), self.zone)
        if ahead < expires:
            return utc(ahead)
        return utc(local_instant(self.business.before(local.date()), local.time(), self.zone))


def send_days(program: ProgramBase) -> SendDays | None:
    """Return the days ``program`` sends on, or None when it sends on any day."""
    if program.send_on_closed_days:
        return None
    return SendDays(
        business=calendar(program.send_calendar, program.extra_closures), zone=program.zone
    )


@dataclass(frozen=True, slots=True)
class NoticeMaker:
    """Append a program occurrence's notices to ``out``, each with the shared ``base`` context.

    The recipient is the person unless ``to`` says otherwise (an escalation goes to an internal
    owner); the template is the job's name.
    """

    program: str
    occurrence: str
    base: Mapping[str, Any]
    out: list[Notice]
    #: The program's send days: a scheduled notice due on another day moves to one.
    days: SendDays | None = None
    #: The domain of the notices' Message-IDs (``Team.domain``).
    domain: str = "tickler"

    def __call__(
        self,
        person: PersonView | None,
        job: str,
        step: str,
        due: datetime,
        expires: datetime,
        /,
        *,
        to: str | None = None,
        at_once: bool = False,
        **context: Any,
    ) -> None:
        """Append one notice; ``at_once`` for an answer to a fact or a change, never moved."""
        if self.days is not None and not at_once:
            due = self.days.place(due, expires)
        if to is not None:
            key = address = to
        elif person is not None:
            key, address = person.key, person.email
            if person.locale:  # written in the person's language (an owner's: the default)
                context = {**context, "locale": person.locale}
        else:
            raise ValueError(f"{self.program}/{job}: a notice needs a person or an address")
        self.out.append(
            Notice(
                program=self.program,
                occurrence=self.occurrence,
                person_id=person.id if person else None,
                recipient_key=key,
                recipient=address,
                job=job,
                step=step,
                template=job,
                context={**self.base, "name": person.name if person else "", **context},
                due=due,
                expires=expires,
                domain=self.domain,
            )
        )
