"""Rendering a dashboard page: one Jinja2 environment, one layout, autoescaped.

Templates live in ``scheduler/web/templates/dashboard/`` and extend ``base.html``. Every page
gets ``user`` (None on the sign-in page), ``csrf`` (the hidden input of this session's forms)
and ``active`` (the nav entry to highlight).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from jobs.digest import readable
from scheduler.web.auth import User

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"

_env = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=select_autoescape(enabled_extensions=("html", "svg"), default=True),
    undefined=StrictUndefined,
    auto_reload=False,
    trim_blocks=True,
    lstrip_blocks=True,
)
# A job's name as people say it ("CMRT follow up"), as the digest writes it.
_env.filters["job"] = readable


def render(
    request: Request, name: str, *, status: int = 200, active: str = "", **context: Any
) -> Response:
    """Answer with ``dashboard/{name}`` rendered in the layout."""
    user = request.scope.get("tickler.user")
    signed = user if isinstance(user, User) else None
    csrf = (
        Markup('<input type="hidden" name="csrf" value="{}">').format(signed.csrf)
        if signed is not None
        else Markup("")
    )
    body = _env.get_template(f"dashboard/{name}").render(
        user=signed, csrf=csrf, active=active, **context
    )
    return HTMLResponse(body, status_code=status)


def message(request: Request, status: int, title: str, body: str) -> Response:
    """Answer with a page that only says something (a refusal, a confirmation)."""
    return render(request, "message.html", status=status, title=title, body=body)
