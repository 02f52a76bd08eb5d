"""The daemon's commands: ``run``, ``simulate``, ``status``, ``record`` and ``db``.

Each command imports the daemon, the web app and storage inside its body: registering these
commands must stay cheap, so that ``tickler --help`` and ``plan`` start fast (see ``main``).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from config.facts import NOUNS, FactKind
from scheduler.cli.context import Context, fail

if TYPE_CHECKING:
    from config.settings import Settings
    from scheduler.daemon.service import Service


def _service(obj: Context) -> Service:
    from scheduler.daemon.service import Service

    return Service(obj.settings, obj.programs())


def _configure_logging(settings: Settings, level: str | None = None) -> None:
    from scheduler.daemon.logs import configure_logging

    # "auto" (None): text on a terminal, JSON otherwise.
    json = {"json": True, "text": False}.get(settings.log_format)
    configure_logging(level or settings.log_level, json=json)


@click.command()
@click.option("--sweep", type=float, default=None, help="Seconds between safety-net sweeps.")
@click.pass_obj
def run(obj: Context, sweep: float | None) -> None:
    """Run the daemon and its HTTP server (feeds, API, health). SIGTERM stops both."""
    import asyncio
    import signal

    from jobs.storage import DatabaseError
    from jobs.storage.db import sqlite_path
    from scheduler.cli.datadir import unwritable
    from scheduler.daemon.logs import scrub
    from scheduler.daemon.loop import Daemon, clock_from, utc_now
    from scheduler.daemon.service import SingleReplicaError
    from scheduler.web import http

    # Before anything is opened or logged: a data directory it cannot write is a settings
    # error (exit 2), not a traceback after "listening".
    problems = unwritable(obj.settings, sqlite_path(obj.settings.database_url))
    if problems:
        fail(*problems)
    _configure_logging(obj.settings)
    service = _service(obj)
    # The hidden --now starts the daemon's clock at that instant; from there it runs in real time.
    pretend = click.get_current_context().find_root().params.get("now_text") is not None
    clock = clock_from(obj.now) if pretend else utc_now
    daemon = Daemon(service, clock=clock, sweep=sweep or obj.settings.sweep_seconds)

    settings = obj.settings
    try:
        sock = http.listen(settings.http_host, settings.http_port)
    except OSError as exc:
        fail(f"cannot listen on {settings.http_host}:{settings.http_port}: {exc.strerror or exc}")
    metrics_sock = None
    if settings.metrics_port is not None:  # /metrics on a listener of its own
        host = settings.metrics_host or settings.http_host
        try:
            metrics_sock = http.listen(host, settings.metrics_port)
        except OSError as exc:
            sock.close()
            fail(f"cannot listen on {host}:{settings.metrics_port}: {exc.strerror or exc}")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, daemon.stop.set)
        # The HTTP servers share the loop; the daemon's stop event (SIGTERM) stops them all.
        app = http.create_app(service, daemon)
        servers = [http.serve(app, sock, daemon.stop)]
        if metrics_sock is not None:
            metrics = http.metrics_app(app)
            servers.append(http.serve(metrics, metrics_sock, daemon.stop, listener="metrics"))
        serving = asyncio.gather(*servers)
        try:
            await daemon.run()
        finally:
            daemon.stop.set()
            await serving

    try:
        asyncio.run(main())
    except SingleReplicaError as exc:
        fail(str(exc))
    except DatabaseError as exc:
        # At start (migrations): later outages are logged and retried by the daemon itself.
        fail(f"database unreachable ({scrub(obj.settings.database_url)}): {scrub(str(exc.orig))}")
    finally:
        sock.close()
        if metrics_sock is not None:
            metrics_sock.close()


def _instant_option(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date or an ISO 8601 instant") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@click.command("simulate")
@click.option(
    "--from",
    "start",
    required=True,
    callback=lambda c, p, v: _instant_option(v),
    help="Start of the virtual clock (date or instant; UTC when no offset).",
)
@click.option(
    "--to",
    "end",
    required=True,
    callback=lambda c, p, v: _instant_option(v),
    help="End of the virtual clock.",
)
@click.pass_obj
def simulate_command(obj: Context, start: datetime, end: datetime) -> None:
    """Replay the programs on a virtual clock, delivering to the configured sink."""
    import asyncio

    from scheduler.daemon.loop import simulate

    if end < start:
        fail(f"--to {end.isoformat()} is before --from {start.isoformat()}")
    _configure_logging(obj.settings, "WARNING")
    report = asyncio.run(simulate(_service(obj), start=start, end=end))
    d = report.delivery
    click.echo(
        f"simulated {start.isoformat()} .. {end.isoformat()} in {report.steps} steps: "
        f"sent {d.sent}, retried {d.retried}, failed {d.failed}, skipped {d.skipped}"
    )
    for job, n in sorted(d.by_job.items()):
        click.echo(f"  {job:28} {n}")


@click.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_obj
def status(obj: Context, fmt: str) -> None:
    """Show obligations by state, messages by state, what is due next, what failed and what
    planning left out."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from jobs.storage import queries, skips
    from scheduler.cli.terminal import cell, shown

    service = _service(obj)
    service.migrate()
    with service.factory() as session:
        rows = queries.status_rows(session, obj.now)
        left_out = skips.current(session)
    service.engine.dispose()
    data = status_data(rows.obligations, rows.messages, rows.upcoming, rows.failed)
    data["skipped"] = [
        {
            "program": s.program,
            "person": s.person or None,  # None: the whole program
            "error": s.error,
            "since": s.since.isoformat(),
        }
        for s in left_out
    ]
    if fmt == "json":
        click.echo(json.dumps(data, indent=2))
        return
    # Data (addresses, SMTP replies, names) is Text, never markup: "[/x]" in an address
    # is shown, and an escape sequence in a name is printed as "\x1b" (scheduler.cli.terminal).
    console = Console(highlight=False)
    for program, info in data["programs"].items():
        table = Table(title=cell(program))
        table.add_column("what")
        table.add_column("count", justify="right")
        for state, n in info["obligations"].items():
            table.add_row(cell(f"obligations {state}"), str(n))
        for state, n in info["messages"].items():
            table.add_row(cell(f"messages {state}"), str(n))
        if "response_rate" in info:
            table.add_row("CMRT response rate", f"{info['response_rate']:.1%}")
        console.print(table)
    for row in data["upcoming"]:
        console.print(cell(f"next: {row['due']} {row['program']} {row['job']} x{row['count']}"))
    for row in data["failed"]:
        line = f" {row['identity']}: {row['code']} {row['error']}"
        console.print(Text.assemble(("failed", "red"), shown(line)))
    for row in data["skipped"]:
        # Until the row (or program file) is fixed, nothing is planned for it: no new email.
        who = row["person"] or "the whole program"
        line = f" {row['program']} {who} since {row['since']}: {row['error']}"
        console.print(Text.assemble(("left out of planning", "red"), shown(line)))


def status_data(obligations: Any, messages: Any, upcoming: Any, failed: Any) -> dict[str, Any]:
    """Shape the status counts; CMRT programs also get their response statistics."""
    programs: dict[str, dict[str, Any]] = {}
    for program, kind, state, n in obligations:
        info = programs.setdefault(program, {"obligations": {}, "messages": {}})
        info["obligations"][state] = n
        if kind == FactKind.CMRT_RESPONSE:  # obligations are named by the fact owed
            info.setdefault("_cmrt", Counter())[state] += n
    for program, state, n in messages:
        programs.setdefault(program, {"obligations": {}, "messages": {}})["messages"][
            str(state)
        ] = n
    for info in programs.values():
        cmrt = info.pop("_cmrt", None)
        if cmrt:
            surveyed = sum(cmrt.values())
            responded = cmrt["complete"] + cmrt["incomplete"]
            info.update(
                surveyed=surveyed,
                responded=responded,
                complete=cmrt["complete"],
                incomplete=cmrt["incomplete"],
                escalated=cmrt["escalated"],
                response_rate=responded / surveyed if surveyed else 0.0,
            )
    return {
        "programs": dict(sorted(programs.items())),
        "upcoming": [
            {"due": d.isoformat(), "program": p, "job": j, "count": n} for d, p, j, n in upcoming
        ],
        "failed": [{"identity": i, "code": c, "error": e} for i, c, e in failed],
    }


@click.command("record")
@click.argument("kind", type=click.Choice(NOUNS))
@click.option("--program", help="Program id (responses, elections, acknowledgments, extensions).")
@click.option("--person", help="KIND:ID, e.g. supplier:S001 or employee:E1001.")
@click.option("--at", "at_text", help="When it happened (ISO 8601 with offset); default: now.")
@click.option(
    "--backfill",
    is_flag=True,
    help="Record it as of --at, an earlier time (flagged in the event log and logged).",
)
@click.option("--incomplete", is_flag=True, help="A response that is incomplete or inconsistent.")
@click.option("--issues", default=None, help="What is wrong with an incomplete response.")
@click.option("--file", "file_name", default=None, help="The returned file's name (responses).")
@click.option("--policy-version", default=None, help="Acknowledged policy version.")
@click.option("--date", "day", default=None, help="Termination date (YYYY-MM-DD).")
@click.option(
    "--cutoff", default=None, help="New local cutoff of an extension, e.g. 2003-02-03T21:00."
)
@click.option(
    "--data", default=None, help="A hire as JSON: kind, external_id, name, email, start_date, role…"
)
@click.option(
    "--extension", type=int, default=None, help="Event id of the extension to retract (the latest)."
)
@click.option("--actor", default="cli", help="Who records it (kept in the audit trail).")
@click.option("--yes", is_flag=True, help="Extend or retract without asking for confirmation.")
@click.pass_obj
def record_command(
    obj: Context,
    kind: str,
    program: str | None,
    person: str | None,
    at_text: str | None,
    backfill: bool,
    incomplete: bool,
    issues: str | None,
    file_name: str | None,
    policy_version: str | None,
    day: str | None,
    cutoff: str | None,
    data: str | None,
    extension: int | None,
    actor: str,
    yes: bool,
) -> None:
    """Record what happened; the daemon reacts within seconds.

    An extension or its retraction shows what moves and asks for confirmation (--yes skips
    it). --at earlier than now needs --backfill: the fact is flagged and logged as such.
    """
    from jobs.record import CLOCK_SKEW, RecordError, offer_change, record
    from jobs.storage.db import begin_write

    fact = FactKind.from_noun(kind)
    at = _instant_option(at_text) if at_text else obj.now
    payload: dict[str, Any] = {}
    if fact == FactKind.CMRT_RESPONSE:
        payload["complete"] = not incomplete
        payload.update({k: v for k, v in (("issues", issues), ("file", file_name)) if v})
    elif fact == FactKind.FCPA_ACK and policy_version:
        payload["policy_version"] = policy_version
    elif fact == FactKind.TERMINATION:
        payload["date"] = day
    elif fact == FactKind.OFFER_EXTENSION:
        payload["cutoff"] = cutoff
    elif fact == FactKind.EXTENSION_RETRACTION and extension is not None:
        payload["extension"] = extension
    elif fact == FactKind.HIRE:
        payload = _hire_payload(data)
    service = _service(obj)
    service.migrate()
    programs = {p.id: p for p in service.programs}

    def write(confirm: bool) -> int:
        with begin_write(service.factory) as session:
            event_id = record(
                session,
                kind=fact,
                program=program,
                person=person,
                at=at,
                actor=actor,
                source="cli",
                payload=payload,
                programs=programs,
                now=obj.now,
                may_backfill=backfill,
            )
            if confirm:
                # A trial run: the rules have passed; show what moves, and roll back, so that
                # no lock is held while a person reads and decides.
                raise _Preview(offer_change(session, programs[str(program)], event_id))
        return event_id

    try:
        if fact in (FactKind.OFFER_EXTENSION, FactKind.EXTENSION_RETRACTION) and not yes:
            try:
                write(confirm=True)
            except _Preview as preview:
                verb = "Extend" if fact == FactKind.OFFER_EXTENSION else "Retract the extension of"
                click.echo(f"{verb} {program}:")
                click.echo("\n".join(preview.lines))
                click.confirm("Record it?", abort=True)
        if backfill:
            _configure_logging(obj.settings)  # the backfill's log line goes to stderr
        event_id = write(confirm=False)
    except RecordError as exc:
        if exc.status == 403 and not backfill:
            fail(exc.message, "add --backfill to record it as of --at, flagged as a backfill")
        fail(exc.message)
    finally:
        service.engine.dispose()
    late = at < obj.now - CLOCK_SKEW
    note = f" (backfill as of {at.isoformat()}, recorded {obj.now.isoformat()})" if late else ""
    click.echo(f"recorded {fact} as event {event_id}{note}")


def _hire_payload(data: str | None) -> dict[str, Any]:
    """Return ``--data`` checked by the API's own model of a hire, field by field.

    One rule for both entry points: what ``POST /api/v1/hires`` refuses (a control character
    in a name, an unknown field, a country that is not two capitals) is refused here too.
    """
    from pydantic import ValidationError

    from scheduler.web.api import Hire

    if not data:
        fail("a hire needs --data: a JSON object (kind, external_id, name, email, start_date…)")
    try:
        hire = Hire.model_validate_json(data)
    except ValidationError as exc:
        fail(
            *(
                f"--data: {'.'.join(map(str, e['loc'])) or 'body'}: "
                + e["msg"].removeprefix("Value error, ")
                for e in exc.errors(include_url=False, include_input=False)
            )
        )
    if hire.at is not None:
        fail("--data: at: give the time of a hire with --at")
    return hire.parts()[2]


class _Preview(Exception):
    def __init__(self, lines: list[str]) -> None:
        super().__init__("preview")
        self.lines = lines


@click.group()
def db() -> None:
    """Database migrations."""


@db.command("upgrade")
@click.argument("revision", default="head")
@click.pass_obj
def db_upgrade(obj: Context, revision: str) -> None:
    """Migrate the database up to REVISION (default: the latest)."""
    from jobs.storage.db import upgrade

    upgrade(obj.settings.database_url, revision)
    click.echo(f"database at {revision}")


@db.command("downgrade")
@click.argument("revision")
@click.pass_obj
def db_downgrade(obj: Context, revision: str) -> None:
    """Migrate the database down to REVISION ("base" empties it)."""
    from jobs.storage.db import downgrade

    downgrade(obj.settings.database_url, revision)
    click.echo(f"database at {revision}")
