"""Render an outbox row into a message: Jinja2 templates, a deployment may override any of them.

A template is ``TEMPLATE.txt``: a ``Subject:`` line, then the body. ``TEMPLATE.html``, when
present, is the HTML body; otherwise the HTML part is the text body, escaped, in paragraphs.
Templates come from the configured directory first, then the shipped ones, and are read and
compiled once per process (edit an override, then restart). A variable the context lacks is an
error (StrictUndefined), never a silently blank sentence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    select_autoescape,
)
from markupsafe import escape


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str


class TemplateError(Exception):
    """A template is missing or does not render: a permanent failure of that message."""


@cache
def environment(template_dir: Path | None) -> Environment:
    loaders: list[Any] = [PackageLoader("jobs", "templates")]
    if template_dir is not None:
        loaders.insert(0, FileSystemLoader(str(template_dir)))
    return Environment(
        loader=ChoiceLoader(loaders),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        keep_trailing_newline=True,
        # Settings are read once at start; so are templates. Reloading would stat each file at
        # every message, and the .html that does not exist would be looked for at every message.
        auto_reload=False,
    )


@cache
def _template(template_dir: Path | None, name: str) -> Template | None:
    """Return the compiled template ``name``, None if there is none (a cached answer too)."""
    try:
        return environment(template_dir).get_template(name)
    except TemplateNotFound:
        return None


def render(template: str, context: Mapping[str, Any], template_dir: Path | None = None) -> Rendered:
    """Render ``template`` with ``context`` into a subject, a text body and an HTML body."""
    try:
        found = _template(template_dir, f"{template}.txt")
        source = None if found is None else found.render(context)
    except Exception as exc:  # jinja2 raises many types; all mean the same to the sender
        raise TemplateError(f"{template}.txt: {exc}") from None
    if source is None:
        raise TemplateError(f"no template {template}.txt")
    head, _, body = source.partition("\n")
    if not head.startswith("Subject:"):
        raise TemplateError(f"{template}.txt must start with a 'Subject:' line")
    # A subject is one line: a newline in data can never start a new header.
    subject = " ".join(head.removeprefix("Subject:").split())
    text = body.strip() + "\n"
    try:
        found = _template(template_dir, f"{template}.html")
        html = _paragraphs(text) if found is None else found.render(context)
    except Exception as exc:
        raise TemplateError(f"{template}.html: {exc}") from None
    return Rendered(subject=subject, text=text, html=html)


def _paragraphs(text: str) -> str:
    # Escaping leaves line breaks where they are: escape once, then cut into paragraphs.
    escaped = str(escape(text))
    body = "".join(
        "<p>" + "<br>\n".join(p.splitlines()) + "</p>\n" for p in escaped.split("\n\n") if p.strip()
    )
    return f"<!doctype html>\n<html><body>\n{body}</body></html>\n"
