"""Dashboard accounts and browser sessions: every query on ``users`` and ``web_sessions``.

Hashing is the caller's business (``scheduler.web.passwords``): this module stores and finds
hashes, never a password. A session row is keyed by the sha256 of the cookie's secret. Every
function runs in the caller's transaction and never commits; none reads the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from jobs.storage.db import Role, User, WebSession

#: A session's last_seen_at is written at most this often: a page view is a read, not a write.
SEEN_EVERY = timedelta(minutes=1)


class UserError(ValueError):
    """A request about accounts that cannot be done as asked (the message says why)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """A user as the dashboard sees one: no hash."""

    id: int
    username: str
    role: Role
    disabled: bool
    created_at: datetime
    password_changed_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Signed:
    """A live session and its user."""

    account: Account
    csrf: str
    expires_at: datetime
    last_seen_at: datetime


def _account(user: User) -> Account:
    return Account(
        id=user.id,
        username=user.username,
        role=user.role,
        disabled=user.disabled,
        created_at=user.created_at,
        password_changed_at=user.password_changed_at,
    )


def add(session: Session, *, username: str, password_hash: str, role: Role, now: datetime) -> int:
    """Create the account; raise UserError when the name is taken. Return its id."""
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise UserError(f"user {username!r} already exists")
    user = User(
        username=username,
        password_hash=password_hash,
        role=role,
        created_at=now,
        password_changed_at=now,
        disabled=False,
    )
    session.add(user)
    session.flush()
    return user.id


def remove(session: Session, username: str) -> None:
    """Delete the account and its sessions; raise UserError when there is none."""
    user_id = session.scalar(select(User.id).where(User.username == username))
    if user_id is None:
        raise UserError(f"no user {username!r}")
    session.execute(delete(WebSession).where(WebSession.user_id == user_id))
    session.execute(delete(User).where(User.id == user_id))


def listing(session: Session, *, limit: int = 1000) -> list[Account]:
    """Return the accounts by name (at most ``limit``: accounts are people, not rows of data)."""
    rows = session.scalars(select(User).order_by(User.username).limit(limit))
    return [_account(u) for u in rows]


def set_password(session: Session, username: str, password_hash: str, now: datetime) -> int:
    """Store the new hash and end every session of the user; return how many were ended."""
    user_id = session.scalar(select(User.id).where(User.username == username))
    if user_id is None:
        raise UserError(f"no user {username!r}")
    session.execute(
        update(User)
        .where(User.id == user_id)
        .values(password_hash=password_hash, password_changed_at=now)
    )
    return end_all(session, user_id)


def change(
    session: Session, username: str, *, disabled: bool | None = None, role: Role | None = None
) -> int:
    """Disable or enable the account, or give it another role; end its sessions (a session
    carries what its user could do when it began). Return how many sessions were ended."""
    user_id = session.scalar(select(User.id).where(User.username == username))
    if user_id is None:
        raise UserError(f"no user {username!r}")
    values: dict[str, object] = {}
    if disabled is not None:
        values["disabled"] = disabled
    if role is not None:
        values["role"] = role
    session.execute(update(User).where(User.id == user_id).values(**values))
    return end_all(session, user_id)


def credentials(session: Session, username: str) -> tuple[Account, str] | None:
    """Return the account named ``username`` and its stored hash, or None."""
    user = session.scalar(select(User).where(User.username == username))
    return None if user is None else (_account(user), user.password_hash)


def by_name(session: Session, username: str) -> Account | None:
    user = session.scalar(select(User).where(User.username == username))
    return None if user is None else _account(user)


def rehash(session: Session, user_id: int, password_hash: str) -> None:
    """Replace a hash made with older parameters (same password: sessions stay)."""
    session.execute(update(User).where(User.id == user_id).values(password_hash=password_hash))


def open_session(
    session: Session, *, key: str, user_id: int, csrf: str, now: datetime, expires_at: datetime
) -> None:
    """Store a new session; drop the expired ones on the way (sign-ins are rare, rows few)."""
    session.execute(delete(WebSession).where(WebSession.expires_at <= now))
    session.add(
        WebSession(
            id=key,
            user_id=user_id,
            created_at=now,
            last_seen_at=now,
            expires_at=expires_at,
            csrf=csrf,
        )
    )
    session.flush()


def signed(session: Session, key: str, now: datetime) -> Signed | None:
    """Return the live session ``key`` and its user, or None (unknown, expired, disabled).

    A read only: the caller writes ``touch`` when ``last_seen_at`` is older than SEEN_EVERY.
    """
    row = session.execute(
        select(WebSession, User)
        .join(User, User.id == WebSession.user_id)
        .where(WebSession.id == key, WebSession.expires_at > now)
    ).one_or_none()
    if row is None:
        return None
    web, user = row
    if user.disabled:
        return None
    return Signed(
        account=_account(user),
        csrf=web.csrf,
        expires_at=web.expires_at,
        last_seen_at=web.last_seen_at,
    )


def touch(session: Session, key: str, now: datetime) -> None:
    """Note that session ``key`` was used at ``now``."""
    session.execute(update(WebSession).where(WebSession.id == key).values(last_seen_at=now))


def end(session: Session, key: str) -> None:
    """End one session (logout)."""
    session.execute(delete(WebSession).where(WebSession.id == key))


def end_all(session: Session, user_id: int) -> int:
    result = session.execute(delete(WebSession).where(WebSession.user_id == user_id))
    return int(result.rowcount)  # type: ignore[attr-defined]


def live_sessions(session: Session, user_id: int, now: datetime) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(WebSession)
            .where(WebSession.user_id == user_id, WebSession.expires_at > now)
        )
        or 0
    )
