"""The pure planners: who is owed which message, when, as the facts change."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from calendars import cmrt_notices, fcpa_notices, offer_notices
from calendars.notices import Fact, GrantView, Notice, PersonView, Plan, Snapshot, Team
from config.facts import FactKind
from config.loader import load_programs
from config.programs import ConflictMinerals, Fcpa, OptionExchange

PROGRAMS = {p.id: p for p in load_programs(None)}
T = TypeVar("T")


def program(cls: type[T], program_id: str) -> T:
    found = PROGRAMS[program_id]
    assert isinstance(found, cls)
    return found


CM = program(ConflictMinerals, "conflict-minerals-2016")
OFFER = program(OptionExchange, "option-exchange-2003")
FCPA = program(Fcpa, "fcpa")
TEAM = Team(compliance="compliance@example.com", compliance_officer="cfo@example.com")


def z(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def supplier(n: int, tier: str = "direct") -> PersonView:
    return PersonView(
        id=n,
        kind="supplier",
        external_id=f"S{n:03}",
        name=f"Supplier {n}",
        email=f"s{n}@example.com",
        tier=tier,
        owner_email="buyer@example.com",
    )


def employee(n: int, **kw: Any) -> PersonView:
    base: dict[str, Any] = dict(
        id=n,
        kind="employee",
        external_id=f"E{n}",
        name=f"Employee {n}",
        email=f"e{n}@example.com",
        country="US",
        hire_date=date(1999, 4, 12),
        role="employee",
    )
    return PersonView(**(base | kw))


SLIDE_9 = [
    (date(2000, 5, 20), 800, "6.00"),
    (date(2001, 3, 5), 1000, "4.50"),
    (date(2002, 2, 28), 500, "2.18"),
    (date(2002, 7, 1), 500, "0.40"),
]


def grants(person_id: int) -> list[GrantView]:
    return [
        GrantView(
            id=person_id * 10 + i,
            person_id=person_id,
            external_id=f"G{person_id}-{i}",
            grant_date=d,
            unexercised=u,
            price=Decimal(p),
        )
        for i, (d, u, p) in enumerate(SLIDE_9)
    ]


def fact(n: int, kind: str, at: str, person: int | None, program: str, **payload: Any) -> Fact:
    return Fact(
        id=n, kind=FactKind(kind), at=z(at), program=program, person_id=person, payload=payload
    )


def snap(
    people: list[PersonView], facts: Sequence[Fact] = (), gs: Sequence[GrantView] = ()
) -> Snapshot:
    return Snapshot(people=people, grants=list(gs), facts=list(facts), team=TEAM)


def by_job(notices: list[Notice]) -> Counter[str]:
    return Counter(n.job for n in notices)


# --- conflict minerals ------------------------------------------------------------------------

LATE = z("2017-07-01T00:00:00+00:00")


def test_silent_supplier_gets_request_follow_ups_and_escalation() -> None:
    plan = cmrt_notices.plan(CM, snap([supplier(1)]), LATE)
    mine = [n for n in plan.notices if n.person_id == 1]
    assert [(n.job, n.due) for n in mine] == [
        ("cmrt_request", z("2017-01-09T09:00:00-08:00")),
        ("cmrt_follow_up", z("2017-02-17T09:00:00-08:00")),
        ("cmrt_follow_up", z("2017-02-24T09:00:00-08:00")),
        ("cmrt_follow_up", z("2017-03-03T09:00:00-08:00")),
        ("cmrt_escalation", z("2017-03-10T09:00:00-08:00")),
    ]
    # each follow-up is superseded by the next; the escalation goes to the internal owner
    assert mine[1].expires == mine[2].due
    assert mine[4].recipient == "buyer@example.com"
    assert plan.obligations[0].state == "escalated"


def test_wave_two_is_for_indirect_suppliers_after_dst() -> None:
    plan = cmrt_notices.plan(CM, snap([supplier(2, "indirect")]), LATE)
    follow_ups = [n.due for n in plan.notices if n.job == "cmrt_follow_up"]
    # 2017-03-12 is the spring-forward Sunday: 09:00 is 17:00Z before it and 16:00Z after
    assert follow_ups == [
        z("2017-03-03T17:00:00+00:00"),
        z("2017-03-10T17:00:00+00:00"),
        z("2017-03-17T16:00:00+00:00"),
    ]


@pytest.mark.parametrize(
    ("at", "complete", "jobs", "state"),
    [
        ("2017-02-01T10:00:00-08:00", True, {"cmrt_request": 1}, "complete"),
        ("2017-02-20T10:00:00-08:00", True, {"cmrt_request": 1}, "complete"),
        (
            "2017-02-01T10:00:00-08:00",
            False,
            {"cmrt_request": 1, "cmrt_correction": 3},
            "incomplete",
        ),
    ],
)
def test_a_response_stops_follow_ups(
    at: str, complete: bool, jobs: dict[str, int], state: str
) -> None:
    facts = [fact(1, "cmrt_response", at, 1, CM.id, complete=complete)]
    plan = cmrt_notices.plan(CM, snap([supplier(1)], facts), LATE)
    assert by_job([n for n in plan.notices if n.person_id == 1]) == jobs
    assert plan.obligations[0].state == state


def test_a_future_response_has_not_happened_yet() -> None:
    facts = [fact(1, "cmrt_response", "2017-02-20T10:00:00-08:00", 1, CM.id)]
    plan = cmrt_notices.plan(CM, snap([supplier(1)], facts), z("2017-02-15T00:00:00+00:00"))
    assert by_job(plan.notices)["cmrt_follow_up"] == 3
    assert plan.obligations[0].state == "pending"


def test_correction_cadence_anchors_on_the_response() -> None:
    facts = [fact(7, "cmrt_response", "2017-02-01T10:00:00-08:00", 1, CM.id, complete=False)]
    plan = cmrt_notices.plan(CM, snap([supplier(1)], facts), LATE)
    corrections = [n for n in plan.notices if n.job == "cmrt_correction"]
    assert [n.due for n in corrections] == [
        z("2017-02-01T18:00:00+00:00"),
        z("2017-02-08T18:00:00+00:00"),
        z("2017-02-15T18:00:00+00:00"),
    ]
    assert corrections[0].step == "correction/7/0"
    # a later complete response ends it
    facts.append(fact(8, "cmrt_response", "2017-02-10T10:00:00-08:00", 1, CM.id, complete=True))
    plan = cmrt_notices.plan(CM, snap([supplier(1)], facts), LATE)
    assert by_job(plan.notices)["cmrt_correction"] == 0


def test_identities_are_stable_and_unique() -> None:
    people = [
        supplier(i, t) for i, t in enumerate(["contract_manufacturer", "direct", "indirect"] * 3, 1)
    ]
    first = cmrt_notices.plan(CM, snap(people), LATE).notices
    again = cmrt_notices.plan(CM, snap(people), LATE).notices
    assert [n.identity for n in first] == [n.identity for n in again]
    assert len({n.identity for n in first}) == len(first)
    assert len({n.message_id for n in first}) == len(first)


# --- option exchange --------------------------------------------------------------------------

DONE = z("2006-02-01T00:00:00+00:00")


def offer_plan(people: list[PersonView], facts: Sequence[Fact] = (), now: datetime = DONE) -> Plan:
    gs = [g for p in people for g in grants(p.id)]
    return offer_notices.plan(OFFER, snap(people, facts, gs), now)


@pytest.mark.parametrize(
    ("person", "eligible"),
    [
        (employee(1), True),
        (employee(2, country="GB"), False),
        (employee(3, is_director=True), False),
        (employee(4, is_executive_officer=True), False),
        (employee(5, hire_date=date(2002, 12, 19)), False),
        (employee(6, hire_date=date(2002, 12, 18)), True),
        (employee(7, termination_date=date(2002, 12, 1)), False),
    ],
)
def test_eligibility(person: PersonView, eligible: bool) -> None:
    plan = offer_plan([person])
    assert bool(plan.notices) is eligible


def test_holder_who_never_elects() -> None:
    plan = offer_plan([employee(1)])
    assert by_job(plan.notices) == {
        "offer_announcement": 1,
        "presentation_invitation": 2,
        "cutoff_reminder": 3,
    }
    reminders = sorted(n.due for n in plan.notices if n.job == "cutoff_reminder")
    # The cutoff is 21:00 on Martin Luther King Day (a federal holiday): "1d" (Sunday) and
    # "3h" (the holiday) cannot move forward past the cutoff, so they go the Friday before.
    assert reminders == [
        z("2003-01-13T09:00:00-08:00"),  # "7d": at the program's send time
        z("2003-01-17T09:00:00-08:00"),  # "1d" is a Sunday, then MLK Day: the Friday before
        z("2003-01-17T18:00:00-08:00"),  # "3h": real time before the cutoff, moved likewise
    ]
    assert all(
        n.expires == z("2003-01-21T05:00:00+00:00")
        for n in plan.notices
        if n.job == "cutoff_reminder"
    )
    assert plan.obligations[0].state == "not_elected"


def test_participant_gets_receipt_promise_grant_and_vesting() -> None:
    facts = [fact(1, "election", "2003-01-10T10:00:00-08:00", 1, OFFER.id)]
    plan = offer_plan([employee(1)], facts)
    assert by_job(plan.notices) == {
        "offer_announcement": 1,
        "presentation_invitation": 2,
        "election_receipt": 1,
        "promise_to_grant": 1,
        "grant_notice": 1,
        "vesting_notice": 25,
    }
    grant = next(n for n in plan.notices if n.job == "grant_notice")
    assert grant.due == z("2003-07-21T09:00:00-07:00")
    assert grant.context["new_shares"] == 1725  # 600 + 750 + 375 (slide 9)
    vesting = [n for n in plan.notices if n.job == "vesting_notice"]
    assert vesting[0].context["vest_date"] == "2004-01-21"
    assert vesting[0].context["shares"] == 863  # half of 1725, rounded cumulatively
    assert vesting[-1].context["vest_date"] == "2006-01-21"
    assert sum(n.context["shares"] for n in vesting) == 1725
    assert plan.obligations[0].state == "granted"


def test_withdrawal_restores_reminders() -> None:
    facts = [
        fact(1, "election", "2003-01-10T10:00:00-08:00", 1, OFFER.id),
        fact(2, "withdrawal", "2003-01-12T10:00:00-08:00", 1, OFFER.id),
    ]
    plan = offer_plan([employee(1)], facts)
    jobs = by_job(plan.notices)
    assert jobs["cutoff_reminder"] == 3 and jobs["promise_to_grant"] == 0
    assert jobs["election_receipt"] == 1 and jobs["withdrawal_receipt"] == 1


@pytest.mark.parametrize(
    ("termination", "grant", "vesting"),
    [
        (date(2003, 5, 15), 0, 0),  # left before the grant date: no grant
        (date(2003, 7, 21), 0, 0),  # terminated on the grant date: not employed on it
        (date(2004, 6, 1), 1, 5),  # left after: vesting stops (2004-01-21 .. 2004-05-21)
    ],
)
def test_termination(termination: date, grant: int, vesting: int) -> None:
    facts = [fact(1, "election", "2003-01-10T10:00:00-08:00", 1, OFFER.id)]
    plan = offer_plan([employee(1, termination_date=termination)], facts)
    assert by_job(plan.notices)["grant_notice"] == grant
    assert by_job(plan.notices)["vesting_notice"] == vesting


def test_extension_moves_reminders_and_sends_one_notice() -> None:
    ext = fact(
        5,
        "offer_extension",
        "2003-01-15T12:00:00-08:00",
        None,
        OFFER.id,
        cutoff="2003-02-03T21:00:00",
    )
    before_ext = offer_plan([employee(1)], [], z("2003-01-15T00:00:00+00:00"))
    after_ext = offer_plan([employee(1)], [ext], z("2003-01-16T00:00:00+00:00"))
    reminders = sorted(n.due for n in after_ext.notices if n.job == "cutoff_reminder")
    assert reminders == [
        z("2003-01-27T09:00:00-08:00"),  # "7d": at the program's send time
        z("2003-02-03T09:00:00-08:00"),  # "1d" is a Sunday: Monday morning, before the cutoff
        z("2003-02-04T02:00:00+00:00"),
    ]
    old = {n.identity for n in before_ext.notices if n.job == "cutoff_reminder"}
    new = {n.identity for n in after_ext.notices if n.job == "cutoff_reminder"}
    assert not old & new  # the old reminders are cancelled, the new ones planned
    assert by_job(after_ext.notices)["offer_extension"] == 1
    grant = next(n for n in after_ext.notices if n.job == "offer_announcement")
    assert grant.context["grant_date"] == "2003-08-04"


@pytest.mark.parametrize(
    ("at", "refused"),
    [
        ("2003-01-20T20:59:59-08:00", None),
        ("2003-01-20T21:00:00-08:00", "cutoff was 2003-01-20 21:00 PST (2003-01-21T05:00Z)"),
        ("2003-01-21T05:00:01+00:00", "cutoff was"),
        ("2002-12-18T12:00:00-08:00", "opens on 2002-12-19"),
    ],
)
def test_late_election(at: str, refused: str | None) -> None:
    error = offer_notices.late_election_error(OFFER, [], z(at))
    assert (error is None) if refused is None else (refused in (error or ""))


# --- FCPA -------------------------------------------------------------------------------------


def test_new_hire_onboarding_then_yearly() -> None:
    hire = employee(1, hire_date=date(2018, 2, 1))
    # every_cycle: the onboarding cycle is long spent by then (test_fcpa_spent).
    plan = fcpa_notices.plan(FCPA, snap([hire]), z("2019-06-01T00:00:00+00:00"), every_cycle=True)
    cycles = sorted({n.occurrence for n in plan.notices})
    assert cycles[:2] == ["2018-03-03", "2019-03-31"]  # onboarding 30 days after start
    first = [n for n in plan.notices if n.occurrence == "2018-03-03"]
    assert by_job(first) == {
        "fcpa_request": 1,
        "fcpa_reminder": 2,
        "fcpa_overdue": 4,
        "fcpa_escalation": 1,
    }
    escalation = next(n for n in first if n.job == "fcpa_escalation")
    assert escalation.recipient == "cfo@example.com"


def test_every_overdue_follow_up_is_sendable() -> None:
    # fcpa.toml escalates as the 4th follow-up goes out: that must not expire it.
    hire = employee(1, hire_date=date(2018, 2, 1))
    plan = fcpa_notices.plan(FCPA, snap([hire]), z("2019-06-01T00:00:00+00:00"), every_cycle=True)
    chain = sorted(
        (n for n in plan.notices if n.job == "fcpa_overdue" and n.occurrence == "2018-03-03"),
        key=lambda n: n.due,
    )
    assert [n.step for n in chain] == [f"overdue/{k}" for k in range(1, 5)]
    for n in plan.notices:
        assert n.expires > n.due, n.identity


@pytest.mark.parametrize(
    ("started", "first_renewal"),
    [
        # Started long before the policy took effect (2017-01-01; onboarding due 2017-01-31):
        # the 2017 anniversary would be weeks after signing, so the first renewal is 2018's.
        (date(2010, 2, 15), date(2018, 2, 15)),
        (date(2010, 12, 20), date(2018, 12, 20)),
        (date(2010, 1, 1), date(2018, 1, 1)),
        # Started after: the first anniversary, about a year after signing.
        (date(2018, 2, 1), date(2019, 2, 1)),
        (date(2020, 2, 29), date(2021, 2, 28)),
    ],
)
def test_anniversary_renewal_about_a_year_after_onboarding(
    started: date, first_renewal: date
) -> None:
    anniversary = Fcpa.model_validate({**FCPA.model_dump(), "renewal": {"mode": "anniversary"}})
    person = employee(1, hire_date=started)
    cycles = fcpa_notices.cycles(anniversary, person, until=date(2030, 1, 1))
    assert cycles[0].onboarding
    assert cycles[1].due == first_renewal
    assert (cycles[1].due - cycles[0].due).days >= 365 - anniversary.onboarding_due_days


def test_acknowledgment_stops_reminders() -> None:
    hire = employee(1, hire_date=date(2018, 2, 1))
    facts = [fact(1, "fcpa_ack", "2018-02-10T10:00:00-08:00", 1, FCPA.id, policy_version="2017-1")]
    plan = fcpa_notices.plan(
        FCPA, snap([hire], facts), z("2018-06-01T00:00:00+00:00"), every_cycle=True
    )
    first = [n for n in plan.notices if n.occurrence == "2018-03-03"]
    assert by_job(first) == {"fcpa_request": 1}
    assert plan.obligations[0].state == "acknowledged"


def test_no_cycle_after_termination() -> None:
    person = employee(1, hire_date=date(2018, 2, 1), termination_date=date(2018, 12, 31))
    plan = fcpa_notices.plan(FCPA, snap([person]), z("2021-06-01T00:00:00+00:00"), every_cycle=True)
    assert {n.occurrence for n in plan.notices} == {"2018-03-03"}


def test_suppliers_are_not_representatives() -> None:
    assert fcpa_notices.plan(FCPA, snap([supplier(1)]), LATE).notices == []
