"""The planning job: recompute the programs' notices from the facts and reconcile the outbox.

Runs at start, after each recorded event, and on every sweep, in three steps: ``load`` reads
what planning needs (people, grants, facts, the events' stored revisions, the pending
messages), ``compute`` decides purely (every notice and obligation, every event revision to
raise, every pending message no longer owed), ``write`` stores the difference. Idempotent: the
same facts give the same identities, so a rerun, a restart or a second replica inserts nothing
new. Notices a program no longer calls for (a supplier responded, an employee elected) are
cancelled while still pending; sent ones are history and never touched.

Isolated: a program whose rules raise is left out of the plan, and so is one person whose rows
make a program's rules raise (an HR export's 9999-12-31 stored before imports checked dates),
while everything else is planned as usual. What was left out keeps its pending messages,
obligations and event revisions as they were, and is reported (``PlanResult.skipped``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from calendars.kinds import effective, expand_program, plan_notices
from calendars.notices import Notice, ObligationState, PersonView, Plan, Snapshot, Team
from calendars.versions import Revision, revise
from config.programs import Program
from jobs.storage import Session, obligations, outbox, skips, versions
from jobs.storage.skips import WHOLE_PROGRAM, Skipped
from jobs.storage.snapshot import load_snapshot

# Notices that had already expired this long before they were first planned are history
# (a program file describing a past campaign), not a backlog: they are not queued at all.
HISTORY = timedelta(days=7)
DIGEST_PROGRAM = "tickler"


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanReport:
    planned: int
    inserted: int
    updated: int
    cancelled: int
    history: int
    # What was cancelled, by (program, job): the shell counts it in /metrics.
    cancelled_by: Mapping[tuple[str, str], int] = field(default_factory=dict)
    # Programs, and people under a program, left out because their rules raised.
    skipped: Sequence[Skipped] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanInputs:
    """What planning reads: the facts, the programs' stored event revisions, what is pending."""

    snapshot: Snapshot
    revisions: versions.Revisions  # by program id, then event key
    # The pending messages of the programs (and the digest): identity -> (program, person id)
    pending: Mapping[str, tuple[str, int | None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanResult:
    """What planning writes: the notices still worth queueing, obligations, revisions, cancels."""

    notices: list[Notice]
    history: int  # notices long expired before being planned: not queued
    obligations: list[ObligationState]
    revisions: dict[str, dict[str, Revision]]  # changed revisions by program id, then key
    cancel: frozenset[str]  # pending identities no longer planned
    programs: frozenset[str]  # the programs planned (their skips are replaced)
    skipped: list[Skipped] = field(default_factory=list)


def load(session: Session, programs: Sequence[Program], team: Team) -> PlanInputs:
    """Read what ``compute`` needs for ``programs``."""
    ids = [p.id for p in programs]
    return PlanInputs(
        snapshot=load_snapshot(session, team=team),
        revisions=versions.load(session, ids),
        pending=outbox.pending_owners(session, {*ids, DIGEST_PROGRAM}),
    )


def compute(
    inputs: PlanInputs, *, programs: Sequence[Program], team: Team, zone: str, now: datetime
) -> PlanResult:
    """Decide every notice, obligation and event revision of ``programs`` at ``now`` (pure).

    A program whose rules raise, or a person whose rows make them raise, is left out and
    listed in ``skipped``; their pending messages are not cancelled.
    """
    notices: list[Notice] = digest_notices(team, zone, now)
    states: list[ObligationState] = []
    changed: dict[str, dict[str, Revision]] = {}
    skipped: list[Skipped] = []
    for program in programs:
        try:
            stored = inputs.revisions.get(program.id, {})
            events = expand_program(effective(program, inputs.snapshot.facts), now=now)
            revised = revise(stored, events, now, keep_events=True)
            current = {**stored, **revised}
            snapshot = replace(
                inputs.snapshot,
                versions={key: (r.sequence, r.last_modified) for key, r in current.items()},
                events={key: r.event for key, r in current.items() if r.event is not None},
            )
            plan, left_out = plan_isolated(_planner(program, snapshot, now), snapshot.people)
        except Exception as exc:  # the program's own dates: nobody can be planned
            skipped.append(
                Skipped(program=program.id, person=WHOLE_PROGRAM, person_id=None, error=_why(exc))
            )
            continue
        changed[program.id] = revised
        notices.extend(plan.notices)
        states.extend(plan.obligations)
        skipped.extend(
            Skipped(program=program.id, person=person.key, person_id=person.id, error=_why(exc))
            for person, exc in left_out
        )
    fresh = [n for n in notices if n.expires > now - HISTORY]
    planned = {n.identity for n in fresh}
    whole = {s.program for s in skipped if s.person == WHOLE_PROGRAM}
    people = {(s.program, s.person_id) for s in skipped if s.person_id is not None}
    return PlanResult(
        notices=fresh,
        history=len(notices) - len(fresh),
        obligations=states,
        revisions={scope: rows for scope, rows in changed.items() if rows},
        cancel=frozenset(
            identity
            for identity, owner in inputs.pending.items()
            if identity not in planned and owner[0] not in whole and owner not in people
        ),
        programs=frozenset(p.id for p in programs),
        skipped=skipped,
    )


def plan_isolated(
    plan: Callable[[Sequence[PersonView]], Plan], people: Sequence[PersonView]
) -> tuple[Plan, list[tuple[PersonView, Exception]]]:
    """Return ``plan(people)``, leaving out each person it raises for, and who they were.

    The planners treat people one at a time, so planning a part of them gives that part's
    notices (and the ones no person holds, such as milestones, every time). When the whole
    fails, the program is first planned for nobody (when that raises too, the program itself
    is at fault: it propagates), then the people are halved until each one that raises is
    alone: a few bad rows cost a few plans of ever smaller halves, not one plan per person.
    """
    try:
        return plan(people), []
    except Exception:  # someone, or the program: find out below
        pass
    plans = [plan([])]
    bad: list[tuple[PersonView, Exception]] = []
    pending = [list(people)]
    while pending:
        part = pending.pop()
        try:
            plans.append(plan(part))
        except Exception as exc:  # a bad row in this part
            if len(part) == 1:
                bad.append((part[0], exc))
            else:
                pending += [part[len(part) // 2 :], part[: len(part) // 2]]
    notices = {n.identity: n for p in plans for n in p.notices}
    states = {
        (o.program, o.occurrence, o.person_id, o.kind): o for p in plans for o in p.obligations
    }
    bad.sort(key=lambda item: item[0].id)
    return Plan(notices=list(notices.values()), obligations=list(states.values())), bad


def _planner(
    program: Program, snapshot: Snapshot, now: datetime
) -> Callable[[Sequence[PersonView]], Plan]:
    def plan(people: Sequence[PersonView]) -> Plan:
        return plan_notices(program, replace(snapshot, people=people), now)

    return plan


def _why(exc: Exception) -> str:
    """Return what went wrong, on one line and short enough for a log field and a status row."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= 300 else text[:299] + "…"


def write(session: Session, result: PlanResult, now: datetime) -> PlanReport:
    """Store ``result``: revisions, new and changed messages, cancellations, obligations."""
    for scope, rows in result.revisions.items():
        versions.write(session, scope, rows)
    report = outbox.enqueue(session, result.notices, now)
    cancelled = outbox.cancel_pending_by_kind(session, result.cancel, "no longer planned", now)
    obligations.store(session, result.obligations, now)
    skips.replace(session, result.programs, result.skipped, now)
    return PlanReport(
        planned=len(result.notices),
        inserted=report.inserted,
        updated=report.updated,
        cancelled=sum(cancelled.values()),
        history=result.history,
        cancelled_by=dict(cancelled),
        skipped=result.skipped,
    )


def replan(
    session: Session,
    *,
    programs: Sequence[Program],
    team: Team,
    zone: str,
    now: datetime,
) -> PlanReport:
    """Plan ``programs`` (and the weekly digest) at ``now``; reconcile their outbox rows and
    obligations. The other programs' rows are left as they are."""
    inputs = load(session, programs, team)
    result = compute(inputs, programs=programs, team=team, zone=zone, now=now)
    return write(session, result, now)


def digest_notices(team: Team, zone_name: str, now: datetime) -> list[Notice]:
    """Return this week's and next week's Monday 08:00 digest to the compliance team."""
    zone = ZoneInfo(zone_name)
    today = now.astimezone(zone).date()
    monday = today - timedelta(days=today.weekday())
    out = []
    for week in (monday, monday + timedelta(days=7)):
        due = datetime.combine(week, datetime.min.time().replace(hour=8), tzinfo=zone).astimezone(
            UTC
        )
        out.append(
            Notice(
                program=DIGEST_PROGRAM,
                occurrence=week.isoformat(),
                person_id=None,
                recipient_key=team.compliance,
                recipient=team.compliance,
                job="digest",
                step="digest",
                template="digest",
                context={"date": week.isoformat()},
                due=due,
                expires=due + timedelta(days=1),
            )
        )
    return out
