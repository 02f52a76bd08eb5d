"""``tickler messages``: the outbox as an operator handles it, one message at a time.

``list`` pages through messages (filters: program, person, state, kind, due range); ``show``
prints one message: what it is, its attempts and the server's reply, why it is cancelled or
withdrawn, the operators' actions on it, then the exact bytes that were sent (kept by the
delivery job; ``--raw``: only those bytes). Given the Message-ID of a combined email, ``show``
prints that email once and the rows it covered.
``retry`` (a failed message), ``cancel`` (a pending one) and ``resend`` (a sent one: a new
message with a new identity, linked to the first) each write an event-log row with who did it.
Exit codes: 0 done, 1 refused (the message is not in a state the action takes), 2 bad input
(an unknown message, a malformed option).

The storage stack is imported inside the commands so that registering them costs nothing.
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn

import click

from scheduler.cli.context import Context, fail
from scheduler.cli.terminal import shown

if TYPE_CHECKING:
    from jobs.storage.evidence import Sent
    from jobs.storage.messages import Message
    from scheduler.daemon.service import Service

STATES = ("pending", "claimed", "sent", "failed", "skipped", "cancelled")
EXIT_REFUSED = 1
#: An id, an identity or a Message-ID fits on one header line (RFC 5322: 998 characters).
REF_MAX = 998
#: The rows of one combined email ``show`` lists (a group is cut at 500 people by default).
ROWS = 1000


def default_actor() -> str:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # a container user without a passwd entry
        user = "unknown"
    return f"cli:{user}"


def _instant(value: str | None, end: bool = False) -> datetime | None:
    """Parse a day (its start; with ``end``, the next day's start) or an instant with offset."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date or an ISO 8601 instant") from None
    if parsed.tzinfo is None:
        raise click.BadParameter(f"{value!r} needs a UTC offset")
    return parsed


def _service(obj: Context) -> Service:
    from scheduler.daemon.service import Service

    service = Service(obj.settings, obj.programs())
    service.migrate()
    return service


def _refused(status: int, message: str) -> NoReturn:
    if status == 404:
        fail(message)
    click.echo(f"error: {shown(message)}", err=True)
    sys.exit(EXIT_REFUSED)


@click.group()
def messages() -> None:
    """List, show, retry, cancel and resend outgoing messages."""


@messages.command("list")
@click.option("--program", help="Only this program.")
@click.option("--person", metavar="KIND:ID", help="Only this person (e.g. supplier:S002).")
@click.option("--state", type=click.Choice(STATES), help="Only messages in this state.")
@click.option("--kind", "job", metavar="JOB", help="Only this kind of message (cmrt_reminder…).")
@click.option("--from", "due_from", metavar="DAY|INSTANT", help="Due at or after.")
@click.option("--to", "due_to", metavar="DAY|INSTANT", help="Due before (a day: through it).")
@click.option("--after", type=int, default=0, help="Start after this message id (paging).")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_obj
def list_command(
    obj: Context,
    program: str | None,
    person: str | None,
    state: str | None,
    job: str | None,
    due_from: str | None,
    due_to: str | None,
    after: int,
    limit: int,
    fmt: str,
) -> None:
    """List messages by id; the last line says how to get the next page."""
    from jobs.storage import messages as store
    from jobs.storage.db import OutboxState

    service = _service(obj)
    try:
        with service.factory() as session:
            filters = store.Filters(
                program=program,
                person_id=_person_id(session, person) if person else None,
                state=OutboxState(state) if state else None,
                job=job,
                due_from=_instant(due_from),
                due_to=_instant(due_to, end=True),
            )
            rows = store.page(session, filters, after=after, limit=limit)
    finally:
        service.engine.dispose()
    if fmt == "json":
        click.echo(json.dumps([m.as_json() for m in rows], indent=2))
        return
    for m in rows:
        due = f"{m.due_at:%Y-%m-%d %H:%M}Z"
        line = f"{m.id:>8}  {due}  {m.state:<9}  {m.program:<20}  {m.job:<24}  {m.recipient}"
        click.echo(shown(line))
    if len(rows) == limit:
        click.echo(f"(more: --after {rows[-1].id})", err=True)


def _person_id(session: Any, key: str) -> int:
    from jobs.storage import people
    from jobs.storage.db import PersonKind

    kind, _, external = key.partition(":")
    try:
        found = people.find(session, PersonKind(kind), external)
    except ValueError:
        found = None
    if found is None:
        fail(
            f"--person {key}: no such person (KIND:ID, KIND one of supplier, employee, third_party)"
        )
    return found.id


@messages.command()
@click.argument("ref", metavar="MESSAGE")
@click.option("--raw", is_flag=True, help="Print only the bytes as sent.")
@click.pass_obj
def show(obj: Context, ref: str, raw: bool) -> None:
    """Show MESSAGE (an id, an identity or a Message-ID) and the bytes that were sent.

    The Message-ID of a combined email (escalations of one recipient and day) shows the email
    once and lists the rows it covered.
    """
    from zoneinfo import ZoneInfo

    from jobs.storage import cancelled as cancellations
    from jobs.storage import evidence
    from jobs.storage import messages as store

    _check_ref(ref)
    service = _service(obj)
    try:
        with service.factory() as session:
            message = store.find(session, ref)
            covered: list[Message] = []
            if message is None and not ref.isdigit():
                # Not a row's own: the Message-ID an email was sent under (a combined one).
                bare = ref.strip().removeprefix("<").removesuffix(">")
                covered = store.by_ids(session, evidence.sent_as(session, bare, limit=ROWS + 1))
            if message is None and not covered:
                fail(f"no message {ref!r} (an id, an identity or a Message-ID)")
            sent = evidence.load(session, message.id if message else covered[0].id)
            if message is not None:
                actions = store.events(session, message)
                resent = store.resends(session, message.id)
                zone = ZoneInfo(obj.settings.timezone)
                why = cancellations.reasons(session, [message], zone).get(message.id)
                within = 0
                if sent is not None and sent.message_id != message.message_id:
                    within = len(evidence.sent_as(session, sent.message_id, limit=ROWS + 1))
    finally:
        service.engine.dispose()
    if raw:
        if sent is None:
            state = message.state if message else covered[0].state
            fail(f"message {ref!r} has no stored bytes (state {state})")
        _bytes(sent.data)
        return
    if message is None:
        assert sent is not None  # found through its evidence
        _combined(covered, sent)
        return
    _describe(message)
    if why is not None:
        click.echo(shown(f"{'withdrawn:' if why.withdrawn else 'cancelled:':<12} {why.why}"))
    if within and sent is not None:
        rows = f"{within if within <= ROWS else f'more than {ROWS}'} rows"
        click.echo(shown(f"sent within: <{sent.message_id}> (one email of {rows}: show it)"))
    if resent:
        click.echo(f"resent as:   {', '.join(map(str, resent))}")
    for event in actions:
        extra = {k: v for k, v in event.payload.items() if k not in ("message", "message_id")}
        line = f"action:      {event.at.isoformat()}  {event.kind}  by {event.actor}  {extra}"
        click.echo(shown(line))
    if sent is None:
        click.echo("(no stored bytes: not sent, or sent before evidence was kept)")
        return
    _evidence(sent)


def _check_ref(ref: str) -> None:
    """Refuse a MESSAGE that cannot name one: empty, longer than a header line, controls."""
    bare = ref.strip().removeprefix("<").removesuffix(">").strip()
    if not bare:
        fail("MESSAGE is empty: give an id, an identity or a Message-ID")
    if len(ref) > REF_MAX:
        fail(
            f"MESSAGE is {len(ref)} characters long: an id, an identity or a Message-ID has "
            f"at most {REF_MAX}"
        )
    if (bad := next((i for i, c in enumerate(ref) if shown(c) != c), None)) is not None:
        fail(
            f"MESSAGE {ref[:80]!r} has a control character at position {bad + 1}: an id, "
            "an identity or a Message-ID has none"
        )


def _combined(covered: list[Message], sent: Sent) -> None:
    """Print an email sent for several rows once, and each row it covered."""
    count = f"more than {ROWS}" if len(covered) > ROWS else str(len(covered))
    click.echo(shown(f"message-id:  <{sent.message_id}>"))
    click.echo(f"rows:        {count} (one email)")
    click.echo(f"sent:        {sent.sent_at.isoformat()}")
    for m in covered[:ROWS]:
        line = f"  {m.id:>8}  {m.state:<9}  {m.person or '-':<24}  {m.job:<20}  {m.identity}"
        click.echo(shown(line))
    _evidence(sent)


def _evidence(sent: Sent) -> None:
    # The reply is the remote server's text: shown, never obeyed (scheduler.cli.terminal).
    click.echo(shown(f"server:      {sent.code if sent.code is not None else '-'} {sent.reply}"))
    click.echo(f"bytes:       {len(sent.data)}")
    click.echo("")
    _bytes(sent.data)


def _bytes(data: bytes) -> None:
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _describe(m: Message) -> None:
    lines = [
        ("id", str(m.id)),
        ("identity", m.identity),
        ("message-id", f"<{m.message_id}>"),
        ("state", m.state),
        ("recipient", m.recipient),
        ("person", m.person or "-"),
        ("kind", m.job),
        ("due", m.due_at.isoformat()),
        ("expires", m.expires_at.isoformat() if m.expires_at else "-"),
        ("attempts", str(m.attempts)),
        ("last reply", f"{m.last_code or '-'} {m.last_error or ''}".rstrip()),
        ("sent", m.sent_at.isoformat() if m.sent_at else "-"),
    ]
    if m.resend_of is not None:
        lines.append(("resend of", str(m.resend_of)))
    for name, value in lines:
        click.echo(shown(f"{name + ':':<12} {value}"))


def _action(name: str, help: str, reason: bool = False) -> Callable[..., None]:
    @messages.command(name, help=help)
    @click.argument("ref", metavar="MESSAGE")
    @click.option("--actor", default=default_actor, show_default="cli:$USER", help="Who acts.")
    @click.option("--reason", default="", hidden=not reason, help="Why (kept in the log).")
    @click.pass_obj
    def command(obj: Context, ref: str, actor: str, reason: str) -> None:
        from jobs.storage import messages as store
        from jobs.storage.db import EventSource, begin_write

        service = _service(obj)
        kwargs: dict[str, Any] = {"reason": reason} if name == "cancel" else {}
        try:
            with begin_write(service.factory) as session:
                act = getattr(store, name)
                result = act(
                    session, ref, actor=actor, source=EventSource.CLI, now=obj.now, **kwargs
                )
        except store.MessageError as exc:
            _refused(exc.status, exc.message)
        finally:
            service.engine.dispose()
        click.echo(shown(f"{name}: message {result.id} is {result.state} ({result.identity})"))

    return command


_retry = _action("retry", "Send a failed MESSAGE again (pending now, attempts from 0).")
_cancel = _action("cancel", "Cancel a pending MESSAGE.", reason=True)
_resend = _action("resend", "Send a sent MESSAGE again: a new message, new Message-ID, linked.")
