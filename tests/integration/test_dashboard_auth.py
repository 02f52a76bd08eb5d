"""The dashboard's sign-in: accounts from the CLI, sessions, CSRF, the rate limit, roles.

Every request goes through the real app (``create_app``) over httpx's ASGI transport, with
the cookies a browser would keep; accounts are made by ``tickler users``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from jobs.storage import users as stored
from jobs.storage.db import Role, WebSession, begin_write
from scheduler.cli.main import cli
from scheduler.daemon.service import Service
from scheduler.web import auth, passwords
from scheduler.web.http import create_app
from tests.world import OPEN_WEEK, FakeClock, seeded, service

PASSWORD = "correct horse battery"
KEY = "session-key-for-tests-0123456789abcdef"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_TOKEN = re.compile(r'name="token" value="([^"]+)"')


@pytest.fixture
def svc(db_url: str, tmp_path: Path) -> Iterator[Service]:
    made = seeded(service(db_url, tmp_path, session_key=KEY))
    try:
        yield made
    finally:
        made.engine.dispose()


def add_user(svc: Service, name: str, role: Role, password: str = PASSWORD) -> None:
    result = CliRunner().invoke(
        cli,
        ["users", "add", name, "--role", role.value, "--password-stdin"],
        input=password + "\n",
        env={"TICKLER_DATABASE_URL": svc.settings.database_url},
    )
    assert result.exit_code == 0, result.output


async def operator_only(request: Request) -> Response:
    user = await auth.require(request, Role.OPERATOR)
    return PlainTextResponse(f"hello {user.username}")


@pytest.fixture
async def client(svc: Service) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(svc, clock=FakeClock(OPEN_WEEK))
    # A page that needs the operator role, plugged in as a page module would plug one in.
    [mount] = [r for r in app.routes if isinstance(r, Mount) and r.path == auth.PREFIX]
    mount.routes.append(Route("/operate", operator_only, methods=["GET"]))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as c:
        yield c


async def sign_in(
    client: httpx.AsyncClient, name: str, password: str = PASSWORD, target: str = ""
) -> httpx.Response:
    form = await client.get("/dashboard/login" + (f"?next={target}" if target else ""))
    token = _TOKEN.search(form.text)
    assert token is not None, form.text
    return await client.post(
        "/dashboard/login" + (f"?next={target}" if target else ""),
        data={"token": token.group(1), "username": name, "password": password},
    )


def plant(client: httpx.AsyncClient, value: str) -> None:
    """Make ``value`` the browser's session cookie, as a replay or an attacker would."""
    client.cookies.clear()
    client.cookies.set(auth.SESSION_COOKIE, value, domain="127.0.0.1")


async def csrf_of(client: httpx.AsyncClient) -> str:
    page = await client.get("/dashboard/")
    found = _CSRF.search(page.text)
    assert found is not None, page.text
    return found.group(1)


def test_passwords_are_hashed_with_argon2id() -> None:
    stored_hash = passwords.hash_password(PASSWORD)
    assert stored_hash.startswith("$argon2id$") and PASSWORD not in stored_hash
    assert passwords.verify(stored_hash, PASSWORD)
    assert not passwords.verify(stored_hash, PASSWORD + "!")
    assert not passwords.verify("not a hash", PASSWORD)
    assert passwords.weakness("short") == "a password needs at least 12 characters"
    assert passwords.weakness(PASSWORD) is None


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
async def test_no_page_without_a_session(client: httpx.AsyncClient) -> None:
    for path in ("/dashboard/", "/dashboard/operate"):
        response = await client.get(path)
        assert response.status_code == 303
        assert response.headers["location"] == (
            f"http://127.0.0.1:8080/dashboard/login?next={path.replace('/', '%2F')}"
        )
        assert response.headers["x-frame-options"] == "DENY"
    assert (await client.get("/dashboard")).headers["location"].endswith("/dashboard/")
    # A forged cookie is no session either.
    plant(client, "made-up.0000")
    assert (await client.get("/dashboard/")).status_code == 303


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
async def test_sign_in_then_out(svc: Service, client: httpx.AsyncClient) -> None:
    add_user(svc, "dana", Role.VIEWER)
    wrong = await sign_in(client, "dana", "wrong password!")
    assert wrong.status_code == 401 and "Wrong username or password." in wrong.text
    unknown = await sign_in(client, "nobody", PASSWORD)
    assert unknown.status_code == 401 and "Wrong username or password." in unknown.text

    signed = await sign_in(client, "dana", target="/dashboard/operate")
    assert signed.status_code == 303
    assert signed.headers["location"] == "http://127.0.0.1:8080/dashboard/operate"
    cookie = signed.headers["set-cookie"]
    assert cookie.startswith(f"{auth.SESSION_COOKIE}=")
    for attribute in ("HttpOnly", "Path=/", "SameSite=lax"):
        assert attribute in cookie
    assert "Secure" not in cookie  # TICKLER_PUBLIC_URL is http here

    page = await client.get("/dashboard/")
    assert page.status_code == 200 and "dana" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src" not in csp and "default-src 'none'" in csp
    assert page.headers["referrer-policy"] == "no-referrer"

    kept = client.cookies.get(auth.SESSION_COOKIE)
    out = await client.post("/dashboard/logout", data={"csrf": await csrf_of(client)})
    assert out.status_code == 303
    assert (await client.get("/dashboard/")).status_code == 303
    # The cookie of the ended session, replayed: the session is gone from the database.
    plant(client, kept or "")
    assert (await client.get("/dashboard/")).status_code == 303


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_an_open_redirect_is_not_followed(svc: Service, client: httpx.AsyncClient) -> None:
    add_user(svc, "dana", Role.VIEWER)
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "/feeds/x"):
        signed = await sign_in(client, "dana", target=target.replace("/", "%2F"))
        assert signed.headers["location"] == "http://127.0.0.1:8080/dashboard/"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
async def test_a_new_password_ends_every_session(svc: Service, client: httpx.AsyncClient) -> None:
    add_user(svc, "dana", Role.VIEWER)
    await sign_in(client, "dana")
    assert (await client.get("/dashboard/")).status_code == 200
    result = CliRunner().invoke(
        cli,
        ["users", "passwd", "dana", "--password-stdin"],
        input="another long password\n",
        env={"TICKLER_DATABASE_URL": svc.settings.database_url},
    )
    assert result.exit_code == 0, result.output
    assert "1 session(s) ended" in result.output
    assert (await client.get("/dashboard/")).status_code == 303
    assert (await sign_in(client, "dana")).status_code == 401
    assert (await sign_in(client, "dana", "another long password")).status_code == 303


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_signing_in_makes_a_new_session(svc: Service, client: httpx.AsyncClient) -> None:
    """Session fixation: whatever cookie the browser had, sign-in issues a new secret."""
    add_user(svc, "dana", Role.VIEWER)
    planted = auth.cookie_value(
        auth.Auth.from_service(svc, FakeClock(OPEN_WEEK)), "planted-by-an-attacker"
    )
    plant(client, planted)
    await sign_in(client, "dana")
    first = client.cookies.get(auth.SESSION_COOKIE)
    assert first and first != planted
    # Signing in again from a signed-in browser ends the first session.
    await sign_in(client, "dana")
    second = client.cookies.get(auth.SESSION_COOKIE)
    assert second and second != first
    plant(client, first)
    assert (await client.get("/dashboard/")).status_code == 303


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_forms_without_the_csrf_value_are_refused(
    svc: Service, client: httpx.AsyncClient
) -> None:
    add_user(svc, "dana", Role.VIEWER)
    # The sign-in form needs its own value, bound to its cookie.
    await client.get("/dashboard/login")
    forged = await client.post(
        "/dashboard/login", data={"token": "0" * 64, "username": "dana", "password": PASSWORD}
    )
    assert forged.status_code == 403 and auth.SESSION_COOKIE not in client.cookies
    await sign_in(client, "dana")
    for data in ({}, {"csrf": "guessed"}):
        refused = await client.post("/dashboard/logout", data=data)
        assert refused.status_code == 403 and "came from another site" in refused.text
    assert (await client.get("/dashboard/")).status_code == 200  # still signed in


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_failed_sign_ins_are_limited(svc: Service, client: httpx.AsyncClient) -> None:
    add_user(svc, "dana", Role.VIEWER)
    add_user(svc, "sam", Role.VIEWER)
    for _ in range(auth.PER_USERNAME):
        assert (await sign_in(client, "dana", "wrong password!")).status_code == 401
    # The right password, now too late: the name is locked for the window.
    refused = await sign_in(client, "dana")
    assert refused.status_code == 429 and "Too many failed sign-ins" in refused.text
    # Another name from the same address still works, until the address's own limit.
    assert (await sign_in(client, "sam")).status_code == 303
    for n in range(auth.PER_ADDRESS - auth.PER_USERNAME):
        assert (await sign_in(client, f"nobody{n}", "wrong password!")).status_code == 401
    assert (await sign_in(client, "sam")).status_code == 429


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_role_too_low_is_refused(svc: Service, client: httpx.AsyncClient) -> None:
    add_user(svc, "vic", Role.VIEWER)
    add_user(svc, "olga", Role.OPERATOR)
    await sign_in(client, "vic")
    refused = await client.get("/dashboard/operate")
    assert refused.status_code == 403
    assert "This needs the operator role; vic is viewer." in refused.text
    await sign_in(client, "olga")
    assert (await client.get("/dashboard/operate")).text == "hello olga"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_the_proxy_header_maps_to_an_existing_user(db_url: str, tmp_path: Path) -> None:
    svc = seeded(service(db_url, tmp_path, auth_header="X-Forwarded-User"))
    try:
        add_user(svc, "olga", Role.OPERATOR)
        app = create_app(svc, clock=FakeClock(OPEN_WEEK))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tickler") as client:
            assert (await client.get("/dashboard/")).status_code == 403
            stranger = await client.get("/dashboard/", headers={"X-Forwarded-User": "mallory"})
            assert stranger.status_code == 403 and "names no user" in stranger.text
            page = await client.get("/dashboard/", headers={"X-Forwarded-User": "olga"})
            assert page.status_code == 200 and "olga" in page.text
    finally:
        svc.engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_users_command(svc: Service) -> None:
    env = {"TICKLER_DATABASE_URL": svc.settings.database_url}
    runner = CliRunner()

    def run(*args: str, password: str = PASSWORD) -> tuple[int, str]:
        result = runner.invoke(cli, ["users", *args], input=password + "\n", env=env)
        return result.exit_code, result.output

    assert run("add", "dana", "--role", "operator", "--password-stdin") == (
        0,
        "added dana (operator)\n",
    )
    code, out = run("add", "dana", "--role", "viewer", "--password-stdin")
    assert (code, out) == (2, "error: user 'dana' already exists\n")
    code, out = run("add", "sam", "--role", "boss", "--password-stdin")
    assert code == 2 and "'boss' is not one of 'viewer', 'operator', 'admin'" in out
    code, out = run("add", "sam", "--role", "viewer", "--password-stdin", password="short")
    assert (code, out) == (2, "error: a password needs at least 12 characters\n")
    code, out = run("add", "<script>", "--role", "viewer", "--password-stdin")
    assert code == 2 and "username '<script>'" in out
    code, out = run("list")
    assert code == 0 and "dana" in out and "operator" in out and "sam" not in out
    assert run("passwd", "nobody", "--password-stdin")[0] == 2
    assert run("remove", "dana") == (0, "removed dana\n")
    assert run("remove", "dana") == (2, "error: no user 'dana'\n")
    with svc.factory() as session:
        assert stored.listing(session) == []


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_prompted_password_is_asked_twice(svc: Service) -> None:
    env = {"TICKLER_DATABASE_URL": svc.settings.database_url}
    result = CliRunner().invoke(
        cli,
        ["users", "add", "dana", "--role", "viewer"],
        input=f"{PASSWORD}\nsomething else entirely\n{PASSWORD}\n{PASSWORD}\n",
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output
    with begin_write(svc.factory) as session:
        found = stored.credentials(session, "dana")
    assert found is not None and passwords.verify(found[1], PASSWORD)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
async def test_a_session_ends_after_its_hours(svc: Service) -> None:
    add_user(svc, "dana", Role.VIEWER)
    clock = FakeClock(OPEN_WEEK)
    transport = httpx.ASGITransport(app=create_app(svc, clock=clock))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as client:
        await sign_in(client, "dana")
        clock.advance(timedelta(hours=auth.SESSION_HOURS) - timedelta(minutes=1))
        assert (await client.get("/dashboard/")).status_code == 200
        with svc.factory() as session:
            [seen] = session.scalars(select(WebSession.last_seen_at)).all()
        assert seen == clock.now  # a use more than a minute after the last is noted
        clock.advance(timedelta(minutes=1))
        assert (await client.get("/dashboard/")).status_code == 303


async def test_disable_enable_and_role_change(svc: Service, client: httpx.AsyncClient) -> None:
    """A disabled account's session ends and its sign-in is refused; enabled, it signs in; a
    new role ends the sessions begun under the old one and takes effect at the next sign-in."""
    env = {"TICKLER_DATABASE_URL": svc.settings.database_url}

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, ["users", *args], env=env)
        return result.exit_code, result.output

    add_user(svc, "dana", Role.VIEWER)
    await sign_in(client, "dana")
    assert (await client.get("/dashboard/operate")).status_code == 403
    assert run("disable", "dana") == (0, "disabled dana; 1 session(s) ended\n")
    assert (await client.get("/dashboard/")).status_code == 303
    assert (await sign_in(client, "dana")).status_code == 401
    assert run("enable", "dana") == (0, "enabled dana\n")
    assert (await sign_in(client, "dana")).status_code == 303
    assert run("role", "dana", "operator") == (0, "dana is now operator; 1 session(s) ended\n")
    assert (await client.get("/dashboard/")).status_code == 303
    await sign_in(client, "dana")
    assert (await client.get("/dashboard/operate")).text == "hello dana"
    # Bad input names what is wrong and changes nothing.
    assert run("disable", "nobody") == (2, "error: no user 'nobody'\n")
    code, out = run("role", "dana", "boss")
    assert code == 2 and "'boss' is not one of" in out
    with svc.factory() as session:
        [account] = stored.listing(session)
    assert (account.role, account.disabled) == (Role.OPERATOR, False)
