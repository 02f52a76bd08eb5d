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


@cache
def _text_template(template_dir: Path | None, name: str) -> tuple[Template, Template] | None:
    """Return the templates of ``name``'s subject line and of its body; None if there is none.

    The two are compiled apart: were the whole file rendered and then cut at its first line
    break, a line break in data (a program's name in the subject) would end the subject there
    and push the rest of it into the body. So the ``Subject:`` line must be a template of its
    own (no ``{% if %}`` left open at its end).
    """
    env = environment(template_dir)
    assert env.loader is not None
    try:
        source, _, _ = env.loader.get_source(env, name)
    except TemplateNotFound:
        return None
    head, _, body = source.partition("\n")
    if not head.startswith("Subject:"):
        raise TemplateError(f"{name} must start with a 'Subject:' line")
    # The body keeps its line numbers (errors point at the file's lines).
    return env.from_string(head.removeprefix("Subject:")), env.from_string("\n" + body)


def render(template: str, context: Mapping[str, Any], template_dir: Path | None = None) -> Rendered:
    """Render ``template`` with ``context`` into a subject, a text body and an HTML body."""
    try:
        texts = _text_template(template_dir, f"{template}.txt")
        parts = None if texts is None else (texts[0].render(context), texts[1].render(context))
    except TemplateError:
        raise
    except Exception as exc:  # jinja2 raises many types; all mean the same to the sender
        raise TemplateError(f"{template}.txt: {exc}") from None
    if parts is None:
        raise TemplateError(f"no template {template}.txt")
    head, body = parts
    # A subject is one line: a line break in data becomes a space, never a new header.
    subject = " ".join(head.split())
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
