"""``tickler import``: load people and option grants from CSV files, or the whole demo data set.

The importer and storage are imported inside the command: registering it must stay cheap, so
that ``tickler --help`` and ``plan`` start fast (see ``main``).
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, cast

import click

from scheduler.cli.context import Context, fail
from scheduler.cli.terminal import shown

if TYPE_CHECKING:
    from jobs.imports import ImportReport, Kind
    from jobs.storage import Session

#: ``jobs.imports.KINDS``, spelled out: importing that module costs SQLAlchemy, and the choices
#: are needed to declare the command. tests/unit/test_cli_start.py checks the two agree.
KINDS = ("suppliers", "employees", "third-parties", "grants")
#: Files with more data rows than this get a progress bar.
PROGRESS_ROWS = 1000
CHANGES_SHOWN = 50


def _actor() -> str:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # a container user without a passwd entry
        user = "unknown"
    return f"cli:{user}"


@click.command("import")
@click.argument("kind", metavar="KIND", type=click.Choice([*KINDS, "demo"]))
@click.argument("file", metavar="[FILE.csv]", required=False, type=click.Path(path_type=Path))
@click.option("--actor", default=_actor, show_default="cli:$USER", help="Who is importing.")
@click.pass_obj
def import_command(obj: Context, kind: str, file: Path | None, actor: str) -> None:
    """Import people or grants from a CSV file, all or nothing; or load the demo data.

    \b
      tickler import suppliers|employees|third-parties|grants FILE.csv
      tickler import demo

    Rows are matched on external_id: new ones are created, changed ones updated (each change
    listed), equal ones left alone, so importing a file twice is harmless. A file with any
    error changes nothing; every error is printed as FILE:LINE: COLUMN: what is wrong.
    """
    from jobs.imports import DEMO_FILES, DEMO_SCENARIO, ImportErrors, demo_dir, import_all
    from jobs.storage.db import make_engine, session_factory, upgrade

    if kind == "demo":
        if file is not None:
            fail("tickler import demo takes no FILE")
    else:
        if file is None:
            fail(f"tickler import {kind} needs a FILE.csv")
        if not file.is_file():
            fail(f"{file}: no such file")
    programs = {p.id: p for p in obj.programs()} if kind == "demo" else {}

    url = obj.settings.database_url
    upgrade(url)
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            if file is not None:
                try:
                    report = _import_one(session, cast("Kind", kind), file, obj=obj, actor=actor)
                except ImportErrors as exc:
                    fail(*(f"{file}:{e}" for e in exc.errors))
                except OSError as exc:  # unreadable: a directory, no permission
                    fail(f"{file}: {exc.strerror or exc}")
                _print_report(report)
                return
            # The demo's files in one transaction: a daemon sees its people with their facts.
            try:
                done = import_all(
                    session,
                    [(k, demo_dir() / name) for k, name in DEMO_FILES],
                    scenario=demo_dir() / DEMO_SCENARIO,
                    programs=programs,
                    now=obj.now,
                    actor=actor,
                )
            except ImportErrors as exc:
                fail(*(f"{exc.path}:{e}" for e in exc.errors))
            for report in done.files:
                _print_report(report)
            click.echo(shown(done.events))
    finally:
        engine.dispose()


def _import_one(
    session: Session, kind: Kind, path: Path, *, obj: Context, actor: str
) -> ImportReport:
    from jobs.imports import import_csv

    rows = _count_lines(path) - 1
    with _progress_bar(shown(f"{kind} {path.name}"), rows) as progress:
        return import_csv(session, kind, path, now=obj.now, actor=actor, progress=progress)


def _count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


@contextmanager
def _progress_bar(label: str, rows: int) -> Iterator[Callable[[int], None] | None]:
    if rows <= PROGRESS_ROWS:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    # stderr: stdout carries the report, which scripts may read. The label holds a file name:
    # text, not markup.
    with Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=rows)
        yield lambda done: bar.update(task, completed=done)


def _print_report(report: ImportReport) -> None:
    # A change quotes the file's values (names, addresses): shown, never obeyed.
    click.echo(shown(report))
    for change in report.changes[:CHANGES_SHOWN]:
        click.echo(f"  {shown(change)}")
    more = len(report.changes) + report.more_changes - CHANGES_SHOWN
    if more > 0:
        click.echo(f"  … and {more} more changes")
