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

Incremental and streamed: a plan is made in *parts*, each its own short transaction. The
program part plans what belongs to no person (milestones, the digest, event revisions); a
people part plans a chunk of people (``CHUNK``), reading only their rows, their facts and the
facts about no person, and reconciles only their pending messages and obligations. The
planners treat people one at a time, so the parts together give exactly what one plan of
everything gives. A recorded fact replans its person (``Scope``, from the event log); a whole
plan streams every person, chunk by chunk, with memory bounded by the chunk. Obligations that
planning no longer produces are retired (``obligations.RETIRED``), like pending messages are
cancelled, so the result does not depend on the order in which people, facts and plans came.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from calendars.businessdays import CalendarName, calendar
from calendars.clock import local_instant
from calendars.kinds import effective, expand_program, plan_notices
from calendars.notices import (
    HISTORY,
    Notice,
    ObligationState,
    PersonView,
    Plan,
    Snapshot,
    Team,
)
from calendars.versions import Revision, revise
from config.programs import OptionExchange, Program
from jobs.storage import Session, facts, obligations, outbox, skips, snapshot, versions
from jobs.storage.skips import WHOLE_PROGRAM, Skipped

DIGEST_PROGRAM = "tickler"
# People per part of a plan: one transaction, a few hundred milliseconds, a few MB.
CHUNK = 1000
# A whole plan running beside reactions sizes its parts to take about this long: a part holds
# the planning lock and SQLite's one write lock, so a reaction waits behind at most one part.
PART_SECONDS = 0.25
# The first and the smallest part of a sized plan (a part also pays fixed reads, so not 1).
FIRST_PART = 100
SMALLEST_PART = 20
# The pause after each part of a sized plan. SQLite's busy handler retries a waiting writer at
# most every 100 ms: with parts back to back it almost never found the lock free (a POST
# waited for the whole plan, 8 s at 5,000 people). PostgreSQL loses a little wall time only.
PART_PAUSE = 0.1
ObligationKey = obligations.Key
StoredObligation = obligations.Stored


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
    retired: int = 0  # obligations no longer planned
    # The skips the plan decided (person keys, WHOLE_PROGRAM); None: all of its programs'.
    covers: frozenset[str] | None = None

    def __add__(self, other: PlanReport) -> PlanReport:
        """Return the report of two parts of one plan."""
        by = dict(self.cancelled_by)
        for key, n in other.cancelled_by.items():
            by[key] = by.get(key, 0) + n
        return PlanReport(
            planned=self.planned + other.planned,
            inserted=self.inserted + other.inserted,
            updated=self.updated + other.updated,
            cancelled=self.cancelled + other.cancelled,
            history=self.history + other.history,
            cancelled_by=by,
            # Each part finds a failing program again: name it once.
            skipped=list(
                {(k.program, k.person): k for k in [*self.skipped, *other.skipped]}.values()
            ),
            retired=self.retired + other.retired,
            covers=None
            if self.covers is None or other.covers is None
            else self.covers | other.covers,
        )


NOTHING = PlanReport(planned=0, inserted=0, updated=0, cancelled=0, history=0, covers=frozenset())


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanInputs:
    """What planning reads: the facts, the programs' stored event revisions, what is pending."""

    snapshot: Snapshot
    revisions: versions.Revisions  # by program id, then event key
    # The pending messages of the programs (and the digest): identity -> (program, person id)
    pending: Mapping[str, tuple[str, int | None]]
    # The live obligations of the people planned: key -> (state, details)
    obligations: Mapping[ObligationKey, StoredObligation] = field(default_factory=dict)
    # Whether this part plans what belongs to no person (milestones, the digest).
    unowned: bool = True
    # The skips this part decides (person keys, WHOLE_PROGRAM); None: all of the programs'.
    covers: frozenset[str] | None = None


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
    retire: Mapping[ObligationKey, StoredObligation] = field(default_factory=dict)
    covers: frozenset[str] | None = None  # as PlanInputs.covers


def load(
    session: Session,
    programs: Sequence[Program],
    team: Team,
    people: Sequence[PersonView] | None = None,
) -> PlanInputs:
    """Read what ``compute`` needs for one part of the plan of ``programs``: the program part
    (``people`` None), or the part of ``people``."""
    ids = [p.id for p in programs]
    if people is None:
        return PlanInputs(
            snapshot=Snapshot(
                people=[], grants=[], facts=snapshot.load_facts_of(session, []), team=team
            ),
            revisions=versions.load(session, ids),
            pending=outbox.pending_of(session, {*ids, DIGEST_PROGRAM}, None),
            unowned=True,
            covers=frozenset({WHOLE_PROGRAM}),
        )
    who = [p.id for p in people]
    return PlanInputs(
        snapshot=Snapshot(
            people=people,
            grants=snapshot.load_grants(session, of=who),
            facts=snapshot.load_facts_of(session, who),
            team=team,
        ),
        revisions=versions.load(session, ids),
        pending=outbox.pending_of(session, set(ids), who),
        obligations=obligations.live(session, ids, who),
        unowned=False,
        covers=frozenset(p.key for p in people),
    )


def compute(
    inputs: PlanInputs, *, programs: Sequence[Program], team: Team, zone: str, now: datetime
) -> PlanResult:
    """Decide every notice, obligation and event revision of ``programs`` at ``now`` (pure).

    A program whose rules raise, or a person whose rows make them raise, is left out and
    listed in ``skipped``; their pending messages are not cancelled.
    """
    notices: list[Notice] = digest_notices(team, zone, now) if inputs.unowned else []
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
        # A people part leaves what belongs to no person to the program part.
        notices.extend(n for n in plan.notices if inputs.unowned or n.person_id is not None)
        states.extend(plan.obligations)
        skipped.extend(
            Skipped(program=program.id, person=person.key, person_id=person.id, error=_why(exc))
            for person, exc in left_out
        )
    fresh = [n for n in notices if n.expires > now - HISTORY]
    planned = {n.identity for n in fresh}
    whole = {s.program for s in skipped if s.person == WHOLE_PROGRAM}
    people = {(s.program, s.person_id) for s in skipped if s.person_id is not None}
    produced = {obligations.key_of(o) for o in states}
    if not inputs.unowned:  # a people part read its people's obligations: write what moved
        states = obligations.changed(states, inputs.obligations)
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
        retire={
            key: row
            for key, row in inputs.obligations.items()
            if key not in produced and key[0] not in whole and (key[0], key[2]) not in people
        },
        covers=inputs.covers,
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
    cancelled = outbox.cancel_pending_by_kind(session, result.cancel, outbox.UNPLANNED, now)
    obligations.store(session, result.obligations, now)
    retired = obligations.retire(session, result.retire, "no longer planned", now)
    skips.replace(session, result.programs, result.skipped, now, people=result.covers)
    return PlanReport(
        planned=len(result.notices),
        inserted=report.inserted,
        updated=report.updated,
        cancelled=sum(cancelled.values()),
        history=result.history,
        cancelled_by=dict(cancelled),
        skipped=result.skipped,
        retired=retired,
        covers=result.covers,
    )


def plan_part(
    session: Session,
    *,
    programs: Sequence[Program],
    team: Team,
    zone: str,
    now: datetime,
    people: Sequence[PersonView] | None = None,
) -> PlanReport:
    """Plan one part of ``programs`` at ``now``: what belongs to no person (``people`` None),
    or ``people``; reconcile that part's messages and obligations, nobody else's."""
    inputs = load(session, programs, team, people)
    result = compute(inputs, programs=programs, team=team, zone=zone, now=now)
    return write(session, result, now)


def plan_chunk(
    session: Session,
    *,
    programs: Sequence[Program],
    team: Team,
    zone: str,
    now: datetime,
    after: int,
    size: int = CHUNK,
) -> tuple[PlanReport, int | None]:
    """Plan the next ``size`` people whose id is above ``after``; return the report and the
    last id planned (``None`` when there was nobody left)."""
    people = snapshot.people_after(session, after, size)
    if not people:
        return NOTHING, None
    report = plan_part(session, programs=programs, team=team, zone=zone, now=now, people=people)
    return report, people[-1].id


def part_size(size: int, seconds: float, *, target: float = PART_SECONDS) -> int:
    """Return how many people the next part should plan, after ``size`` took ``seconds``.

    Why: a part's time per person varies tenfold with the machine's load and the people's
    history (a 10,000-person first plan took 715 s in ten parts at a load of 6-14), and a
    reaction waits for the part in flight.
    The estimate is scaled toward ``target``, growing at most twofold a part (one quick part
    of people with nothing to plan says little about the next), within
    [``SMALLEST_PART``, ``CHUNK``].
    """
    if seconds <= 0:
        return min(CHUNK, size * 2)
    scaled = int(size * target / seconds)
    return max(SMALLEST_PART, min(CHUNK, size * 2, scaled))


def plan_people(
    session: Session,
    *,
    programs: Sequence[Program],
    team: Team,
    zone: str,
    now: datetime,
    ids: Sequence[int],
) -> PlanReport:
    """Plan the people ``ids`` (at most ``CHUNK``; those that exist) under ``programs``."""
    people = snapshot.people_by_id(session, ids)
    if not people:
        return NOTHING
    return plan_part(session, programs=programs, team=team, zone=zone, now=now, people=people)


def replan(
    session: Session,
    *,
    programs: Sequence[Program],
    team: Team,
    zone: str,
    now: datetime,
) -> PlanReport:
    """Plan ``programs`` (and the weekly digest) at ``now`` in ``session``: the program part,
    then every person chunk by chunk. The other programs' rows are left as they are."""
    report = plan_part(session, programs=programs, team=team, zone=zone, now=now)
    after: int | None = 0
    while after is not None:
        part, after = plan_chunk(
            session, programs=programs, team=team, zone=zone, now=now, after=after
        )
        report += part
    return report


@dataclass(frozen=True, slots=True, kw_only=True)
class Scope:
    """What changed, so what to plan again: whole programs, and people (under every program)."""

    programs: frozenset[str] = frozenset()
    people: frozenset[int] = frozenset()

    def __or__(self, other: Scope) -> Scope:
        return Scope(programs=self.programs | other.programs, people=self.people | other.people)

    def __bool__(self) -> bool:
        return bool(self.programs or self.people)


def changed_by(
    session: Session, changes: Sequence[facts.Change], programs: Sequence[Program]
) -> Scope:
    """Return what the event-log rows ``changes`` call to plan again.

    A fact about a person replans that person (under every program: a termination or a hire
    names none); a fact about no person (an offer's extension) its whole program; an import of
    people the people it wrote (their ``updated_at`` is the import's instant); an import of
    grants the programs that read grants. Other rows (bookkeeping) change no plan.
    """
    known = {p.id for p in programs}
    whole: set[str] = set()
    people: set[int] = set()
    for change in changes:
        if change.kind in snapshot.FACT_KINDS:
            if change.person_id is not None:
                people.add(change.person_id)
            elif change.program in known:
                whole.add(change.program)
            elif change.program is None:
                whole |= known
        elif change.kind == "import":
            if change.imported == "grants":
                whole |= {p.id for p in programs if isinstance(p, OptionExchange)}
            else:
                people.update(snapshot.updated_at(session, change.at))
    return Scope(programs=frozenset(whole), people=frozenset(people))


def changed_between(
    session: Session, after: datetime, until: datetime, programs: Sequence[Program]
) -> Scope:
    """Return what the clock moving from ``after`` to ``until`` may change: the people with a
    message or an obligation due in between (a reminder's window closed, an acknowledgment
    became overdue, an escalation fell due), and the scope of the facts dated in between (a
    fact recorded ahead of the clock takes effect). Horizons further out (a continuous
    program's next cycle a year ahead) are left to the periodic whole plan."""
    known = {p.id for p in programs}
    people = outbox.people_due_between(session, after, until)
    people |= obligations.people_due_between(session, after, until)
    whole: set[str] = set()
    for program, person_id in facts.dated_between(session, after, until):
        if person_id is not None:
            people.add(person_id)
        elif program in known:
            whole.add(program)
        elif program is None:
            whole |= known
    return Scope(programs=frozenset(whole), people=frozenset(people))


def digest_notices(team: Team, zone_name: str, now: datetime) -> list[Notice]:
    """Return this week's and next week's digest to the compliance team, at 08:00 of the week's
    first federal business day (Monday, or Tuesday after a Monday holiday such as Martin Luther
    King Day): a digest read on a closed day is read late. The occurrence stays the Monday, so
    the identity of a week's digest never moves."""
    zone = ZoneInfo(zone_name)
    today = now.astimezone(zone).date()
    monday = today - timedelta(days=today.weekday())
    federal = calendar(CalendarName.FEDERAL)
    out = []
    for week in (monday, monday + timedelta(days=7)):
        due = local_instant(federal.on_or_after(week), time(8), zone).astimezone(UTC)
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
                domain=team.domain,
                due=due,
                expires=due + timedelta(days=1),
            )
        )
    return out
