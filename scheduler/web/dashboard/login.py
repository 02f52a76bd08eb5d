"""Signing in and out: ``/dashboard/login`` (GET the form, POST the credentials) and
``/dashboard/logout`` (POST, with the session's CSRF value)."""

from __future__ import annotations

import hmac
import secrets

from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from scheduler.web import auth
from scheduler.web.auth import LOGIN_COOKIE, PREFIX, SESSION_COOKIE, Refusal, auth_of
from scheduler.web.dashboard.pages import message, render

# A username and a password are short; a form of megabytes is not a sign-in.
MAX_FIELD = 2048


async def login(request: Request) -> Response:
    state = auth_of(request)
    target = auth.local_path(request.query_params.get("next"))
    if state.header:
        # Behind the proxy there is nothing to type: the header decides (require() refuses).
        await auth.require(request, auth.Role.VIEWER)
        return RedirectResponse(state.url(target), status_code=303)
    if request.method == "POST":
        return await _post(request, target)
    return _form(request, target, status=200, error="")


def _form(request: Request, target: str, *, status: int, error: str) -> Response:
    state = auth_of(request)
    cookie = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        status=status,
        title="Sign in",
        error=error,
        next=target,
        token=auth.login_token(state, cookie),
    )
    response.set_cookie(
        LOGIN_COOKIE,
        cookie,
        httponly=True,
        samesite="strict",
        secure=state.secure,
        path=f"{PREFIX}/login",
    )
    return response


async def _post(request: Request, target: str) -> Response:
    state = auth_of(request)
    try:
        async with request.form(max_files=0, max_fields=8, max_part_size=MAX_FIELD) as form:
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
    except MultiPartException as exc:
        return message(request, 400, "The form could not be read", str(exc))
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    sent = fields.get("token", "")
    if not cookie or not hmac.compare_digest(sent, auth.login_token(state, cookie)):
        return _form(
            request,
            target,
            status=403,
            error="This form expired or came from another site. Please sign in again.",
        )
    username, password = fields.get("username", "").strip(), fields.get("password", "")
    if not username or not password or len(username) > 64:
        return _form(request, target, status=400, error="Give your username and password.")
    address = request.client.host if request.client else "unknown"
    secret = auth.cookie_secret(state, request.cookies.get(SESSION_COOKIE, ""))
    value, why = await auth.sign_in(state, username, password, address, secret)
    if value is None:
        if why == "too many":
            return _form(
                request,
                target,
                status=429,
                error="Too many failed sign-ins. Wait a quarter of an hour and try again.",
            )
        return _form(request, target, status=401, error="Wrong username or password.")
    response = RedirectResponse(state.url(target), status_code=303)
    auth.set_session_cookie(state, response, value)
    return response


async def logout(request: Request) -> Response:
    state = auth_of(request)
    await auth.require(request, auth.Role.VIEWER)
    try:
        async with request.form(max_files=0, max_fields=4, max_part_size=MAX_FIELD) as form:
            auth.check_csrf(request, form)
    except MultiPartException as exc:
        raise Refusal(message(request, 400, "The form could not be read", str(exc))) from None
    await auth.sign_out(state, request)
    response = RedirectResponse(state.url(f"{PREFIX}/login"), status_code=303)
    auth.clear_session_cookie(state, response)
    return response


def routes() -> list[Route]:
    return [
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]
