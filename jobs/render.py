"""Render an outbox row into a message: Jinja2 templates, a deployment may override any of them.

A template is ``TEMPLATE.txt``: a ``Subject:`` line, then the body. ``TEMPLATE.html``, when
present, is the HTML body; otherwise the HTML part is the shared layout (``layout.html``,
autoescaped) around the text body's paragraphs, each one reflowed (a hard wrap of the text is not
a line break in HTML), with the message's action as a button when it has one (``action_url``).
Templates come from the configured directory first, then the shipped ones, and are read and
compiled once per process (edit an override, then restart). A variable the context lacks is an
error (StrictUndefined), never a silently blank sentence.

The date filters (``day``, ``when``, ``time_of_day``) write in the language of the folder the
message's template came from: the recipient's locale for a locale folder (``fr/`` chosen for
``fr-CA`` writes Canadian French dates), English for the top level, so an English template
never carries a French date. A message whose context has no locale (a person without one, an
owner's escalation, a digest) is written in the deployment's default locale, when it has one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache, lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    pass_context,
    select_autoescape,
)
from jinja2.runtime import Context
from markupsafe import Markup, escape

from calendars.action_links import GRACE, JOB_ACTIONS, Link, sign
from calendars.notices import Notice
from calendars.wording import spoken_day, spoken_instant, spoken_time
from config.locales import fallbacks, parse_locale


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkMaker:
    """Make the signed action link of a message that asks for something (``action_url``)."""

    secret: bytes
    base_url: str  # the address recipients reach (``public_url``), without a trailing slash

    def context(self, notice: Notice) -> dict[str, str]:
        """Return ``action`` and ``action_url`` for ``notice``'s template: empty for a message
        that asks nothing (templates test ``action_url is defined``)."""
        action = JOB_ACTIONS.get(notice.job)
        if action is None or notice.person_id is None:
            return {}
        # The link outlives the message's purpose a little (GRACE), so that a late click gets
        # a page saying what closed and when rather than a bare "expired".
        expires: datetime = max(notice.expires, notice.due) + GRACE
        link = Link(
            person_id=notice.person_id,
            program=notice.program,
            occurrence=notice.occurrence,
            action=action,
            expires=expires,
        )
        url = f"{self.base_url.rstrip('/')}/act/{sign(link, self.secret)}"
        return {"action": action.value, "action_url": url}


# What the button of a message's page says, by the kind of its link. English: a locale's
# layout.html (``fr/layout.html``) writes its own, keyed by ``action`` (see layout.html).
ACTION_LABELS = {
    "acknowledge": "Read and acknowledge the policy",
    "elect": "Elect or withdraw",
    "cmrt": "Upload your CMRT",
}


# What the link to a document a program names says, by its context key (``document`` in the
# layout); English, like ACTION_LABELS.
DOCUMENT_LABELS = {
    "policy_url": "Read the policy",
    "template_url": "Download the CMRT template",
}


class TemplateError(Exception):
    """A template is missing or does not render: a permanent failure of that message."""


class _Environment(Environment):
    """An Environment whose templates see their globals as one plain dict.

    Jinja2 lays a template's globals over the environment's as a ``ChainMap`` and copies that
    into every render's context: a Python-level walk of both maps, three renders a message
    (subject, body, layout), a fifth of rendering one. Nothing here changes globals once a
    template is loaded (Jinja2's own advice), so a snapshot reads the same.
    """

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        return {**self.globals, **(d or {})}


@cache
def environment(template_dir: Path | None) -> Environment:
    loaders: list[Any] = [PackageLoader("jobs", "templates")]
    if template_dir is not None:
        loaders.insert(0, FileSystemLoader(str(template_dir)))
    env = _Environment(
        loader=ChoiceLoader(loaders),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        keep_trailing_newline=True,
        # Settings are read once at start; so are templates. Reloading would stat each file at
        # every message, and the .html that does not exist would be looked for at every message.
        auto_reload=False,
    )
    env.filters["day"] = _day
    env.filters["when"] = _when
    env.filters["time_of_day"] = _time_of_day
    return env


# The context key render() sets to the locale the date filters write in (absent: English).
DATE_LOCALE = "date_locale"


@pass_context
def _day(context: Context, value: object) -> str:
    """Return an ISO date (``2017-02-10``) as people read it: ``Friday 10 February 2017``
    (``fr``: ``vendredi 10 février 2017``).

    Anything else (a date already written out, by a template override's context) is returned
    as it is.
    """
    return _spoken_day(str(value), context.get(DATE_LOCALE))


@lru_cache(maxsize=4096)
def _spoken_day(value: str, locale: str | None) -> str:
    # A batch of messages names the same few days: format once per day, not per message.
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return value
    return spoken_day(day, locale)


@pass_context
def _when(context: Context, value: object) -> str:
    """Return an ISO instant in the message's zone (``timezone`` in the context, which delivery
    sets to the program's), the zone named: ``Thursday 19 December 2002, 5:05 PM PST``."""
    return _spoken_instant(
        str(value), str(context.get("timezone") or "UTC"), context.get(DATE_LOCALE), False
    )


@pass_context
def _time_of_day(context: Context, value: object) -> str:
    """Return only the time of an ISO instant, as ``when`` writes it: ``4:30 PM PST``."""
    return _spoken_instant(
        str(value), str(context.get("timezone") or "UTC"), context.get(DATE_LOCALE), True
    )


@lru_cache(maxsize=4096)
def _spoken_instant(value: str, timezone: str, locale: str | None, time_only: bool) -> str:
    # A batch names the same few instants (a cutoff, a meeting): format each once, not per
    # message (Babel's formatting doubled the cost of rendering one).
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        return value
    zone = ZoneInfo(timezone)
    if instant.tzinfo is None:  # a wall time of the program's (a meeting's start)
        instant = instant.replace(tzinfo=zone)
    speak = spoken_time if time_only else spoken_instant
    return speak(instant, zone, locale)


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


def _locale(context: Mapping[str, Any], default: str | None) -> str | None:
    """Return the locale a message is written in: the context's own (the recipient's), else
    ``default`` (the deployment's ``TICKLER_LOCALE``), else None (English).

    A recipient's locale wins whole: ``de`` with no ``de/`` folder falls back to the top level
    (English), never to the default's folder, so an explicit ``en`` keeps English too.
    """
    own = context.get("locale")
    if own:
        try:
            return parse_locale(str(own))
        except ValueError:  # stored by hand, not through an import: as if it had none
            pass
    return default


def _folders(locale: str | None) -> list[str]:
    """Return the prefixes to look a template up under, in order: ``locale``'s folders
    (``fr-CA/``, then ``fr/``), then the top level (``""``, English)."""
    return [*(f"{f}/" for f in fallbacks(locale)), ""]


def render(
    template: str,
    context: Mapping[str, Any],
    template_dir: Path | None = None,
    *,
    default_locale: str | None = None,
) -> Rendered:
    """Render ``template`` with ``context`` into a subject, a text body and an HTML body.

    With a ``locale`` in the context (the recipient's), or else ``default_locale`` (the
    deployment's, normalised), the templates of that locale's folder come first (``fr-CA/``
    then ``fr/``, in the configured directory, then in the shipped ones), and the top level
    (English) is the fallback. A message's text and its own HTML
    come from the same folder, so a translation is never mixed with another language: its
    dates are written in the recipient's locale for a locale folder, in English for the top
    level, and the layout comes from that folder or a more general one.
    """
    locale = _locale(context, default_locale)
    folders = _folders(locale)
    folder = ""
    try:
        texts = None
        for candidate in folders:
            texts = _text_template(template_dir, f"{candidate}{template}.txt")
            if texts is not None:
                folder = candidate
                break
        context = {**context, DATE_LOCALE: locale if folder else None}
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
        found = _template(template_dir, f"{folder}{template}.html")
        html = (
            _layout(text, context, folders[folders.index(folder) :], template_dir)
            if found is None
            else found.render(context)
        )
    except Exception as exc:
        raise TemplateError(f"{template}.html: {exc}") from None
    return Rendered(subject=subject, text=text, html=html)


def _layout(
    text: str, context: Mapping[str, Any], folders: list[str], template_dir: Path | None
) -> str:
    """Return the shared HTML layout around ``text``: its paragraphs reflowed, its list items
    (lines starting with ``-``) as a list, and the action's button when there is one.

    The layout is the first of ``folders`` that has one (those of the text's own language,
    then the top level), so English text never gets a translated frame."""
    # escape() and plain text, not Markup.format: the same escaping, without a string
    # Formatter per paragraph (the layout was a third of rendering a message).
    blocks: list[Markup] = []
    for paragraph in text.split("\n\n"):
        lines = [line.strip() for line in paragraph.splitlines() if line.strip()]
        if not lines:
            continue
        items = [line for line in lines if line.startswith("- ")]
        head = [line for line in lines if not line.startswith("- ")]
        if head:
            blocks.append(Markup(f"<p>{escape(' '.join(head))}</p>"))
        if items:
            blocks.append(
                Markup("<ul>" + "".join(f"<li>{escape(i[2:])}</li>" for i in items) + "</ul>")
            )
    url = context.get("action_url")
    layout = next(
        (
            found
            for f in folders
            if (found := _template(template_dir, f"{f}layout.html")) is not None
        ),
        None,
    )
    if layout is None:
        raise TemplateError("no template layout.html")
    action = context.get("action")
    return layout.render(
        blocks=blocks,
        action_url=url,
        # The kinds too, so that a locale's layout can write its own labels, the English
        # ones its fallback.
        action=str(action) if url else None,
        action_label=ACTION_LABELS.get(str(action), "Open") if url else None,
        contact=context.get("contact"),
        # The document the program names (program files check it is one http(s) URL).
        **next(
            (
                {"document_url": context[key], "document": key, "document_label": label}
                for key, label in DOCUMENT_LABELS.items()
                if context.get(key)
            ),
            {"document_url": None, "document": None, "document_label": None},
        ),
    )


def thread_headers(notice: Notice) -> tuple[tuple[str, str], ...]:
    """Return ``In-Reply-To`` and ``References`` that put every message of one obligation (a
    request, its reminders, follow-ups, corrections and receipts) in one thread.

    The thread's root is a Message-ID of its own, derived from the obligation and on the
    domain of the message's own Message-ID, never sent (as GitHub threads an issue's
    notifications): each message refers to it, so clients thread them whichever arrive or
    are deleted.
    """
    if notice.job not in JOB_ACTIONS or notice.person_id is None:
        return ()
    domain = notice.domain
    key = f"{notice.program}/{notice.occurrence}/{notice.recipient_key}"
    root = f"<thread.{hashlib.sha256(key.encode()).hexdigest()[:32]}.{notice.program}@{domain}>"
    return (("In-Reply-To", root), ("References", root))
