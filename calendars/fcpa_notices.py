"""FCPA acknowledgments: requests, reminders, overdue follow-ups and escalation, per person."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from calendars import fcpa
from calendars.clock import before
from calendars.notices import (
    DAY,
    HISTORY,
    Fact,
    NoticeMaker,
    ObligationState,
    PersonView,
    Plan,
    SendDays,
    Snapshot,
    at_send_time,
    send_days,
    utc,
)
from config.facts import FactKind
from config.programs import Fcpa, WrittenOffset, split_offset

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


def plan(program: Fcpa, snapshot: Snapshot, now: datetime, *, every_cycle: bool = False) -> Plan:
    """Return every acknowledgment notice and obligation of the program's people at ``now``.

    A cycle whose notices had all expired ``HISTORY`` before ``now`` gives its obligation only:
    planning would drop those notices as history anyway, and a person hired decades ago has a
    cycle a year (about 8 notices each) of which only the last one or two are still live.
    ``every_cycle`` builds them all (the reference the tests compare the shortcut with).
    """
    acks: dict[int | None, list[Fact]] = {}
    for fact in snapshot.facts_until(now, program.id, [FactKind.FCPA_ACK]):
        acks.setdefault(fact.person_id, []).append(fact)
    rules = _Rules(
        program=program,
        officer=program.compliance_officer or snapshot.team.compliance_officer,
        domain=snapshot.team.domain,
        now=now,
        spent=None if every_cycle else now - HISTORY,
        days=send_days(program),
        reminders=[(text, split_offset(text)) for text in program.reminders_before],
        # Most people share their cycles' dates (a fixed renewal day): each day's send instant
        # and chase are worked out once per plan, not once per person.
        send_at=functools.cache(functools.partial(at_send_time, program)),
        chase=functools.cache(functools.partial(Chase.after, program)),
    )
    until = now.astimezone(program.zone).date() + HORIZON
    result = Plan(notices=[], obligations=[])
    for person in snapshot.people:
        if person.role in program.roles:
            mine = acks.get(person.id, [])
            for cycle in cycles(program, person, until=until):
                _plan_cycle(rules, person, cycle, mine, result)
    return result


@dataclass(frozen=True, slots=True, kw_only=True)
class Chase:
    """When an unacknowledged cycle's follow-ups and escalation fall, and when each stops."""

    follow: list[datetime]
    # Each follow-up is superseded by the next one; the last by nothing, since the escalation
    # goes to the Compliance Officer, not the person, and may fall on the same instant
    # (``escalate_after_days = 0``): it stays sendable for one more interval.
    stops: list[datetime]
    escalation: datetime | None
    # The latest expiry of any notice of the cycle: when even that one is history, so is the
    # whole cycle (the request expires 30 days after the due date, as does the escalation).
    latest: datetime

    @classmethod
    def after(cls, program: Fcpa, due: datetime) -> Chase:
        step = timedelta(days=program.overdue.interval_days)
        follow = [due + step * n for n in range(1, program.overdue.max + 1)]
        last = follow[-1] if follow else due
        after = program.overdue.escalate_after_days
        stops = [*follow[1:], last + step][: len(follow)]  # max = 0: nothing to stop
        escalation = last + timedelta(days=after) if after is not None else None
        ends = [due + 30 * DAY, *stops[-1:], *([escalation + 30 * DAY] if escalation else [])]
        return cls(follow=follow, stops=stops, escalation=escalation, latest=max(ends))


@dataclass(frozen=True, slots=True, kw_only=True)
class _Rules:
    """What one plan works out once and every cycle reads."""

    program: Fcpa
    officer: str
    domain: str  # of the Message-IDs
    now: datetime
    spent: datetime | None  # cycles whose notices all expired by then build none
    days: SendDays | None
    reminders: list[tuple[str, WrittenOffset]]
    send_at: Callable[[date], datetime]
    chase: Callable[[datetime], Chase]


def _plan_cycle(
    rules: _Rules, person: PersonView, cycle: Cycle, acks: list[Fact], result: Plan
) -> None:
    opens, due = rules.send_at(cycle.opens), rules.send_at(cycle.due)
    ack = _ack_for(acks, opens)
    chase = rules.chase(due)
    now = rules.now
    state = "acknowledged" if ack else ("overdue" if now >= due else "pending")
    if ack is None and chase.escalation is not None and now >= chase.escalation:
        state = "escalated"
    if rules.spent is None or chase.latest > rules.spent:
        _cycle_notices(rules, person, cycle, result, opens, due, ack, chase)
    result.obligations.append(
        ObligationState(
            program=rules.program.id,
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


def _cycle_notices(
    rules: _Rules,
    person: PersonView,
    cycle: Cycle,
    result: Plan,
    opens: datetime,
    due: datetime,
    ack: Fact | None,
    chase: Chase,
) -> None:
    """Append the cycle's request and, unless acknowledged, its reminders, follow-ups and
    escalation."""
    program = rules.program
    notice = NoticeMaker(
        program.id,
        cycle.key,
        {
            "program_name": program.name,
            "policy_version": program.policy_version,
            "due": cycle.due.isoformat(),
            "onboarding": cycle.onboarding,
            **({"policy_url": program.policy_url} if program.policy_url else {}),
        },
        result.notices,
        rules.days,
        rules.domain,
    )
    notice(person, "fcpa_request", "request", opens, due + 30 * DAY)
    if ack is not None:
        return
    for text, offset in rules.reminders:
        at = utc(before(due.astimezone(program.zone), offset, program.zone))
        if at > opens:
            notice(person, "fcpa_reminder", f"reminder/{text}", at, due, before=text)
    for n, (at, stop) in enumerate(zip(chase.follow, chase.stops, strict=True), start=1):
        notice(person, "fcpa_overdue", f"overdue/{n}", at, stop, number=n, of=program.overdue.max)
    if chase.escalation is not None:
        notice(
            person,
            "fcpa_escalation",
            f"escalation/{person.key}",
            chase.escalation,
            chase.escalation + 30 * DAY,
            person=person.name,
            person_email=person.email,
            role=person.role or "",
            to=rules.officer,
        )


def _ack_for(acks: list[Fact], opens: datetime) -> Fact | None:
    """Return the person's acknowledgment (``acks``, oldest first) that satisfies a cycle: the
    first one signed once the cycle opened.

    An acknowledgment up to 60 days before the cycle opens still counts, so that someone who
    signs early (say, at a training) is not chased days later.
    """
    for fact in acks:
        if fact.at >= opens - 60 * DAY:
            return fact
    return None
