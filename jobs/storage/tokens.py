"""Secret feed tokens: issued, resolved, rotated and revoked; only their hashes are stored.

A token is 32 random bytes (256 bits) in URL-safe base64, shown once when it is issued. The
database keeps its sha256, so a leaked database leaks no feed URL; a feed has at most one
active token (issuing a new one revokes the old). Every function runs in the caller's
transaction and never commits.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from jobs.storage.db import FeedToken

TOKEN_BYTES = 32
# token_urlsafe(32) is 43 characters; anything else cannot be a token and costs no query.
_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


def token_hash(token: str) -> str:
    """Return the stored form of ``token``: its sha256, in hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def resolve(session: Session, token: str) -> str | None:
    """Return the feed ``token`` opens, or None (unknown, revoked or malformed)."""
    if not _SHAPE.fullmatch(token):
        return None
    wanted = token_hash(token)
    row = session.scalar(select(FeedToken).where(FeedToken.token_hash == wanted))
    # The lookup is by hash, so its timing says nothing about the token itself; the
    # comparison guards against a collation that matched something other than equality.
    if row is None or row.revoked_at is not None:
        return None
    return row.feed if hmac.compare_digest(row.token_hash, wanted) else None


def active(session: Session, feed: str) -> list[FeedToken]:
    """Return the feed's tokens that are not revoked (at most one, unless two raced)."""
    return list(
        session.scalars(
            select(FeedToken)
            .where(FeedToken.feed == feed, FeedToken.revoked_at.is_(None))
            .order_by(FeedToken.id)
        )
    )


def issue(session: Session, feed: str, now: datetime) -> str:
    """Revoke the feed's active tokens and return a new one (the only time it is visible)."""
    revoke(session, feed, now)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    session.add(FeedToken(feed=feed, token_hash=token_hash(token), created_at=now))
    session.flush()
    return token


def revoke(session: Session, feed: str, now: datetime) -> int:
    """Revoke the feed's active tokens; return how many there were."""
    result = session.execute(
        update(FeedToken)
        .where(FeedToken.feed == feed, FeedToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def listing(session: Session) -> list[FeedToken]:
    """Return every token row (active and revoked), by feed then age."""
    return list(session.scalars(select(FeedToken).order_by(FeedToken.feed, FeedToken.id)))
