"""Who is signed in to the dashboard, with which role; CSRF; the security headers.

A session cookie holds a random secret (32 bytes) and its HMAC under TICKLER_SESSION_KEY:
a cookie that was not made here is refused without a query, and the database keeps only the
sha256 of the secret (``jobs.storage.users``), so a leaked table opens no session. Signing
in always makes a new secret (whatever cookie came with the request: no fixation); signing
out, or a change of the user's password, deletes the session rows. A session lasts
SESSION_HOURS from sign-in.

Every POST form carries ``csrf_field(request)``: the session's own random value, checked by
``check_csrf`` in constant time. The sign-in form, which has no session yet, is bound to a
cookie of its own (double submit, HMAC under the key).

Failed sign-ins are counted in memory, per username and per client address, over a sliding
window (``Attempts``). Why memory and not a table: a refused guess then writes nothing, so a
flood of them neither grows a table nor takes SQLite's write lock from the daemon, and
argon2's cost (about 50 ms of a core per check) already bounds the rate of one process. The
price: each replica counts on its own, and a restart forgets; the limits are per process.

TICKLER_AUTH_HEADER (off by default) trusts a header set by an authenticating proxy: its
value names an existing user, who is signed in without a password. Only for a daemon that
nothing but the proxy can reach: anyone else could send the header.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobs.storage import users
from jobs.storage.db import Role, begin_write
from scheduler.daemon.service import Service
from scheduler.web import passwords

__all__ = ["Role", "User", "check_csrf", "csrf_field", "require"]

SESSION_COOKIE = "tickler_session"
LOGIN_COOKIE = "tickler_login"
SESSION_HOURS = 12
PREFIX = "/dashboard"
# Failed sign-ins tolerated per window: a person mistyping, not a script guessing.
WINDOW_SECONDS = 900.0
PER_USERNAME = 5
PER_ADDRESS = 20
MAX_KEYS = 10_000
HEADERS = {
    # No script at all, styles from our own stylesheet only, no framing, no Referer (a
    # person's page URL names them).
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    """The signed-in user of a request; ``csrf`` is what this session's forms carry."""

    id: int
    username: str
    role: Role
    csrf: str

    def may(self, role: Role | str) -> bool:
        return self.role.rank >= Role(role).rank


class Refusal(Exception):
    """Raised where a request cannot go on; the dashboard answers with ``response``."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


@dataclass(slots=True)
class Attempts:
    """Failures per key within ``window`` seconds, in this process's memory."""

    limit: int
    window: float = WINDOW_SECONDS
    seen: dict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))

    def blocked(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        tries = self.seen.get(key)
        if tries is None:
            return False
        while tries and now - tries[0] > self.window:
            tries.popleft()
        return len(tries) >= self.limit

    def failed(self, key: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if len(self.seen) > MAX_KEYS:
            # Forget keys whose failures all left the window: memory stays bounded by the
            # keys active within one window, however many names and addresses come by.
            stale = [k for k, t in self.seen.items() if not t or now - t[-1] > self.window]
            for key_ in stale:
                del self.seen[key_]
        self.seen[key].append(now)

    def forget(self, key: str) -> None:
        self.seen.pop(key, None)


@dataclass(slots=True, kw_only=True)
class Auth:
    """The dashboard's sign-in state, built once per app (``auth_of(request)``)."""

    service: Service
    clock: Clock
    key: bytes
    secure: bool
    header: str | None
    public_url: str
    by_username: Attempts = field(default_factory=lambda: Attempts(PER_USERNAME))
    by_address: Attempts = field(default_factory=lambda: Attempts(PER_ADDRESS))

    @classmethod
    def from_service(cls, service: Service, clock: Clock) -> Auth:
        settings = service.settings
        key = (
            settings.session_key.get_secret_value().encode()
            if settings.session_key is not None
            else secrets.token_bytes(32)
        )
        return cls(
            service=service,
            clock=clock,
            key=key,
            secure=settings.public_url.startswith("https://"),
            header=settings.auth_header,
            public_url=settings.public_url.rstrip("/"),
        )

    def sign(self, value: str, purpose: str) -> str:
        return hmac.new(self.key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    def url(self, path: str) -> str:
        """Return ``path`` at TICKLER_PUBLIC_URL: redirects never trust the Host header."""
        return self.public_url + path


def auth_of(request: Request) -> Auth:
    """Return the sign-in state the dashboard's middleware put in the request's scope."""
    auth = request.scope.get("tickler.auth")
    if not isinstance(auth, Auth):
        raise RuntimeError("not a dashboard request: no sign-in state in its scope")
    return auth


def session_key(secret: str) -> str:
    """Return the stored form of a session secret: its sha256, in hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def cookie_value(auth: Auth, secret: str) -> str:
    return f"{secret}.{auth.sign(secret, 'session')}"


def cookie_secret(auth: Auth, value: str) -> str | None:
    """Return the secret of a session cookie this app made, or None."""
    secret, _, signature = value.partition(".")
    if not secret or len(value) > 200:
        return None
    return secret if hmac.compare_digest(signature, auth.sign(secret, "session")) else None


def local_path(target: str | None) -> str:
    """Return ``target`` when it is a dashboard path of this site, else the overview.

    ``next=`` comes from the query string: anything else (another host, ``//evil``, a
    scheme, a backslash trick) would make the sign-in page an open redirect.
    """
    if not target or "\\" in target or any(ord(c) < 0x20 for c in target):
        return PREFIX + "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(PREFIX + "/"):
        return PREFIX + "/"
    if parts.path.startswith(PREFIX + "/login") or parts.path.startswith(PREFIX + "/logout"):
        return PREFIX + "/"
    return target


async def current(request: Request) -> User | None:
    """Return the signed-in user of ``request``, or None (no, a bad or an expired session)."""
    cached = request.scope.get("tickler.user")
    if cached is not None:
        return cached if isinstance(cached, User) else None
    auth = auth_of(request)
    user = await (_from_header(auth, request) if auth.header else _from_cookie(auth, request))
    request.scope["tickler.user"] = user if user is not None else False
    return user


async def _from_cookie(auth: Auth, request: Request) -> User | None:
    secret = cookie_secret(auth, request.cookies.get(SESSION_COOKIE, ""))
    if secret is None:
        return None
    key, now = session_key(secret), auth.clock()

    def lookup() -> users.Signed | None:
        with auth.service.factory() as session:
            found = users.signed(session, key, now)
        if found is not None and now - found.last_seen_at >= users.SEEN_EVERY:
            with begin_write(auth.service.factory) as session:
                users.touch(session, key, now)
        return found

    found = await asyncio.to_thread(lookup)
    if found is None:
        return None
    account = found.account
    return User(id=account.id, username=account.username, role=account.role, csrf=found.csrf)


async def _from_header(auth: Auth, request: Request) -> User | None:
    assert auth.header is not None
    name = request.headers.get(auth.header, "").strip()
    if not name:
        return None

    def lookup() -> users.Account | None:
        with auth.service.factory() as session:
            return users.by_name(session, name)

    account = await asyncio.to_thread(lookup)
    if account is None or account.disabled:
        return None
    # No session row behind a proxy: the forms' value is bound to the user by the key.
    csrf = auth.sign(account.username, "proxy-csrf")
    return User(id=account.id, username=account.username, role=account.role, csrf=csrf)


async def require(request: Request, role: Role) -> User:
    """Return the signed-in user when their role is at least ``role``; else raise Refusal.

    No session: a redirect (303) to the sign-in page, which comes back here afterwards.
    A role too low: a 403 page naming the role needed.
    """
    user = await current(request)
    if user is None:
        auth = auth_of(request)
        if auth.header:
            raise Refusal(refusal_page(request, 403, "Not signed in", _proxy_refusal(auth)))
        wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        target = auth.url(f"{PREFIX}/login?next={quote(local_path(wanted), safe='')}")
        raise Refusal(RedirectResponse(target, status_code=303))
    if not user.may(role):
        raise Refusal(
            refusal_page(
                request,
                403,
                "Not allowed",
                f"This needs the {role.value} role; {user.username} is {user.role.value}.",
            )
        )
    return user


def _proxy_refusal(auth: Auth) -> str:
    return (
        f"The {auth.header} header names no user of this dashboard. An administrator adds "
        "users with `tickler users add`."
    )


def csrf_field(request: Request) -> Markup:
    """Return the hidden input every POST form of the signed-in user carries."""
    user = request.scope.get("tickler.user")
    if not isinstance(user, User):
        raise RuntimeError("csrf_field() needs require() first")
    return Markup('<input type="hidden" name="csrf" value="{}">').format(user.csrf)


def check_csrf(request: Request, form: Mapping[str, Any]) -> None:
    """Raise Refusal (403) unless ``form`` carries this session's CSRF value."""
    user = request.scope.get("tickler.user")
    sent = form.get("csrf")
    if (
        not isinstance(user, User)
        or not isinstance(sent, str)
        or not hmac.compare_digest(sent.encode(), user.csrf.encode())
    ):
        raise Refusal(
            refusal_page(
                request,
                403,
                "Please try again",
                "This form expired or came from another site; nothing was changed. "
                "Reload the page and send it again.",
            )
        )


def refusal_page(request: Request, status: int, title: str, body: str) -> Response:
    # Imported here: the page module imports this one for csrf_field.
    from scheduler.web.dashboard.pages import message

    return message(request, status, title, body)


# ------------------------------------------------------------------------------------------
# Signing in and out


def login_token(auth: Auth, cookie: str) -> str:
    return auth.sign(cookie, "login")


async def sign_in(
    auth: Auth, username: str, password: str, address: str, previous: str | None
) -> tuple[str | None, str]:
    """Check the credentials; return (cookie value, "") or (None, why it was refused).

    ``previous`` is the session cookie the request came with, if any: that session ends
    here, and the new one has a new secret (no fixation).
    """
    name_key, address_key = f"user:{username.casefold()}", f"address:{address}"
    if auth.by_username.blocked(name_key) or auth.by_address.blocked(address_key):
        return None, "too many"
    now = auth.clock()

    def check() -> users.Account | None:
        with auth.service.factory() as session:
            found = users.credentials(session, username)
        if found is None:
            passwords.verify(passwords.dummy(), password)  # the same time as a real check
            return None
        account, stored = found
        if account.disabled or not passwords.verify(stored, password):
            return None
        if passwords.needs_rehash(stored):
            with begin_write(auth.service.factory) as session:
                users.rehash(session, account.id, passwords.hash_password(password))
        return account

    account = await asyncio.to_thread(check)
    if account is None:
        auth.by_username.failed(name_key)
        auth.by_address.failed(address_key)
        return None, "wrong"
    auth.by_username.forget(name_key)
    secret = secrets.token_urlsafe(32)

    def store() -> None:
        with begin_write(auth.service.factory) as session:
            if previous is not None:
                users.end(session, session_key(previous))
            users.open_session(
                session,
                key=session_key(secret),
                user_id=account.id,
                csrf=secrets.token_urlsafe(32),
                now=now,
                expires_at=now + timedelta(hours=SESSION_HOURS),
            )

    await asyncio.to_thread(store)
    return cookie_value(auth, secret), ""


async def sign_out(auth: Auth, request: Request) -> None:
    secret = cookie_secret(auth, request.cookies.get(SESSION_COOKIE, ""))
    if secret is None:
        return

    def end() -> None:
        with begin_write(auth.service.factory) as session:
            users.end(session, session_key(secret))

    await asyncio.to_thread(end)


def set_session_cookie(auth: Auth, response: Response, value: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=SESSION_HOURS * 3600,
        httponly=True,
        samesite="lax",
        secure=auth.secure,
        path="/",
    )


def clear_session_cookie(auth: Auth, response: Response) -> None:
    response.delete_cookie(
        SESSION_COOKIE, httponly=True, samesite="lax", secure=auth.secure, path="/"
    )


class SecurityHeaders:
    """ASGI middleware: HEADERS on every response of the app it wraps."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [
                    (k.lower().encode(), v.encode())
                    for k, v in HEADERS.items()
                    if k.lower().encode() not in present
                ]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)
