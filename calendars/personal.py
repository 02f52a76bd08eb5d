"""One person's own calendar: the dated events a personal feed publishes.

Pure: a program, the person, a snapshot of the facts and ``now`` in; events out. The same
planners that decide which emails a person is owed (``offer_notices``, ``fcpa_notices``) decide
which of their events are live, so a feed never promises a vesting tranche that no email will
announce.

Events come in two sorts. *Shared* events are the program's own (the offer's cutoff, a wave's
response due date): same uid as in the program feeds and invitations, versioned with the
program. *Own* events exist for this person only (a vesting tranche with its share count, a
follow-up reminder, an acknowledgment due date); each comes with ``live``: False when it is no
longer owed (the election was withdrawn, the survey answered, the relationship ended), which
feeds publish as STATUS:CANCELLED if they ever published it live.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta

from calendars import cmrt_notices, fcpa_notices, offer_notices
from calendars import conflict_minerals as cm
from calendars import option_exchange as ox
from calendars.events import Audience, Event, EventKind, day_event
from calendars.fcpa_notices import HORIZON, cycles
from calendars.notices import Fact, PersonView, Snapshot, at_send_time, send_days
from config.facts import FactKind
from config.programs import ConflictMinerals, Fcpa, OptionExchange

_OWN = frozenset({Audience.COMPLIANCE})


@dataclass(frozen=True, slots=True, kw_only=True)
class OwnEvent:
    """An event that belongs to one person; ``live`` is False once it is no longer owed."""

    event: Event
    live: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class PersonalCalendar:
    shared: list[Event]
    own: list[OwnEvent]


def offer_dates(
    program: OptionExchange,
    person: PersonView,
    snapshot: Snapshot,
    now: datetime,
    result: PersonalCalendar,
) -> None:
    """The offer's dates for an eligible employee, and the vesting of their new grant.

    Every tranche of the grant an election would bring is a candidate; the planner's vesting
    notices say which are live (an election in force, employed on the grant and vesting dates).
    """
    if person.kind != "employee":
        return
    offer = offer_notices.with_recorded_extensions(
        program, [f for f in snapshot.facts if f.at <= now]
    )
    holders = offer_notices.holdings(offer, snapshot.people, snapshot.grants)
    if not holders:
        return
    result.shared.extend(
        e
        for e in ox.expand(offer)
        if Audience.EMPLOYEES in e.audiences and e.kind != EventKind.VESTING
    )
    plan = offer_notices.plan(program, snapshot, now)
    live = {int(n.context["tranche"]) for n in plan.notices if n.job == "vesting_notice"}
    grant = ox.offer_dates(offer).grant
    for event in ox.vesting_events(
        offer, shares=holders[0].new_shares, grant=grant, person=person.key
    ):
        result.own.append(OwnEvent(event=event, live=int(event.details["tranche"]) in live))


def fcpa_dates(
    program: Fcpa, person: PersonView, snapshot: Snapshot, now: datetime, result: PersonalCalendar
) -> None:
    """Each acknowledgment the person owes; those after the relationship ended are cancelled."""
    if person.role not in program.roles:
        return
    until = now.astimezone(program.zone).date() + HORIZON
    live = {c.key for c in cycles(program, person, until=until)}
    states = {o.occurrence: o for o in fcpa_notices.plan(program, snapshot, now).obligations}
    for cycle in cycles(program, dataclasses.replace(person, termination_date=None), until=until):
        if cycle.onboarding:
            title = "FCPA policy: first acknowledgment due"
            text = (
                f"Read the FCPA policy (version {program.policy_version}) and sign the "
                f"acknowledgment by {cycle.due}."
            )
        else:
            title = "FCPA policy: yearly acknowledgment due"
            text = (
                f"Renew your acknowledgment of the FCPA policy (version {program.policy_version}) "
                f"by {cycle.due}: sign it again this year."
            )
        state = states.get(cycle.key)
        acknowledged = state.details.get("acknowledged_at") if state else None
        if acknowledged:
            day = datetime.fromisoformat(str(acknowledged)).astimezone(program.zone).date()
            text += f" Acknowledged on {day}: nothing more to do."
        event = day_event(
            program=program.id,
            key=f"ack/{person.key}/{cycle.key}",
            kind=EventKind.FCPA_ACK_DUE,
            title=title,
            day=cycle.due,
            timezone=program.timezone,
            audiences=_OWN,
            description=text,
            person=person.key,
            details={"policy_version": program.policy_version, "onboarding": cycle.onboarding},
        )
        result.own.append(OwnEvent(event=event, live=cycle.key in live))


def cmrt_dates(
    program: ConflictMinerals,
    person: PersonView,
    snapshot: Snapshot,
    now: datetime,
    result: PersonalCalendar,
) -> None:
    """A supplier's survey dates, the follow-ups it would get and any corrections asked for.

    A follow-up (or a correction reminder) stays live once its day came without an answer: it
    was sent. One that a response made unnecessary before its day is cancelled.
    """
    if person.kind != "supplier":
        return
    wave = cmrt_notices.supplier_wave(program, person)
    if wave is None:
        return
    result.shared.extend(
        e
        for e in cm.expand(program)
        if Audience.SUPPLIERS in e.audiences and e.details.get("wave") == wave.key
    )
    responses = snapshot.facts_until(now, program.id, [FactKind.CMRT_RESPONSE])
    responses = [f for f in responses if f.person_id == person.id]
    first = responses[0] if responses else None
    dates = cm.follow_up_dates(program, wave)
    escalates = cm.escalation_date(program, wave) is not None
    days = send_days(program)
    form_sd = at_send_time(program, cm.due_date(program))
    for n, scheduled in enumerate(dates, start=1):
        # The day the reminder actually goes out: off a weekend or holiday, as planned.
        sent = at_send_time(program, scheduled)
        if days is not None:
            sent = days.place(sent, form_sd)
        day = sent.astimezone(program.zone).date()
        last = n == len(dates)
        then = (
            " Then the request is escalated to your contact at the company."
            if last and escalates
            else ""
        )
        event = day_event(
            program=program.id,
            key=f"follow-up/{person.key}/{wave.key}/{n}",
            kind=EventKind.CMRT_FOLLOW_UP,
            title=f"CMRT reminder {n} of {len(dates)} (if not yet returned)",
            day=day,
            timezone=program.timezone,
            audiences=_OWN,
            description=(
                f"Your CMRT for reporting year {program.reporting_year} was due "
                f"{wave.response_due}. If we have not received it, reminder {n} of {len(dates)} "
                f"goes out on {day}.{then} Send a complete CMRT to {snapshot.team.compliance} "
                "to stop the reminders."
            ),
            person=person.key,
            details={"wave": wave.key, "number": n},
        )
        result.own.append(OwnEvent(event=event, live=first is None or first.at >= sent))
    for index, fact in enumerate(responses):
        if fact.payload.get("complete", True):
            continue
        following = responses[index + 1] if index + 1 < len(responses) else None
        result.own.extend(_corrections(program, person, fact, following, snapshot))


def _corrections(
    program: ConflictMinerals,
    person: PersonView,
    fact: Fact,
    following: Fact | None,
    snapshot: Snapshot,
) -> list[OwnEvent]:
    """The request for a corrected CMRT after an incomplete response, and its reminders."""
    out: list[OwnEvent] = []
    received = fact.at.astimezone(program.zone).date()
    issues = str(fact.payload.get("issues") or "incomplete or inconsistent answers")
    steps = program.incomplete.max + 1
    for k in range(steps):
        at = fact.at + timedelta(days=program.incomplete.interval_days * k)
        title = "Corrected CMRT requested" if k == 0 else f"Reminder {k}: corrected CMRT"
        event = day_event(
            program=program.id,
            key=f"correction/{person.key}/{fact.id}/{k}",
            kind=EventKind.CMRT_FOLLOW_UP,
            title=title,
            day=at.astimezone(program.zone).date(),
            timezone=program.timezone,
            audiences=_OWN,
            description=(
                f"The CMRT received on {received} needs correcting: {issues}. Send a corrected "
                f"CMRT to {snapshot.team.compliance}."
            ),
            person=person.key,
            details={"response": fact.id, "number": k},
        )
        out.append(OwnEvent(event=event, live=following is None or following.at >= at))
    return out
