"""Signed action links: what lets a recipient answer from the email, without an account.

A link's token names one obligation and one action (person, program, occurrence, action) and
when it stops working, and carries an HMAC-SHA256 of all of that under the deployment's secret
(``TICKLER_ACTION_SECRET``). Nothing is stored: the signature is the proof, so a token cannot be
altered (another person, another action, a later expiry) without the secret, and changing the
secret revokes every link at once. A replayed or forwarded link can only do what its recipient
could, and its page shows what is already recorded before anything else.

Pure: the secret and ``now`` are arguments.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

VERSION = "1"
# A link keeps working a while after the message's purpose ends, so that a late click gets a
# page saying why nothing can change (the offer closed at ...), not an opaque "expired".
GRACE = timedelta(days=14)
# More than any real token (the identifiers are short): a longer one costs no HMAC.
MAX_TOKEN = 600


class Action(enum.StrEnum):
    ACKNOWLEDGE = "acknowledge"  # the FCPA policy
    ELECT = "elect"  # elect or withdraw in the option exchange
    CMRT = "cmrt"  # upload the supplier's CMRT


# The messages that ask for something, and what their link lets the recipient do.
JOB_ACTIONS: dict[str, Action] = {
    "fcpa_request": Action.ACKNOWLEDGE,
    "fcpa_reminder": Action.ACKNOWLEDGE,
    "fcpa_overdue": Action.ACKNOWLEDGE,
    "offer_announcement": Action.ELECT,
    "offer_extension": Action.ELECT,
    "cutoff_reminder": Action.ELECT,
    "election_receipt": Action.ELECT,
    "withdrawal_receipt": Action.ELECT,
    "cmrt_request": Action.CMRT,
    "cmrt_follow_up": Action.CMRT,
    "cmrt_correction": Action.CMRT,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """One person's permission to do one action on one obligation, until ``expires``."""

    person_id: int
    program: str
    occurrence: str
    action: Action
    expires: datetime

    def __post_init__(self) -> None:
        if self.expires.tzinfo is None:
            raise ValueError("a link's expiry must be aware")
        for name in ("program", "occurrence"):
            if "|" in getattr(self, name):
                raise ValueError(f"a link's {name} cannot hold '|'")


class LinkError(Exception):
    """A token that opens nothing: ``reason`` is ``invalid`` or ``expired``."""

    def __init__(self, reason: str, link: Link | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.link = link  # set for an expired link: its page can say what it was for


def sign(link: Link, secret: bytes) -> str:
    """Return the URL-safe token of ``link`` under ``secret``."""
    body = "|".join(
        (
            VERSION,
            str(link.person_id),
            link.program,
            link.occurrence,
            link.action.value,
            str(int(link.expires.timestamp())),
        )
    ).encode()
    return f"{_b64(body)}.{_b64(_mac(secret, body))}"


def verify(token: str, secret: bytes, now: datetime) -> Link:
    """Return the link ``token`` carries; raise LinkError when it is not one or has expired.

    The signature is checked (in constant time) before any of the token is believed.
    """
    if len(token) > MAX_TOKEN or token.count(".") != 1:
        raise LinkError("invalid")
    head, _, tail = token.partition(".")
    try:
        body, mac = _unb64(head), _unb64(tail)
    except (binascii.Error, ValueError):
        raise LinkError("invalid") from None
    if not hmac.compare_digest(mac, _mac(secret, body)):
        raise LinkError("invalid")
    try:
        version, person, program, occurrence, action, expires = body.decode().split("|")
        link = Link(
            person_id=int(person),
            program=program,
            occurrence=occurrence,
            action=Action(action),
            expires=datetime.fromtimestamp(int(expires), UTC),
        )
    except ValueError:  # signed by us, so only an older format: refuse it all the same
        raise LinkError("invalid") from None
    if version != VERSION:
        raise LinkError("invalid")
    if now >= link.expires:
        raise LinkError("expired", link)
    return link


def _mac(secret: bytes, body: bytes) -> bytes:
    # The domain prefix keeps these MACs apart from any other use of the same secret.
    return hmac.new(secret, b"tickler-action-link:" + body, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    if not text or not text.replace("-", "").replace("_", "").isalnum() or not text.isascii():
        raise ValueError(text)
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
