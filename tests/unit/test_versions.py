"""The revision rule (``calendars.versions``) and the program-kind registry, as tables."""

from __future__ import annotations

import dataclasses
import typing
from datetime import UTC, date, datetime

import pytest

from calendars.events import Audience, Event, EventKind, day_event
from calendars.kinds import KINDS, kind_of
from calendars.versions import CANCELLED, Revision, fingerprint, revise
from config.programs import Program

T0 = datetime(2002, 12, 1, tzinfo=UTC)
T1 = datetime(2003, 1, 6, 17, 0, tzinfo=UTC)


def cutoff(day: date = date(2003, 1, 20), title: str = "Election cutoff") -> Event:
    return day_event(
        program="offer",
        key="cutoff",
        kind=EventKind.ELECTION_CUTOFF,
        title=title,
        day=day,
        timezone="America/Los_Angeles",
        audiences=frozenset({Audience.EMPLOYEES}),
    )


def stored(event: Event, sequence: int = 0) -> Revision:
    return Revision(fingerprint=fingerprint(event), sequence=sequence, last_modified=T0)


@pytest.mark.parametrize(
    ("before", "events", "expected"),
    [
        pytest.param({}, [cutoff()], {"cutoff": (0, T1)}, id="new event starts at 0"),
        pytest.param({"cutoff": stored(cutoff())}, [cutoff()], {}, id="unchanged: nothing"),
        pytest.param(
            {"cutoff": stored(cutoff(), 2)},
            [cutoff(date(2003, 2, 3))],
            {"cutoff": (3, T1)},
            id="extension moves the date: one up",
        ),
        pytest.param(
            {"cutoff": stored(cutoff())},
            [cutoff(title="Election cutoff (extended)")],
            {"cutoff": (1, T1)},
            id="new title: one up",
        ),
        pytest.param(
            {"cutoff": stored(cutoff(), 4)}, [], {"cutoff": (5, T1)}, id="removed: cancelled"
        ),
        pytest.param(
            {"cutoff": Revision(fingerprint=CANCELLED, sequence=5, last_modified=T0)},
            [],
            {},
            id="already cancelled: nothing",
        ),
        pytest.param(
            {"cutoff": Revision(fingerprint=CANCELLED, sequence=5, last_modified=T0)},
            [cutoff()],
            {"cutoff": (6, T1)},
            id="back after a cancellation: above every earlier copy",
        ),
    ],
)
def test_revise(
    before: dict[str, Revision], events: list[Event], expected: dict[str, tuple[int, datetime]]
) -> None:
    got = revise(before, events, T1)
    assert {k: (r.sequence, r.last_modified) for k, r in got.items()} == expected
    assert all(
        (r.fingerprint == CANCELLED) == (k not in {e.key for e in events}) for k, r in got.items()
    )


def test_fingerprint_ignores_what_a_calendar_does_not_show() -> None:
    event = cutoff()
    assert fingerprint(dataclasses.replace(event, details={"x": 1})) == fingerprint(event)
    assert fingerprint(dataclasses.replace(event, location="Irvine")) != fingerprint(event)


def test_every_program_model_is_registered_once() -> None:
    models = set(typing.get_args(Program))
    assert models, "Program is a union of models"
    assert [k.model for k in KINDS if k.model in models] == [k.model for k in KINDS]
    assert {k.model for k in KINDS} == models
    assert len(KINDS) == len(models)


def test_an_unregistered_model_is_refused_by_name() -> None:
    class Unknown:
        pass

    with pytest.raises(TypeError, match="unknown program type Unknown"):
        kind_of(Unknown())  # type: ignore[arg-type]
