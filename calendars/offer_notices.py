"""Stock option exchange offer: announcements, invitations, reminders, receipts and grants."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from calendars import option_exchange as ox
from calendars.clock import localize
from calendars.events import Event, EventKind, event_to_dict
from calendars.exchange import (
    EligibilityRule,
    ExchangeLine,
    ExchangeRule,
    Holder,
    OptionGrant,
    Rounding,
    exchange_lines,
    holder_eligible,
)
from calendars.notices import (
    DAY,
    Fact,
    GrantView,
    Notice,
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
from config.programs import Extension, OptionExchange


def with_recorded_extensions(program: OptionExchange, facts: Sequence[Fact]) -> OptionExchange:
    """Return the program with the extensions recorded as events (and not retracted)
    appended to its file's."""
    recorded = recorded_extensions(program, facts)
    if not recorded:
        return program
    extensions = list(program.extensions)
    for fact in recorded:
        cutoff = datetime.fromisoformat(str(fact.payload["cutoff"]))
        if cutoff > program.expiration and all(cutoff > e.cutoff for e in extensions):
            local_day = fact.at.astimezone(program.zone).date()
            extensions.append(Extension(cutoff=cutoff, announced=local_day))
    return program.model_copy(update={"extensions": extensions})


def recorded_extensions(program: OptionExchange, facts: Sequence[Fact]) -> list[Fact]:
    """Return the extensions of ``program`` recorded as events and not retracted, oldest first."""
    retracted = {
        f.payload.get("extension")
        for f in facts
        if f.kind == FactKind.EXTENSION_RETRACTION and f.program == program.id
    }
    return sorted(
        (
            f
            for f in facts
            if f.kind == FactKind.OFFER_EXTENSION
            and f.program == program.id
            and f.id not in retracted
        ),
        key=lambda f: (f.at, f.id),
    )


def closes_at(program: OptionExchange, facts: Sequence[Fact]) -> datetime:
    """Return the instant the offer closes (its cutoff, moved by any recorded extension)."""
    return utc(ox.offer_dates(with_recorded_extensions(program, facts)).cutoff)


def instant_text(program: OptionExchange, instant: datetime) -> str:
    """Return ``instant`` as the offer's people read it, e.g. 2003-01-20 21:00 PST (…05:00Z)."""
    local = instant.astimezone(program.zone)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()} ({utc(local):%Y-%m-%dT%H:%MZ})"


def extension_error(
    program: OptionExchange,
    facts: Sequence[Fact],
    cutoff: datetime,
    *,
    judged: datetime,
    now: datetime,
) -> str | None:
    """Return why extending the offer to the local ``cutoff`` is refused, or None.

    Closed stays closed: an offer whose cutoff has passed (at ``judged``, the server's time
    unless the extension is a backfill dated earlier) cannot be extended. Reopening it would
    send announcements and reminders years late and queue promises, grants and vesting that
    never were. A backfill, dated while the offer was open, may record an extension that is
    itself history, never one that reopens the offer at ``now``.
    """
    closed = closes_at(program, facts)
    new = utc(localize(cutoff, program.zone))
    if judged >= closed or (now >= closed and new > now):
        return (
            f"the offer closed at {instant_text(program, closed)}: a closed offer stays "
            "closed and cannot be extended"
        )
    current = with_recorded_extensions(program, facts).expiration
    if cutoff <= current:
        return f"the new cutoff {cutoff} is not after the current one {current}"
    return None


def retraction_error(
    program: OptionExchange, facts: Sequence[Fact], now: datetime
) -> tuple[Fact | None, str | None]:
    """Return the extension a retraction at ``now`` would undo (the latest in force), and why
    it is refused, if it is.

    Whether anything the extension caused has been sent is the outbox's to say (``jobs.record``
    asks it); the core refuses what the dates alone forbid: a retraction that would close the
    offer in the past, behind the back of whoever relied on the extension to elect late.
    """
    recorded = recorded_extensions(program, facts)
    if not recorded:
        return None, f"{program.id} has no recorded extension in force to retract"
    last = recorded[-1]
    before = closes_at(program, [f for f in facts if f.id != last.id])
    if now >= before:
        return last, (
            f"without the extension the offer would have closed at "
            f"{instant_text(program, before)}, which is past: the extension cannot be retracted"
        )
    return last, None


def moves(before: OptionExchange, after: OptionExchange) -> list[tuple[str, str, str]]:
    """Return (what, before, after) for each date of the offer that differs between the two:
    what an extension or its retraction changes, for a person to confirm."""
    b, a = ox.offer_dates(before), ox.offer_dates(after)
    rows = [
        ("election cutoff", instant_text(before, b.cutoff), instant_text(after, a.cutoff)),
        ("cancellation date", str(b.cancellation), str(a.cancellation)),
        ("promise to grant", str(b.promise_to_grant), str(a.promise_to_grant)),
        ("grant date", str(b.grant), str(a.grant)),
        ("exercise price date", str(b.exercise_price), str(a.exercise_price)),
        ("new options expire", str(b.option_expiration), str(a.option_expiration)),
    ]
    # The tranches' dates follow the grant date whatever the shares; a round number of shares
    # gives every tranche.
    vb = ox.vesting(before, shares=1_000_000, grant=b.grant)
    va = ox.vesting(after, shares=1_000_000, grant=a.grant)
    rows.append(
        (
            "vesting",
            f"{vb[0].date} .. {vb[-1].date}",
            f"{va[0].date} .. {va[-1].date}",
        )
    )
    return [row for row in rows if row[1] != row[2]]


def eligibility_rule(program: OptionExchange) -> EligibilityRule:
    e = program.eligibility
    return EligibilityRule(
        min_price=e.min_price,
        hired_before=e.hired_before,
        countries=frozenset(e.countries),
        excluded_roles=frozenset(e.excluded_roles),
        lookback_start=e.lookback_start or date.min,
        lookback_end=e.lookback_end or date.min,
    )


def exchange_rule(program: OptionExchange) -> ExchangeRule:
    return ExchangeRule(ratio=program.exchange.ratio, rounding=Rounding(program.exchange.rounding))


@dataclass(frozen=True, slots=True, kw_only=True)
class Holding:
    """An eligible employee and what an election would exchange."""

    person: PersonView
    lines: tuple[ExchangeLine, ...]

    @property
    def new_shares(self) -> int:
        return sum(line.new_shares for line in self.lines)

    def summary(self) -> list[dict[str, object]]:
        return [
            {
                "grant": ln.grant.grant_id,
                "grant_date": ln.grant.grant_date.isoformat(),
                "unexercised": ln.grant.unexercised,
                "price": str(ln.grant.price),
                "eligible": ln.eligible,
                "exchanged": ln.exchanged,
                "new_shares": ln.new_shares,
            }
            for ln in self.lines
        ]


def holdings(
    program: OptionExchange, people: Sequence[PersonView], grants: Sequence[GrantView]
) -> list[Holding]:
    """Return the eligible employees with at least one option priced at or above the minimum."""
    rule = eligibility_rule(program)
    out: list[Holding] = []
    for person in people:
        if person.kind != "employee" or person.hire_date is None:
            continue
        roles = frozenset(
            r
            for r, flag in (
                ("director", person.is_director),
                ("executive_officer", person.is_executive_officer),
            )
            if flag
        )
        holder = Holder(country=person.country or "", hire_date=person.hire_date, roles=roles)
        if not holder_eligible(holder, rule)[0] or not person.employed_on(program.open):
            continue
        mine = [
            OptionGrant(
                grant_id=g.external_id,
                grant_date=g.grant_date,
                unexercised=g.unexercised,
                price=g.price,
            )
            for g in grants
            if g.person_id == person.id
        ]
        lines = exchange_lines(mine, rule, exchange_rule(program))
        if any(ln.eligible and ln.grant.price >= rule.min_price for ln in lines):
            out.append(Holding(person=person, lines=lines))
    return out


def elected_at(facts: Sequence[Fact], person_id: int) -> Fact | None:
    """Return the election in force (the last election not followed by a withdrawal)."""
    current: Fact | None = None
    for fact in facts:
        if fact.person_id == person_id:
            current = fact if fact.kind == FactKind.ELECTION else None
    return current


def plan(program: OptionExchange, snapshot: Snapshot, now: datetime) -> Plan:
    """Return every notice of the offer and each eligible employee's election state at ``now``."""
    facts = [f for f in snapshot.facts if f.at <= now]
    program = with_recorded_extensions(program, facts)
    d = ox.offer_dates(program)
    cutoff = utc(d.cutoff)
    occurrence = program.open.isoformat()
    choices = snapshot.facts_until(
        min(now, cutoff), program.id, [FactKind.ELECTION, FactKind.WITHDRAWAL]
    )
    notices: list[Notice] = []
    obligations: list[ObligationState] = []
    cutoff_text = f"{d.cutoff:%A %-d %B %Y, %-I:%M %p} {d.cutoff.tzname()}"
    announce = at_send_time(program, program.open)
    # The invitations carry the calendar's own events, so mail and feeds show the same meeting;
    # a meeting removed from the file is cancelled as it was before (storage kept it). The
    # same for every invitee: built once.
    presentations = {e.key: e for e in ox.expand(program) if e.kind is EventKind.PRESENTATION}
    meetings = {
        key: _meeting(event, *snapshot.versions.get(key, (0, announce)))
        for key, event in presentations.items()
    }
    removed = {
        key: (
            _meeting(was, seq, changed)
            if (was := snapshot.events.get(key))
            else {"event_key": key, "sequence": seq}
        )
        for key, (seq, changed) in snapshot.versions.items()
        if key.startswith("presentation/") and key not in presentations
    }

    shared = {
        "program_name": program.name,
        "cutoff": cutoff_text,
        "cutoff_utc": cutoff.isoformat(),
        "grant_date": d.grant.isoformat(),
        "exercise_price_date": d.exercise_price.isoformat(),
    }

    days = send_days(program)
    for h in holdings(program, snapshot.people, snapshot.grants):
        holding = {"grants": h.summary(), "new_shares": h.new_shares}
        notice = NoticeMaker(
            program.id, occurrence, shared | holding, notices, days, snapshot.team.domain
        )
        pid = h.person.id
        election = elected_at(choices, pid)
        notice(h.person, "offer_announcement", "announcement", announce, cutoff)
        for p in program.presentations:
            key = f"presentation/{p.key}"
            seq, changed = snapshot.versions.get(key, (0, announce))
            notice(
                h.person,
                "presentation_invitation",
                f"invite/{p.key}/{seq}",
                # The first invitation goes with the announcement; an update when it changed.
                announce if seq == 0 else max(announce, changed),
                utc(localize(p.start, program.zone)),
                at_once=seq > 0,  # an update goes when the meeting changed
                **meetings[key],
                location=p.location,
                dial_in=p.dial_in,
            )
        for key, meeting in removed.items():
            # A meeting removed from the file: cancel it in every invitee's calendar.
            seq, changed = snapshot.versions[key]
            notice(
                h.person,
                "presentation_cancellation",
                f"cancel/{key}/{seq}",
                changed,
                changed + 7 * DAY,
                at_once=True,
                **meeting,
            )
        if election is None:
            # After a withdrawal the reminders are owed again: new identities, since the ones
            # cancelled by the election stay cancelled.
            # The withdrawal receipt already says when the cutoff is, so only the reminders
            # falling after the withdrawal are owed.
            withdrawals = [
                f for f in choices if f.person_id == pid and f.kind == FactKind.WITHDRAWAL
            ]
            epoch = f"/w{withdrawals[-1].id}" if withdrawals else ""
            since = withdrawals[-1].at if withdrawals else None
            for text, at in ox.reminder_instants(program):
                if since is not None and utc(at) <= since:
                    continue
                notice(
                    h.person,
                    "cutoff_reminder",
                    f"cutoff-reminder/{text}/{cutoff.isoformat()}{epoch}",
                    utc(at),
                    cutoff,
                    before=text,
                )
        for fact in choices:
            if fact.person_id == pid:
                notice(
                    h.person,
                    f"{fact.kind}_receipt",
                    f"receipt/{fact.id}",
                    fact.at,
                    fact.at + 7 * DAY,
                    at_once=True,
                    recorded=fact.at.isoformat(),
                )
        for ext in program.extensions:
            new_cutoff = utc(localize(ext.cutoff, program.zone))
            announced = at_send_time(program, ext.announced)
            notice(
                h.person,
                "offer_extension",
                f"extension/{new_cutoff.isoformat()}",
                min(announced, new_cutoff),
                new_cutoff,
            )
        state = "elected" if election else "not_elected"
        if election is not None:
            notice(
                h.person,
                "promise_to_grant",
                "promise",
                at_send_time(program, d.promise_to_grant),
                at_send_time(program, d.promise_to_grant) + 30 * DAY,
            )
            state = _after_cutoff(program, h, d, now, notice)
        obligations.append(
            ObligationState(
                program=program.id,
                occurrence=occurrence,
                person_id=pid,
                kind=FactKind.ELECTION,
                state=state,
                due=cutoff,
                details={
                    "new_shares": h.new_shares,
                    "elected_at": election.at.isoformat() if election else None,
                },
            )
        )
    return Plan(notices=notices, obligations=obligations)


def _meeting(event: Event, sequence: int, changed: datetime) -> dict[str, Any]:
    """Return the context of an invitation or cancellation of ``event`` at revision
    ``sequence``, last changed at ``changed`` (its DTSTAMP, as in the feeds)."""
    return {
        "event": event_to_dict(event),
        "event_key": event.key,
        "sequence": sequence,
        "last_modified": changed.isoformat(),
        "start": event.start.isoformat(),
        "end": event.end.isoformat(),
    }


def _after_cutoff(
    program: OptionExchange,
    h: Holding,
    d: ox.OfferDates,
    now: datetime,
    notice: NoticeMaker,
) -> str:
    """Plan the grant and vesting notices of a participant; return their obligation state."""
    if not h.person.employed_on(d.grant):
        # Not employed on the grant date: no grant, no grant notice, no vesting.
        return (
            "forfeited"
            if h.person.termination_date and h.person.termination_date <= now.date()
            else "elected"
        )
    grant_at = at_send_time(program, d.grant)
    tranches = ox.vesting(program, shares=h.new_shares, grant=d.grant)
    # The notice says what this offer's rules give (its schedule, its expiry), not a summary
    # written for one schedule.
    notice(
        h.person,
        "grant_notice",
        "grant",
        grant_at,
        grant_at + 30 * DAY,
        vesting=[{"date": t.date.isoformat(), "shares": str(t.shares)} for t in tranches],
        option_expiration=d.option_expiration.isoformat(),
    )
    for t in tranches:
        if not h.person.employed_on(t.date):
            break
        at = at_send_time(program, t.date)
        notice(
            h.person,
            "vesting_notice",
            f"vesting/{t.index}",
            at,
            at + 14 * DAY,
            tranche=t.index,
            tranches=len(tranches),
            vest_date=t.date.isoformat(),
            shares=int(t.shares),
            cumulative=int(t.cumulative),
        )
    return "granted" if now >= grant_at else "elected"


def late_election_error(program: OptionExchange, facts: Sequence[Fact], at: datetime) -> str | None:
    """Return why an election or withdrawal at ``at`` is refused, or None if it is in time."""
    cutoff = closes_at(program, facts)
    if at < utc(localize(datetime.combine(program.open, datetime.min.time()), program.zone)):
        return f"the offer opens on {program.open}"
    if at >= cutoff:
        return (
            f"the election cutoff was {instant_text(program, cutoff)}; nothing can change after it"
        )
    return None
