"""Render an outbox row into a message: Jinja2 templates, a deployment may override any of them.

A template is ``TEMPLATE.txt``: a ``Subject:`` line, then the body. ``TEMPLATE.html``, when
present, is the HTML body; otherwise the HTML part is the text body, escaped, in paragraphs.
Templates come from the configured directory first, then the shipped ones. A variable the
context lacks is an error (StrictUndefined), never a silently blank sentence.
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
    TemplateNotFound,
    select_autoescape,
)
from markupsafe import Markup, escape


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
    )


def render(template: str, context: Mapping[str, Any], template_dir: Path | None = None) -> Rendered:
    """Render ``template`` with ``context`` into a subject, a text body and an HTML body."""
    env = environment(template_dir)
    try:
        source = env.get_template(f"{template}.txt").render(context)
    except TemplateNotFound:
        raise TemplateError(f"no template {template}.txt") from None
    except Exception as exc:  # jinja2 raises many types; all mean the same to the sender
        raise TemplateError(f"{template}.txt: {exc}") from None
    head, _, body = source.partition("\n")
    if not head.startswith("Subject:"):
        raise TemplateError(f"{template}.txt must start with a 'Subject:' line")
    # A subject is one line: a newline in data can never start a new header.
    subject = " ".join(head.removeprefix("Subject:").split())
    text = body.strip() + "\n"
    try:
        html = env.get_template(f"{template}.html").render(context)
    except TemplateNotFound:
        html = _paragraphs(text)
    except Exception as exc:
        raise TemplateError(f"{template}.html: {exc}") from None
    return Rendered(subject=subject, text=text, html=html)


def _paragraphs(text: str) -> str:
    parts = [p for p in text.split("\n\n") if p.strip()]
    body = "".join(
        Markup("<p>{}</p>\n").format(Markup("<br>\n").join(escape(line) for line in p.splitlines()))
        for p in parts
    )
    return f"<!doctype html>\n<html><body>\n{body}</body></html>\n"
