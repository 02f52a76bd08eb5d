"""``tickler feeds``: issue, rotate, revoke and list feed URLs; export any feed to a file.

A feed's token is shown once, when it is issued: the database keeps only its hash. ``url``
issues one for a feed that has none; ``rotate`` issues a new one and retires the old (the old
URL answers 404 at once); ``revoke`` retires it without a replacement.

Storage and the feed renderer are imported inside the commands: registering them must stay
cheap, so that ``tickler --help`` and ``plan`` start fast (see ``main``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import click

from scheduler.cli.context import Context, fail, refuse
from scheduler.cli.terminal import cell, shown

if TYPE_CHECKING:
    from scheduler.daemon.service import Service
    from scheduler.web.feeds import FeedSource

FEEDS = click.argument("names", metavar="FEED...", nargs=-1, required=True)


def _service(obj: Context) -> tuple[Service, FeedSource]:
    from scheduler.daemon.service import Service
    from scheduler.web.feeds import FeedSource

    service = Service(obj.settings, obj.programs())
    service.migrate()
    source = FeedSource(
        service.factory, service.programs, team=service.team, timezone=obj.settings.timezone
    )
    return service, source


def token_url(obj: Context, token: str) -> str:
    return f"{obj.settings.public_url.rstrip('/')}/feeds/{token}.ics"


def public_url(obj: Context, name: str) -> str:
    return f"{obj.settings.public_url.rstrip('/')}/feeds/public/{quote(name, safe=':')}.ics"


def _checked(source: FeedSource, names: Sequence[str]) -> None:
    """Fail (changing nothing) unless every name is a feed that exists."""
    from scheduler.web.feeds import FeedError

    errors = []
    with source.factory() as session:
        for name in names:
            try:
                source.check(session, name)
            except FeedError as exc:
                errors.append(str(exc))
    if errors:
        fail(*errors)


@click.group()
def feeds() -> None:
    """Feed URLs (program:ID:AUDIENCE, person:KIND:ID) and feed export."""


@feeds.command("url")
@FEEDS
@click.pass_obj
def url_command(obj: Context, names: Sequence[str]) -> None:
    """Issue a feed's secret URL and print it, once: a token is shown only when issued.

    Only the token's hash is stored, so a feed that already has a URL is refused (exit 1):
    `tickler feeds rotate NAME` issues a new one and retires the old. A public feed
    (TICKLER_PUBLIC_FEEDS) has no token: its URL is printed every time.
    """
    from jobs.storage import tokens
    from jobs.storage.db import begin_write

    service, source = _service(obj)
    try:
        _checked(source, names)
        lines = []
        with begin_write(service.factory) as session:
            for name in names:
                if name in obj.settings.public_feeds:
                    lines.append(f"{name}  {public_url(obj, name)}  (public)")
                    continue
                existing = tokens.active(session, name)
                if existing:
                    issued = existing[-1].created_at.isoformat()
                    refuse(
                        f"{name} already has a URL, issued {issued}; only its hash is stored, "
                        f"so it cannot be shown again: `tickler feeds rotate {name}` issues a "
                        "new one and retires the old"
                    )
                lines.append(f"{name}  {token_url(obj, tokens.issue(session, name, obj.now))}")
    finally:
        service.engine.dispose()
    for line in lines:
        click.echo(shown(line))


@feeds.command("rotate")
@FEEDS
@click.pass_obj
def rotate_command(obj: Context, names: Sequence[str]) -> None:
    """Issue a new URL for each feed; the old one answers 404 from now on."""
    from jobs.storage import tokens
    from jobs.storage.db import begin_write

    service, source = _service(obj)
    try:
        _checked(source, names)
        with begin_write(service.factory) as session:
            lines = [f"{n}  {token_url(obj, tokens.issue(session, n, obj.now))}" for n in names]
    finally:
        service.engine.dispose()
    for line in lines:
        click.echo(shown(line))


@feeds.command("revoke")
@FEEDS
@click.pass_obj
def revoke_command(obj: Context, names: Sequence[str]) -> None:
    """Retire each feed's URL without a replacement (a public feed stays public)."""
    from jobs.storage import tokens
    from jobs.storage.db import begin_write

    service, source = _service(obj)
    try:
        _checked(source, names)
        with begin_write(service.factory) as session:
            counts = [(name, tokens.revoke(session, name, obj.now)) for name in names]
    finally:
        service.engine.dispose()
    for name, count in counts:
        click.echo(shown(f"{name}  {'revoked' if count else 'had no active URL'}"))


@feeds.command("list")
@click.pass_obj
def list_command(obj: Context) -> None:
    """List feed tokens (active and revoked), public feeds and the program feeds there are."""
    from rich.console import Console
    from rich.table import Table

    from jobs.storage import tokens

    service, source = _service(obj)
    try:
        with service.factory() as session:
            rows = tokens.listing(session)
        program_feeds = source.program_feeds(obj.now)
    finally:
        service.engine.dispose()
    table = Table(title="Feed URLs")
    for column in ("feed", "state", "issued", "revoked"):
        table.add_column(column, no_wrap=column != "feed", overflow="fold")
    # Feed names carry people's ids from CSV files: Text, never markup (scheduler.cli.terminal).
    for name in obj.settings.public_feeds:
        table.add_row(cell(name), "public", "", "")
    for row in rows:
        state = "revoked" if row.revoked_at else "active"
        revoked = row.revoked_at.isoformat() if row.revoked_at else ""
        table.add_row(cell(row.feed), state, row.created_at.isoformat(), revoked)
    console = Console(highlight=False)
    console.print(table)
    console.print(cell("Program feeds: " + ", ".join(program_feeds)))
    console.print("Personal feeds: person:KIND:ID (supplier, employee, third_party)")


@feeds.command("export")
@click.argument("name", metavar="FEED")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    help="The .ics file to write ('-' for standard output).",
)
@click.pass_obj
def export_command(obj: Context, name: str, output: Path) -> None:
    """Write a feed, exactly as served, to a file."""
    from scheduler.web.feeds import FeedError

    service, source = _service(obj)
    try:
        rendered = source.render(name, obj.now)
    except FeedError as exc:
        fail(str(exc))
    finally:
        service.engine.dispose()
    if str(output) == "-":
        sys.stdout.buffer.write(rendered.body)
        sys.stdout.buffer.flush()
        return
    try:
        output.write_bytes(rendered.body)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
    events = rendered.body.count(b"BEGIN:VEVENT")
    click.echo(f"wrote {output}: {events} events, {len(rendered.body)} bytes", err=True)
