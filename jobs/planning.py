"""The planning job: recompute the programs' notices from the facts and reconcile the outbox.

Runs at start, after each recorded event, and on every sweep, in three steps: ``load`` reads
what planning needs (people, grants, facts, the events' stored revisions, the pending
messages), ``compute`` decides purely (every notice and obligation, every event revision to
raise, every pending message no longer owed), ``write`` stores the difference. Idempotent: the
same facts give the same identities, so a rerun, a restart or a second replica inserts nothing
new. Notices a program no longer calls for (a supplier responded, an employee elected) are
cancelled while still pending; sent ones are history and never touched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from calendars.kinds import effective, expand_program, plan_notices
from calendars.notices import Notice, ObligationState, Snapshot, Team
from calendars.versions import Revision, revise
from config.programs import Program
from jobs.storage import Session, obligations, outbox, versions
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


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanInputs:
    """What planning reads: the facts, the programs' stored event revisions, what is pending."""

    snapshot: Snapshot
    revisions: versions.Revisions  # by program id, then event key
    pending: frozenset[str]  # identities of the pending messages of the programs (and digest)


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanResult:
    """What planning writes: the notices still worth queueing, obligations, revisions, cancels."""

    notices: list[Notice]
    history: int  # notices long expired before being planned: not queued
    obligations: list[ObligationState]
    revisions: dict[str, dict[str, Revision]]  # changed revisions by program id, then key
    cancel: frozenset[str]  # pending identities no longer planned


def load(session: Session, programs: Sequence[Program], team: Team) -> PlanInputs:
    """Read what ``compute`` needs for ``programs``."""
    ids = [p.id for p in programs]
    return PlanInputs(
        snapshot=load_snapshot(session, team=team),
        revisions=versions.load(session, ids),
        pending=frozenset(outbox.pending_identities(session, {*ids, DIGEST_PROGRAM})),
    )


def compute(
    inputs: PlanInputs, *, programs: Sequence[Program], team: Team, zone: str, now: datetime
) -> PlanResult:
    """Decide every notice, obligation and event revision of ``programs`` at ``now`` (pure)."""
    notices: list[Notice] = digest_notices(team, zone, now)
    states: list[ObligationState] = []
    changed: dict[str, dict[str, Revision]] = {}
    for program in programs:
        stored = inputs.revisions.get(program.id, {})
        events = expand_program(effective(program, inputs.snapshot.facts), now=now)
        changed[program.id] = revise(stored, events, now, keep_events=True)
        current = {**stored, **changed[program.id]}
        snapshot = replace(
            inputs.snapshot,
            versions={key: (r.sequence, r.last_modified) for key, r in current.items()},
            events={key: r.event for key, r in current.items() if r.event is not None},
        )
        plan = plan_notices(program, snapshot, now)
        notices.extend(plan.notices)
        states.extend(plan.obligations)
    fresh = [n for n in notices if n.expires > now - HISTORY]
    return PlanResult(
        notices=fresh,
        history=len(notices) - len(fresh),
        obligations=states,
        revisions={scope: rows for scope, rows in changed.items() if rows},
        cancel=inputs.pending - {n.identity for n in fresh},
    )


def write(session: Session, result: PlanResult, now: datetime) -> PlanReport:
    """Store ``result``: revisions, new and changed messages, cancellations, obligations."""
    for scope, rows in result.revisions.items():
        versions.write(session, scope, rows)
    report = outbox.enqueue(session, result.notices, now)
    cancelled = outbox.cancel_pending_by_kind(session, result.cancel, "no longer planned", now)
    obligations.store(session, result.obligations, now)
    return PlanReport(
        planned=len(result.notices),
        inserted=report.inserted,
        updated=report.updated,
        cancelled=sum(cancelled.values()),
        history=result.history,
        cancelled_by=dict(cancelled),
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
