"""FCPA acknowledgments: requests, reminders, overdue follow-ups and escalation, per person."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from calendars import fcpa
from calendars.clock import before
from calendars.notices import (
    DAY,
    Fact,
    NoticeMaker,
    ObligationState,
    PersonView,
    Plan,
    Snapshot,
    at_send_time,
    send_days,
    utc,
)
from config.facts import FactKind
from config.programs import Fcpa, split_offset

# Cycles are planned this far ahead of now: enough for every reminder, small enough that a
# continuous program keeps a short outbox.
HORIZON = timedelta(days=400)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cycle:
    """One acknowledgment a person owes: opened on ``opens``, due on ``due``."""

    key: str
    opens: date
    due: date
    onboarding: bool


def start_of(person: PersonView) -> date | None:
    return person.start_date or person.hire_date


def cycles(program: Fcpa, person: PersonView, *, until: date) -> list[Cycle]:
    """Return the person's acknowledgment cycles that open on or before ``until``.

    The first is onboarding (due ``onboarding_due_days`` after the relationship starts, or the
    policy takes effect); each renewal opens ``onboarding_due_days`` before its due date. Nothing
    opens after the relationship ended.
    """
    start = start_of(person)
    if start is None:
        return []
    first = fcpa.onboarding_due(program, start)
    out = [
        Cycle(
            key=f"{first.isoformat()}",
            opens=max(start, program.effective),
            due=first,
            onboarding=True,
        )
    ]
    window = timedelta(days=max(program.onboarding_due_days, 1))
    for due in fcpa.renewal_dates(program, start=start, until=until + window):
        out.append(Cycle(key=due.isoformat(), opens=due - window, due=due, onboarding=False))
    end = person.termination_date
    return [c for c in out if c.opens <= until and (end is None or c.opens < end)]


def plan(program: Fcpa, snapshot: Snapshot, now: datetime) -> Plan:
    """Return every acknowledgment notice and obligation of the program's people at ``now``."""
    acks = snapshot.facts_until(now, program.id, [FactKind.FCPA_ACK])
    officer = program.compliance_officer or snapshot.team.compliance_officer
    until = now.astimezone(program.zone).date() + HORIZON
    result = Plan(notices=[], obligations=[])
    for person in snapshot.people:
        if person.role in program.roles:
            for cycle in cycles(program, person, until=until):
                _plan_cycle(program, person, cycle, acks, officer, now, result)
    return result


def _plan_cycle(
    program: Fcpa,
    person: PersonView,
    cycle: Cycle,
    acks: list[Fact],
    officer: str,
    now: datetime,
    result: Plan,
) -> None:
    opens, due = at_send_time(program, cycle.opens), at_send_time(program, cycle.due)
    ack = _ack_for(acks, person.id, opens)

    notice = NoticeMaker(
        program.id,
        cycle.key,
        {
            "program_name": program.name,
            "policy_version": program.policy_version,
            "due": cycle.due.isoformat(),
            "onboarding": cycle.onboarding,
        },
        result.notices,
        send_days(program),
    )

    notice(person, "fcpa_request", "request", opens, due + 30 * DAY)
    state = "acknowledged" if ack else ("overdue" if now >= due else "pending")
    if ack is None:
        for text in program.reminders_before:
            at = utc(before(due.astimezone(program.zone), split_offset(text), program.zone))
            if at > opens:
                notice(
                    person,
                    "fcpa_reminder",
                    f"reminder/{text}",
                    at,
                    due,
                    before=text,
                )
        step = timedelta(days=program.overdue.interval_days)
        follow = [due + step * n for n in range(1, program.overdue.max + 1)]
        after = program.overdue.escalate_after_days
        last = follow[-1] if follow else due
        escalation = last + timedelta(days=after) if after is not None else None
        # Each follow-up is superseded by the next one; the last by nothing, since the
        # escalation goes to the Compliance Officer, not the person, and may fall on the same
        # instant (``escalate_after_days = 0``): it stays sendable for one more interval.
        # (``max = 0``: no follow-up, and nothing to stop.)
        stops = [*follow[1:], last + step][: len(follow)]
        for n, (at, stop) in enumerate(zip(follow, stops, strict=True), start=1):
            notice(
                person,
                "fcpa_overdue",
                f"overdue/{n}",
                at,
                stop,
                number=n,
                of=program.overdue.max,
            )
        if escalation is not None:
            notice(
                person,
                "fcpa_escalation",
                f"escalation/{person.key}",
                escalation,
                escalation + 30 * DAY,
                person=person.name,
                person_email=person.email,
                role=person.role or "",
                to=officer,
            )
            if now >= escalation:
                state = "escalated"
    result.obligations.append(
        ObligationState(
            program=program.id,
            occurrence=cycle.key,
            person_id=person.id,
            kind=FactKind.FCPA_ACK,
            state=state,
            due=due,
            details={
                "acknowledged_at": ack.at.isoformat() if ack else None,
                "policy_version": ack.payload.get("policy_version") if ack else None,
            },
        )
    )


def _ack_for(acks: list[Fact], person_id: int, opens: datetime) -> Fact | None:
    """Return the acknowledgment that satisfies a cycle: one signed once the cycle opened.

    An acknowledgment up to 60 days before the cycle opens still counts, so that someone who
    signs early (say, at a training) is not chased days later.
    """
    for fact in acks:
        if fact.person_id == person_id and fact.at >= opens - 60 * DAY:
            return fact
    return None
