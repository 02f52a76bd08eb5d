"""Signed action links: a token opens exactly its obligation and action, until it expires."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from calendars.action_links import Action, Link, LinkError, sign, verify

SECRET = b"s" * 32
NOW = datetime(2003, 1, 10, 12, 0, tzinfo=UTC)
LINK = Link(
    person_id=7,
    program="option-exchange-2002",
    occurrence="offer",
    action=Action.ELECT,
    expires=datetime(2003, 2, 3, 5, 0, tzinfo=UTC),
)


def test_a_signed_link_verifies_to_itself() -> None:
    assert verify(sign(LINK, SECRET), SECRET, NOW) == LINK


def test_an_expired_link_says_what_it_was_for() -> None:
    with pytest.raises(LinkError) as raised:
        verify(sign(LINK, SECRET), SECRET, LINK.expires)
    assert (raised.value.reason, raised.value.link) == ("expired", LINK)
    assert verify(sign(LINK, SECRET), SECRET, LINK.expires - timedelta(seconds=1)) == LINK


def _tamper(token: str) -> str:
    # Another person: the body re-encoded with the old signature.
    import base64

    head, tail = token.split(".")
    body = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)).replace(b"|7|", b"|8|")
    return base64.urlsafe_b64encode(body).decode().rstrip("=") + "." + tail


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b.c",
        "x" * 700,
        "!!!.???",
        _tamper(sign(LINK, SECRET)),
        sign(LINK, b"another deployment's secret"),
        sign(LINK, SECRET)[:-2],
    ],
)
def test_tampered_foreign_and_malformed_tokens_are_invalid(token: str) -> None:
    with pytest.raises(LinkError, match="invalid"):
        verify(token, SECRET, NOW)


def test_a_link_cannot_be_made_ambiguous() -> None:
    with pytest.raises(ValueError, match=re.escape("'|'")):
        Link(person_id=1, program="a|b", occurrence="x", action=Action.CMRT, expires=NOW)


def test_the_page_limiter_refuses_past_its_limit_and_forgets_idle_keys() -> None:
    from scheduler.web import actions

    limiter = actions.Limiter(limit=2, window=60.0)
    assert [limiter.allow("a"), limiter.allow("a"), limiter.allow("a")] == [True, True, False]
    assert limiter.allow("b")
    limiter.window = 0.0  # every try is now past the window
    for n in range(actions.MAX_KEYS + 1):
        limiter.seen[f"idle{n}"].append(0.0)
    assert limiter.allow("c") and len(limiter.seen) == 1
