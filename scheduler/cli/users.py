"""``tickler users``: the dashboard's accounts (add, remove, list, passwd, disable, enable,
role).

A password is asked twice at a prompt that does not echo, or read from the first line of
standard input with ``--password-stdin`` (for scripts: never on the command line, where
``ps`` and the shell history would show it). A new password ends every session of the user.
Exit codes: 0 done, 2 bad input (an unknown role or user, a taken name, a short password).

The storage stack and argon2 are imported inside the commands, so that registering them
costs nothing (``tests/unit/test_cli_start.py``).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import click

from scheduler.cli.context import Context, fail
from scheduler.cli.terminal import cell, shown

if TYPE_CHECKING:
    from jobs.storage import Session
    from jobs.storage.db import Role
    from scheduler.daemon.service import Service

T = TypeVar("T")
ROLES = ("viewer", "operator", "admin")
# A username is typed at a sign-in form and shown on pages: plain, short, one line.
_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
NAME = click.argument("username")
STDIN = click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input's first line."
)


def _service(obj: Context) -> Service:
    from scheduler.daemon.service import Service

    service = Service(obj.settings, [])
    service.migrate()
    return service


def _checked_name(username: str) -> str:
    if not _USERNAME.fullmatch(username):
        fail(
            f"username {username!r}: 1 to 64 letters, digits and . _ @ -, "
            "starting with a letter or digit"
        )
    return username


def _password(from_stdin: bool) -> str:
    from scheduler.web.passwords import weakness

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt(
            "Password", hide_input=True, confirmation_prompt=True, err=True, show_default=False
        )
    problem = weakness(password)
    if problem:
        fail(problem)
    return password


def _write(obj: Context, work: Callable[[Session], T]) -> T:
    """Run ``work`` in one write transaction; a UserError (no such user, a taken name) is a
    bad-input exit naming it, with nothing changed."""
    from jobs.storage import users as stored
    from jobs.storage.db import begin_write

    service = _service(obj)
    try:
        with begin_write(service.factory) as session:
            return work(session)
    except stored.UserError as exc:
        fail(str(exc))
    finally:
        service.engine.dispose()


def _change_account(
    obj: Context, username: str, *, disabled: bool | None = None, role: Role | None = None
) -> int:
    from jobs.storage import users as stored

    return _write(obj, lambda s: stored.change(s, username, disabled=disabled, role=role))


@click.group()
def users() -> None:
    """Dashboard accounts: roles viewer (reads), operator (acts), admin."""


@users.command("add")
@NAME
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the user may do.")
@STDIN
@click.pass_obj
def add_command(obj: Context, username: str, role: str, password_stdin: bool) -> None:
    """Create an account."""
    from jobs.storage import users as stored
    from jobs.storage.db import Role
    from scheduler.web.passwords import hash_password

    _checked_name(username)
    hashed = hash_password(_password(password_stdin))
    _write(
        obj,
        lambda s: stored.add(
            s, username=username, password_hash=hashed, role=Role(role), now=obj.now
        ),
    )
    click.echo(shown(f"added {username} ({role})"))


@users.command("remove")
@NAME
@click.pass_obj
def remove_command(obj: Context, username: str) -> None:
    """Delete an account and end its sessions."""
    from jobs.storage import users as stored

    _write(obj, lambda s: stored.remove(s, username))
    click.echo(shown(f"removed {username}"))


@users.command("passwd")
@NAME
@STDIN
@click.pass_obj
def passwd_command(obj: Context, username: str, password_stdin: bool) -> None:
    """Set a new password; every session of the user ends."""
    from jobs.storage import users as stored
    from jobs.storage.db import begin_write
    from scheduler.web.passwords import hash_password

    service = _service(obj)
    try:
        with service.factory() as session:
            if stored.by_name(session, username) is None:
                fail(f"no user {username!r}")
        password = _password(password_stdin)
        with begin_write(service.factory) as session:
            ended = stored.set_password(session, username, hash_password(password), obj.now)
    finally:
        service.engine.dispose()
    click.echo(shown(f"password of {username} changed; {ended} session(s) ended"))


@users.command("disable")
@NAME
@click.pass_obj
def disable_command(obj: Context, username: str) -> None:
    """Refuse the account's sign-ins and end its sessions; kept, with its name in the log."""
    ended = _change_account(obj, username, disabled=True)
    click.echo(shown(f"disabled {username}; {ended} session(s) ended"))


@users.command("enable")
@NAME
@click.pass_obj
def enable_command(obj: Context, username: str) -> None:
    """Let a disabled account sign in again."""
    _change_account(obj, username, disabled=False)
    click.echo(shown(f"enabled {username}"))


@users.command("role")
@NAME
@click.argument("role", type=click.Choice(ROLES))
@click.pass_obj
def role_command(obj: Context, username: str, role: str) -> None:
    """Give the account another role; its sessions end, so the next page asks again."""
    from jobs.storage.db import Role

    ended = _change_account(obj, username, role=Role(role))
    click.echo(shown(f"{username} is now {role}; {ended} session(s) ended"))


@users.command("list")
@click.pass_obj
def list_command(obj: Context) -> None:
    """List the accounts with their role."""
    from rich.console import Console
    from rich.table import Table

    from jobs.storage import users as stored

    service = _service(obj)
    try:
        with service.factory() as session:
            accounts = stored.listing(session)
    finally:
        service.engine.dispose()
    table = Table(title=f"{len(accounts)} dashboard user(s)")
    for column in ("username", "role", "created", "password changed", "disabled"):
        table.add_column(column)
    for account in accounts:
        table.add_row(
            cell(account.username),
            account.role.value,
            f"{account.created_at:%Y-%m-%d %H:%M} UTC",
            f"{account.password_changed_at:%Y-%m-%d %H:%M} UTC",
            "yes" if account.disabled else "",
        )
    Console().print(table)
