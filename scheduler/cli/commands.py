"""The daemon's commands: ``run``, ``simulate``, ``status``, ``record`` and ``db``.

Each command imports the daemon, the web app and storage inside its body: registering these
commands must stay cheap, so that ``tickler --help`` and ``plan`` start fast (see ``main``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from config.facts import NOUNS, FactKind
from scheduler.cli.context import Context, fail, refuse

if TYPE_CHECKING:
    from config.settings import Settings
    from scheduler.daemon.loop import SimulationReport
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

    # Before anything is opened or logged: a database folder it cannot write is a settings
    # error (exit 2), not a traceback after "listening". A Maildir it cannot write yet is only
    # a warning: delivery retries it as a temporary failure until it can (a volume mounted
    # late, a disk freed), and no message is lost meanwhile.
    problems = unwritable(obj.settings, sqlite_path(obj.settings.database_url))
    for problem in problems:
        if problem.startswith("TICKLER_MAILDIR"):
            click.echo(f"warning: {problem}; delivery retries until it can", err=True)
    fatal = [p for p in problems if not p.startswith("TICKLER_MAILDIR")]
    if fatal:
        fail(*fatal)
    _configure_logging(obj.settings)
    service = _service(obj)
    # The hidden --now starts the daemon's clock at that instant; from there it runs in real time.
    pretend = click.get_current_context().find_root().params.get("now_text") is not None
    clock = clock_from(obj.now, origin=obj.read_at) if pretend else utc_now
    daemon = Daemon(
        service,
        clock=clock,
        sweep=sweep or obj.settings.sweep_seconds,
        full_every=obj.settings.full_plan_seconds,
    )

    settings = obj.settings
    try:
        sock = http.listen(settings.http_host, settings.http_port)
    except OSError as exc:
        refuse(f"cannot listen on {settings.http_host}:{settings.http_port}: {exc.strerror or exc}")
    metrics_sock = None
    if settings.metrics_port is not None:  # /metrics on a listener of its own
        host = settings.metrics_host or settings.http_host
        try:
            metrics_sock = http.listen(host, settings.metrics_port)
        except OSError as exc:
            sock.close()
            refuse(f"cannot listen on {host}:{settings.metrics_port}: {exc.strerror or exc}")

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
        refuse(str(exc))
    except DatabaseError as exc:
        # At start (migrations): later outages are logged and retried by the daemon itself.
        refuse(f"database unreachable ({scrub(obj.settings.database_url)}): {scrub(str(exc.orig))}")
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
@click.option(
    "--database",
    "database_url",
    metavar="URL",
    default=None,
    help="Simulate on this database instead of a scratch copy (never the live one, nor one "
    "a daemon holds).",
)
@click.option(
    "--maildir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where the simulated emails go (default: a new scratch folder, printed).",
)
@click.pass_obj
def simulate_command(
    obj: Context, start: datetime, end: datetime, database_url: str | None, maildir: Path | None
) -> None:
    """Replay the programs on a virtual clock; the live database and its outbox are not touched.

    By default a fresh SQLite database in a new scratch folder gets a copy of the live
    database's people, option grants and recorded facts, and every email goes to a Maildir in
    that folder (never to the SMTP server); both paths are printed, with progress on long runs
    and a table of what was sent at the end. Exit 1 when --database names the live database
    (TICKLER_DATABASE_URL) or an SQLite file a daemon holds; 2 on invalid options.
    """
    import asyncio
    import shutil
    import tempfile

    from jobs.mail.transport import MaildirTransport
    from jobs.storage import DatabaseError
    from jobs.storage.db import make_engine, sqlite_path
    from jobs.storage.scratch import copy_people_and_facts
    from scheduler.daemon.logs import scrub
    from scheduler.daemon.loop import simulate
    from scheduler.daemon.service import Service, SingleReplicaError

    if end < start:
        fail(f"--to {end.isoformat()} is before --from {start.isoformat()}")
    live = obj.settings.database_url
    programs = obj.programs()
    if database_url is not None and _same_database(database_url, live, sqlite_path):
        refuse(
            f"--database is the live database ({scrub(live)}): a simulation there would cancel "
            "its pending messages and take the daemon's sends; leave --database out to "
            "simulate on a scratch copy"
        )
    scratch = Path(tempfile.mkdtemp(prefix="tickler-simulate-"))
    maildir = maildir or scratch / "maildir"
    url = database_url or f"sqlite:///{scratch / 'tickler.sqlite'}"
    settings = obj.settings.model_copy(update={"database_url": url, "maildir": maildir})
    _configure_logging(obj.settings, "WARNING")
    # The scratch sink always: a simulation never mails anyone, whatever TICKLER_SMTP_HOST says.
    service = Service(settings, programs, transport=MaildirTransport(maildir))
    try:
        service.claim_single_replica()  # held for the run: no daemon starts on it meanwhile
    except SingleReplicaError:
        shutil.rmtree(scratch, ignore_errors=True)  # nothing was written there
        refuse(
            f"a tickler daemon holds {scrub(url)}: a simulation there would cancel its pending "
            "messages and take its sends; leave --database out to simulate on a scratch copy"
        )
    try:
        service.migrate()
        if database_url is None:
            source = make_engine(live)
            try:
                copied = copy_people_and_facts(source, service.engine)
            finally:
                source.dispose()
            click.echo(
                f"scratch database: {scratch / 'tickler.sqlite'} (a copy of "
                f"{copied['people']} people, {copied['option_grants']} grants and "
                f"{copied['event_log']} facts from {scrub(live)})"
            )
    except DatabaseError as exc:
        service.release()
        shutil.rmtree(scratch, ignore_errors=True)
        refuse(f"cannot use the database ({scrub(database_url or live)}): {scrub(str(exc.orig))}")
    click.echo(f"emails: {maildir}")

    def progress(now: datetime, report: SimulationReport) -> None:
        click.echo(
            f"  ... {now.astimezone(UTC):%Y-%m-%d %H:%M}Z, {report.steps} steps, "
            f"{report.delivery.sent} sent",
            err=True,
        )

    report = asyncio.run(simulate(service, start=start, end=end, progress=progress))
    _simulation_summary(report)


def _same_database(url: str, live: str, sqlite_path: Callable[[str], str | None]) -> bool:
    """Tell whether ``url`` names the live database (the same SQLite file, or the same URL)."""
    mine, theirs = sqlite_path(url), sqlite_path(live)
    if mine is not None or theirs is not None:
        return (
            mine is not None
            and theirs is not None
            and Path(mine).resolve() == Path(theirs).resolve()
        )
    normal = {"postgres://": "postgresql://", "postgresql+psycopg://": "postgresql://"}
    for old, new in normal.items():
        url, live = url.replace(old, new, 1), live.replace(old, new, 1)
    return url.rstrip("/") == live.rstrip("/")


def _simulation_summary(report: SimulationReport) -> None:
    """Print the totals line, then what was sent per kind of message as a table."""
    from rich.console import Console
    from rich.table import Table

    d = report.delivery
    click.echo(
        f"simulated {report.start.isoformat()} .. {report.end.isoformat()} in {report.steps} "
        f"steps: sent {d.sent}, retried {d.retried}, failed {d.failed}, skipped {d.skipped}"
    )
    table = Table(title="sent, by kind of message")
    table.add_column("message")
    table.add_column("sent", justify="right")
    for job, n in sorted(d.by_job.items()):
        table.add_row(job, str(n))
    table.add_row("total", str(d.sent), style="bold")
    Console(highlight=False).print(table)


@click.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_obj
def status(obj: Context, fmt: str) -> None:
    """Show obligations by state, messages by state, what is due next, what failed and what
    planning left out."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from calendars.plan import event_day
    from calendars.plan import plan as plan_events
    from jobs.storage import queries, skips
    from scheduler.cli.terminal import cell, shown

    service = _service(obj)
    service.migrate()
    with service.factory() as session:
        rows = queries.status_rows(session, obj.now)
        left_out = skips.current(session)
    service.engine.dispose()
    data = status_data(rows.obligations, rows.messages, rows.upcoming, rows.failed)
    # Times as the program's people read them (its zone), beside the UTC instant.
    zones = {p.id: p.zone for p in service.programs}
    for row in data["upcoming"]:
        zone = zones.get(row["program"])
        if zone is not None:
            local = datetime.fromisoformat(row["due"]).astimezone(zone)
            row["due_local"] = f"{local:%Y-%m-%d %H:%M} {local.tzname()}"
    # What each program's calendar holds next: on a fresh database (nothing planned yet)
    # this is the one thing status can say.
    today = obj.now.astimezone(UTC).date()
    data["next_events"] = []
    for program in service.programs:
        coming = plan_events([program], now=obj.now, start=today)
        if coming:
            event = coming[0]
            when = (
                f"{event.start.astimezone(program.zone):%Y-%m-%d %H:%M %Z}"
                if isinstance(event.start, datetime)
                else event_day(event).isoformat()
            )
            data["next_events"].append({"program": program.id, "title": event.title, "when": when})
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
    if not data["programs"]:
        console.print(
            "nothing planned yet: `tickler run` plans every program at start "
            "(`tickler import` loads people first)"
        )
    for row in data["upcoming"]:
        when = row.get("due_local", row["due"])
        console.print(cell(f"next: {when} {row['program']} {row['job']} x{row['count']}"))
    if not data["programs"]:
        for row in data["next_events"]:
            console.print(
                cell(f"next in the calendar: {row['when']} {row['program']} {row['title']}")
            )
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
        if exc.status == 409:  # valid input the state refuses: a late election, a closed offer
            refuse(exc.message)
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
