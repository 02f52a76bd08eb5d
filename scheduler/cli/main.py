"""The ``tickler`` command: a thin shell over the core. Each command reads the clock once.

Start-up is part of the interface: ``tickler --version``, ``--help``, ``check`` and ``plan``
import click, config and calendars, never the server stack (SQLAlchemy, Starlette, uvicorn,
aiosmtplib, APScheduler, Jinja2: two seconds of imports). So the command modules import what a
command uses inside its body, and registering a command costs nothing;
``tests/unit/test_cli_start.py`` fails when one of those commands pulls the stack in again.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from scheduler.cli import commands, export, feeds, health, imports, mail, messages, users
from scheduler.cli.context import Context, fail
from scheduler.cli.terminal import cell, csv_cell, shown

if TYPE_CHECKING:
    from rich.table import Table

    from calendars.events import Event
    from config.programs import Program


def _instant(value: str | None) -> datetime:
    """Return the clock's reading, or the instant ``--now`` pretends it is.

    ``INSTANT@UNIX`` is INSTANT as of the Unix time UNIX, moved on by the real time since: a
    test that starts several daemons one after the other gives them one pretend clock, however
    long each took to start (replicas whose clocks disagree by a lease reap each other's live
    claims).
    """
    if value is None:
        return datetime.now(UTC)
    text, anchored, unix = value.partition("@")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 instant") from None
    if parsed.tzinfo is None:
        raise click.BadParameter(f"{text!r} needs a UTC offset, e.g. 2003-01-21T05:00:00+00:00")
    if not anchored:
        return parsed
    try:
        since = float(unix)
    except ValueError:
        since = math.nan
    if not math.isfinite(since):
        raise click.BadParameter(f"{unix!r} after @ is not a Unix time in seconds")
    return parsed + timedelta(seconds=time.time() - since)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
# The version is read from the package metadata only when --version is asked for.
@click.version_option(package_name="tickler", prog_name="tickler")
@click.option("--now", "now_text", metavar="INSTANT", hidden=True, help="Pretend it is INSTANT.")
@click.pass_context
def cli(ctx: click.Context, now_text: str | None) -> None:
    """Tickler: compliance deadlines, reminders and calendar feeds.

    \b
    Exit status of every command:
      0  done
      1  refused or failed at run time: the input was fine, the state said no
         (a late election, a feed URL already issued, a port in use, a
         database a daemon holds or cannot be reached)
      2  usage error or invalid input (a bad option, file, setting); nothing
         was changed
    """
    # Imported here: --version and --help exit before this runs, and need no settings.
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from config.settings import Settings, unknown_variables

    for warning in unknown_variables(os.environ):
        click.echo(f"warning: {shown(warning)}", err=True)
    try:
        settings = Settings()
    except ValidationError as exc:
        fail(
            *(
                f"setting TICKLER_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}"
                for e in exc.errors()
            )
        )
    except SettingsError as exc:  # a TICKLER_*_FILE that cannot be read, a list that is not JSON
        fail(f"settings: {exc}")
    ctx.obj = Context(settings, _instant(now_text))


config_option = click.option(
    "--config",
    "config_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory of program files (default: TICKLER_PROGRAM_DIR or the demo programs).",
)


@cli.command()
@config_option
@click.pass_obj
def check(obj: Context, config_dir: Path | None) -> None:
    """Validate a program directory: exit 0, or 2 with every error (file:line: field: what).

    Each program is also expanded and planned for stand-in people (``calendars.rehearsal``):
    what the rules would fail on in the daemon fails here, before any email is planned.
    """
    from calendars.rehearsal import rehearse
    from config.loader import ProgramError, ProgramFileErrors, load_program_files, locate

    try:
        files = load_program_files(config_dir or obj.settings.program_dir)
    except ProgramFileErrors as exc:
        fail(*(str(e) for e in exc.errors))
    errors: list[ProgramError] = []
    for path, program in files:
        try:
            rehearse(program, now=obj.now)
        except Exception as exc:  # whatever the rules raise is this file's error
            text = path.read_text(encoding="utf-8")
            errors.append(
                ProgramError(
                    file=str(path),
                    field="kind",
                    line=locate(text, ("kind",)),
                    message=f"the {program.kind} rules fail on this program's dates and "
                    f"offsets: {type(exc).__name__}: {exc}",
                )
            )
    if errors:
        fail(*(str(e) for e in errors))
    short = _short_offers(files)
    if short and obj.settings.offer_period == "refuse":
        fail(*(f"{p}: {problem} (TICKLER_OFFER_PERIOD=refuse)" for p, problem in short))
    for path, problem in short:
        click.echo(f"warning: {shown(f'{path}: {problem}')}", err=True)
    for _path, program in files:
        click.echo(shown(f"ok  {program.id}  ({program.kind}: {program.name})"))


def _short_offers(files: Sequence[tuple[Path, Program]]) -> list[tuple[Path, str]]:
    """Return each offer open fewer business days than a tender offer must be, and why."""
    from calendars.option_exchange import offer_period_problem
    from config.programs import OptionExchange

    return [
        (path, problem)
        for path, program in files
        if isinstance(program, OptionExchange)
        and (problem := offer_period_problem(program)) is not None
    ]


def _day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


@cli.command()
@config_option
@click.option("--program", "program_ids", multiple=True, help="Only this program (repeatable).")
@click.option("--from", "start", callback=lambda c, p, v: _day(v), help="First day (YYYY-MM-DD).")
@click.option("--to", "end", callback=lambda c, p, v: _day(v), help="Last day (YYYY-MM-DD).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@click.pass_obj
def plan(
    obj: Context,
    config_dir: Path | None,
    program_ids: Sequence[str],
    start: date | None,
    end: date | None,
    fmt: str,
) -> None:
    """Show the calendar the programs' rules derive."""
    from calendars.plan import plan as plan_events

    if start and end and end < start:
        fail(f"--to {end} is before --from {start}")
    programs = obj.programs(config_dir)
    if program_ids:
        known = {p.id for p in programs}
        unknown = [p for p in program_ids if p not in known]
        if unknown:
            fail(f"unknown program {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        programs = [p for p in programs if p.id in program_ids]
    events = plan_events(programs, now=obj.now, start=start, end=end)
    if fmt == "json":
        click.echo(json.dumps([event_json(e) for e in events], indent=2))
    elif fmt == "csv":
        click.echo(events_csv(events), nl=False)
    else:
        from rich.console import Console

        Console().print(events_table(events))


def _when(value: date | datetime) -> str:
    return value.isoformat()


def event_json(event: Event) -> dict[str, Any]:
    """Return the stable JSON form of an event (``tickler plan --format json``)."""
    return {
        "uid": event.uid,
        "program": event.program,
        "kind": str(event.kind),
        "title": event.title,
        "start": _when(event.start),
        "end": _when(event.end),
        "all_day": event.all_day,
        "timezone": event.timezone,
        "audiences": sorted(str(a) for a in event.audiences),
        "person": event.person,
        "location": event.location,
        "description": event.description,
        "details": dict(event.details),
    }


def events_csv(events: Sequence[Event]) -> str:
    """Return ``events`` as CSV; no cell is a spreadsheet formula or a terminal escape."""
    out = io.StringIO()
    columns = ["uid", "program", "kind", "title", "start", "end", "all_day", "timezone", "details"]
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for event in events:
        row = event_json(event)
        row["details"] = json.dumps(row["details"], sort_keys=True)
        writer.writerow(
            {k: csv_cell(shown(v)) if isinstance(v, str) else v for k, v in row.items()}
        )
    return out.getvalue()


def events_table(events: Sequence[Event]) -> Table:
    from rich.table import Table

    table = Table(title=f"Tickler plan: {len(events)} events")
    table.add_column("when", no_wrap=True)
    table.add_column("program", no_wrap=True)
    table.add_column("what", ratio=1, overflow="fold")
    for event in events:
        if isinstance(event.start, datetime):
            when = f"{event.start:%Y-%m-%d %H:%M} {event.start.tzname()}"
        else:
            when = event.start.isoformat()
        table.add_row(when, cell(event.program), cell(event.title))  # data: Text, not markup
    return table


for command in (
    commands.run,
    commands.simulate_command,
    commands.status,
    commands.record_command,
    commands.db,
    feeds.feeds,
    health.healthcheck,
    imports.import_command,
    mail.mail,
    messages.messages,
    export.export,
    users.users,
):
    cli.add_command(command)


def main() -> None:
    cli()
