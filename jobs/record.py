"""Record what happened: responses, elections, acknowledgments, terminations, hires, extensions.

Every fact is validated against the programs and the people, then appended to the event log
in the same transaction as its effects (a termination sets the person's termination date, a
hire creates the person). Bad input raises ``RecordError`` with an HTTP-like status and
changes nothing. The daemon notices the new event-log row and replans within seconds.

Server time decides. Each row keeps the time the fact claims (``at``) and the server's clock
when it was recorded (``received_at``); rules with a deadline judge the server's clock, so a
caller's clock cannot make a late election timely. Recording a fact as of an earlier time is
a backfill: a capability of its own (the ``backfill`` API scope, ``tickler record
--backfill``, the demo scenario's history), flagged in the row and logged, and still judged
at its own date where the rule says so (an election dated after the cutoff stays late).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from calendars import offer_notices
from config.dates import plausible
from config.emails import parse_email
from config.facts import FactKind
from config.programs import ConflictMinerals, Fcpa, OptionExchange, Program
from jobs.storage import Session, facts, outbox, people
from jobs.storage.db import EventLog, EventSource, FcpaRole, Person, PersonKind
from jobs.storage.snapshot import load_facts, load_snapshot, of_person

log = logging.getLogger("tickler")

# A fact may be dated a little off the server's clock (clients' clocks drift), not more: further
# in the past it is a backfill, further in the future it has not happened.
CLOCK_SKEW = timedelta(minutes=5)


class RecordError(Exception):
    """A fact that cannot be recorded; ``status`` is 404, 409 or 422 as an HTTP API answers."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def find_person(session: Session, key: str) -> Person:
    """Return the person named ``kind:external_id`` (e.g. ``supplier:S001``)."""
    kind, sep, external_id = key.partition(":")
    if not sep or kind not in {k.value for k in PersonKind}:
        raise RecordError(
            422, f"person {key!r} must be KIND:ID with KIND supplier, employee or third_party"
        )
    person = people.find(session, PersonKind(kind), external_id)
    if person is None:
        raise RecordError(404, f"no {kind} with id {external_id!r}")
    return person


def record(
    session: Session,
    *,
    kind: FactKind | str,
    program: str | None,
    person: str | None,
    at: datetime,
    actor: str,
    source: str,
    payload: Mapping[str, Any],
    programs: Mapping[str, Program],
    now: datetime,
    may_backfill: bool = False,
) -> int:
    """Validate one fact, apply its effects and append it to the event log; return its id.

    ``now`` is the server's clock, stored as the fact's ``received_at``. A fact dated more than
    ``CLOCK_SKEW`` before it is a backfill, refused (403) unless the caller ``may_backfill``;
    any other fact is judged at ``now`` (or at ``at`` when later) and may not be dated before a
    fact already recorded for the same person and program. ``kind`` may also be a kind's
    value as text (an imported scenario row): it is checked here.
    """
    if kind not in set(FactKind):
        raise RecordError(422, f"kind {kind!r} is not one of {', '.join(FactKind)}")
    kind = FactKind(kind)
    if at.tzinfo is None:
        raise RecordError(422, "the time of the event needs a UTC offset")
    _plausible(at.date(), "the event's date")
    if at > now + CLOCK_SKEW:
        raise RecordError(422, f"the event is dated {at.isoformat()}, in the future")
    # A backfill the caller may make but did not need (a date within the skew) is a plain fact.
    backfill = at < now - CLOCK_SKEW
    if backfill and not may_backfill:
        raise RecordError(
            403,
            f"the event is dated {at.isoformat()}, more than {CLOCK_SKEW} before the server's "
            f"time {now.isoformat()}: recording a fact as of an earlier time is a backfill, "
            "which this caller may not do",
        )
    # When a rule with a deadline looks: the server's clock, unless this is a backfill.
    judged = at if backfill else max(at, now)
    target = programs.get(program) if program else None
    if program and target is None:
        raise RecordError(404, f"no program {program!r}; known: {', '.join(sorted(programs))}")
    data = dict(payload)
    who: Person | None = None
    if kind == FactKind.HIRE:
        who = _hire(session, data, now)
    elif kind in (FactKind.OFFER_EXTENSION, FactKind.EXTENSION_RETRACTION):
        # An extension concerns the whole offer, not one person.
        if person is not None:
            raise RecordError(422, f"an {kind} names no person")
        _in_order(session, program, None, at, backfill)
        if kind == FactKind.OFFER_EXTENSION:
            _extension(session, target, data, judged=judged, now=now)
        elif backfill:
            raise RecordError(422, "a retraction takes effect when it is recorded: no backfill")
        else:
            _retraction(session, target, data, now)
    else:
        if person is None:
            raise RecordError(422, f"a {kind} names a person (KIND:ID)")
        who = find_person(session, person)
        _in_order(session, program, who.id, at, backfill)
        _check(session, kind, target, who, at, judged, data)
        if kind == FactKind.TERMINATION:
            who.termination_date = _date(data, "date")
            who.updated_at = now
    entry = EventLog(
        at=at,
        received_at=now,
        backfill=backfill,
        actor=actor,
        source=EventSource(source),
        kind=kind.value,
        program=program,
        person_id=who.id if who else None,
        payload=data,
    )
    people.insert(session, entry)
    if backfill:
        log.info(
            "backfilled",
            extra={
                "action": "backfilled",
                "event_id": entry.id,
                "kind": kind.value,
                "program": program,
                "person": person,
                "at": at.isoformat(),
                "received_at": now.isoformat(),
                "actor": actor,
                "source": str(source),
            },
        )
    return entry.id


def _in_order(
    session: Session, program: str | None, person_id: int | None, at: datetime, backfill: bool
) -> None:
    """Refuse a fact dated before one already recorded for the same person and program,
    unless it is a backfill: the log's order is the order things happened in."""
    if backfill:
        return
    latest = facts.latest_at(session, program=program, person_id=person_id)
    if latest is not None and at < latest:
        raise RecordError(
            409,
            f"the event is dated {at.isoformat()}, before a fact already recorded for the same "
            f"person and program ({latest.isoformat()}); only a backfill may be slotted earlier",
        )


def _check(
    session: Session,
    kind: FactKind,
    target: Program | None,
    who: Person,
    at: datetime,
    judged: datetime,
    data: dict[str, Any],
) -> None:
    if kind == FactKind.CMRT_RESPONSE:
        _need(target, ConflictMinerals, kind)
        _person_kind(who, kind, PersonKind.SUPPLIER)
        complete = data.setdefault("complete", True)
        if not isinstance(complete, bool):
            raise RecordError(422, "payload.complete must be true or false")
        for name in ("issues", "file"):
            if name in data and not isinstance(data[name], str):
                raise RecordError(422, f"payload.{name} must be text")
    elif kind in (FactKind.ELECTION, FactKind.WITHDRAWAL):
        offer = _need(target, OptionExchange, kind)
        _person_kind(who, kind, PersonKind.EMPLOYEE)
        # That person's rows only, not the company's: this runs for every election the API takes.
        mine = of_person(session, who)
        if not offer_notices.holdings(offer, mine.people, mine.grants):
            raise RecordError(409, f"{who.kind}:{who.external_id} is not eligible for {offer.id}")
        known = mine.facts
        late = offer_notices.late_election_error(offer, known, judged)
        if late:
            raise RecordError(409, f"{kind} refused: {late}")
        choices = [
            f
            for f in known
            if f.program == offer.id
            and f.at <= at
            and f.kind in (FactKind.ELECTION, FactKind.WITHDRAWAL)
        ]
        if kind == FactKind.WITHDRAWAL and offer_notices.elected_at(choices, who.id) is None:
            raise RecordError(409, f"{who.external_id} has no election in force to withdraw")
    elif kind == FactKind.FCPA_ACK:
        policy = _need(target, Fcpa, kind)
        if who.kind == PersonKind.SUPPLIER:
            raise RecordError(422, "suppliers do not acknowledge the FCPA policy")
        version = data.get("policy_version", policy.policy_version)
        if version != policy.policy_version:
            raise RecordError(
                422, f"policy version {version!r} is not the current one ({policy.policy_version})"
            )
        data["policy_version"] = version
    elif kind == FactKind.TERMINATION:
        day = _date(data, "date")
        data["date"] = day.isoformat()


def _extension(
    session: Session,
    target: Program | None,
    data: dict[str, Any],
    *,
    judged: datetime,
    now: datetime,
) -> None:
    offer = _need(target, OptionExchange, FactKind.OFFER_EXTENSION)
    try:
        cutoff = datetime.fromisoformat(str(data.get("cutoff")))
    except ValueError:
        raise RecordError(
            422, "payload.cutoff must be a local date-time, e.g. 2003-02-03T21:00:00"
        ) from None
    if cutoff.tzinfo is not None:
        raise RecordError(422, "payload.cutoff is local time in the program's zone: no offset")
    _plausible(cutoff.date(), "payload.cutoff")
    refused = offer_notices.extension_error(
        offer, load_facts(session), cutoff, judged=judged, now=now
    )
    if refused:
        raise RecordError(409, refused)
    data["cutoff"] = cutoff.isoformat()


def _retraction(
    session: Session, target: Program | None, data: dict[str, Any], now: datetime
) -> None:
    """Undo the latest extension in force, while nothing it caused has been sent."""
    offer = _need(target, OptionExchange, FactKind.EXTENSION_RETRACTION)
    extension, refused = offer_notices.retraction_error(offer, load_facts(session), now)
    if extension is None or refused:
        raise RecordError(409, refused or "")
    named = data.get("extension", extension.id)
    if named != extension.id:
        raise RecordError(
            409,
            f"payload.extension {named!r} is not the latest extension in force "
            f"(event {extension.id}): retract that one first",
        )
    # Every message of an offer carries its cutoff and the dates that follow from it, so
    # anything of the offer sent (or on its way) since the extension was recorded told
    # someone the extended dates: retracting it now would contradict what they were told.
    received = facts.received_at(session, extension.id)
    sent = outbox.sent_since(session, offer.id, received)
    if sent:
        raise RecordError(
            409,
            f"the extension to {extension.payload.get('cutoff')} (event {extension.id}) cannot "
            f"be retracted: {sent} message(s) of {offer.id} sent since it was recorded at "
            f"{received.isoformat()} told people its dates",
        )
    data.clear()
    data.update(extension=extension.id, cutoff=extension.payload.get("cutoff"))


def _need(target: Program | None, cls: type[Any], kind: str) -> Any:
    if not isinstance(target, cls):
        raise RecordError(422, f"a {kind} belongs to a {cls.__name__} program")
    return target


def _person_kind(who: Person, kind: str, expected: PersonKind) -> None:
    if who.kind != expected:
        raise RecordError(422, f"a {kind} is made by a {expected.value}, not a {who.kind.value}")


def _date(data: Mapping[str, Any], name: str) -> date:
    try:
        day = date.fromisoformat(str(data[name]))
    except (KeyError, ValueError):
        raise RecordError(422, f"payload.{name} must be a date (YYYY-MM-DD)") from None
    return _plausible(day, f"payload.{name}")


def _plausible(day: date, what: str) -> date:
    """Refuse dates no compliance record has: the rules would compute past the calendar's end."""
    try:
        return plausible(day)
    except ValueError as exc:
        raise RecordError(422, f"{what}: {exc}") from None


def _hire(session: Session, data: dict[str, Any], now: datetime) -> Person:
    kind = data.get("kind", "employee")
    if kind not in ("employee", "third_party"):
        raise RecordError(422, "payload.kind must be employee or third_party")
    for name in ("external_id", "name", "email"):
        value = data.get(name)
        if not isinstance(value, str) or not value.strip() or "\r" in value or "\n" in value:
            raise RecordError(422, f"payload.{name} is required text on one line")
    for name in ("email", "manager_email"):
        value = data.get(name)
        if value is None and name == "manager_email":
            continue
        if not isinstance(value, str):
            raise RecordError(422, f"payload.{name} must be text")
        try:
            parse_email(value)
        except ValueError as exc:
            raise RecordError(422, f"payload.{name}: {exc}") from None
    role = data.get("role", "employee" if kind == "employee" else "agent")
    if role not in {r.value for r in FcpaRole}:
        raise RecordError(422, f"payload.role {role!r} is not a known role")
    if people.find(session, PersonKind(kind), data["external_id"]) is not None:
        raise RecordError(409, f"{kind}:{data['external_id']} already exists")
    start = _date(data, "start_date")
    person = Person(
        kind=PersonKind(kind),
        external_id=data["external_id"],
        name=data["name"],
        email=data["email"],
        country=data.get("country"),
        role=FcpaRole(role),
        hire_date=start if kind == "employee" else None,
        start_date=start,
        manager_email=data.get("manager_email"),
        created_at=now,
        updated_at=now,
        is_director=role == "director",
        is_executive_officer=False,
    )
    people.insert(session, person)
    data["start_date"] = start.isoformat()
    return person


#: The import whose rows are people of each kind (``jobs.imports.Kind``).
_IMPORTED_AS = {
    PersonKind.SUPPLIER: "suppliers",
    PersonKind.EMPLOYEE: "employees",
    PersonKind.THIRD_PARTY: "third-parties",
}


def correct_email(
    session: Session,
    person: str,
    email: str,
    *,
    now: datetime,
    actor: str,
    source: EventSource,
    reason: str = "",
) -> str | None:
    """Correct the address of ``person`` (KIND:ID); return the change, or None if none.

    Contacts are data: the change is written as an import of that one row would write it
    (``updated_at`` and an ``import`` row in the event log, ``by_hand`` with the reason
    instead of a file), so planning replans the person the way it replans the people an
    import wrote: every message still pending is re-addressed, and history keeps the
    address each sent message went to. Raises ``RecordError`` (404 an unknown person, 422 a
    bad address) and changes nothing then. Never commits.
    """
    try:
        address = parse_email(email.strip())
    except ValueError as exc:
        raise RecordError(422, f"email: {exc}") from None
    who = find_person(session, person)
    if who.email == address:
        return None
    change = f"{who.kind}:{who.external_id} email: {who.email} -> {address}"
    who.email = address
    who.updated_at = now
    people.insert(
        session,
        EventLog(
            at=now,
            received_at=now,
            actor=actor,
            source=source,
            kind="import",
            program=None,
            person_id=None,
            payload={
                "kind": _IMPORTED_AS[who.kind],
                "by_hand": reason,
                "created": 0,
                "updated": 1,
                "unchanged": 0,
                "changes": [change],
                "changes_omitted": 0,
            },
        ),
    )
    return change


def offer_change(session: Session, offer: Program, event_id: int) -> list[str]:
    """Describe what the extension or retraction ``event_id`` (recorded in this transaction,
    not yet committed) changes in ``offer``: for a person to confirm before it is committed."""
    if not isinstance(offer, OptionExchange):  # record() has refused it already
        return []
    known = load_facts(session)
    before = offer_notices.with_recorded_extensions(offer, [f for f in known if f.id != event_id])
    after = offer_notices.with_recorded_extensions(offer, known)
    lines = [f"  {what}: {old} -> {new}" for what, old, new in offer_notices.moves(before, after)]
    snapshot = load_snapshot(session, team=None)
    eligible = len(offer_notices.holdings(offer, snapshot.people, snapshot.grants))
    extended = len(after.extensions) > len(before.extensions)
    lines.append(
        f"  {eligible} eligible employee(s): "
        + (
            "each gets an extension notice; reminders not yet sent move to the new cutoff"
            if extended
            else "the extension notices and reminders not yet sent are cancelled"
        )
    )
    return lines
