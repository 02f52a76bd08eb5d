"""``tickler export evidence``: what an auditor takes away, one row per obligation, then the
survey statistics, as CSV (standard output or a file) or XLSX.

The rows and the format are ``jobs.export``'s, shared with the dashboard's downloads: read in
keyset batches and written as they come, so the export never holds a table, and a text cell a
spreadsheet would read as a formula is prefixed with ``'``.
"""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import click

from scheduler.cli.context import Context, fail


def _day(value: str | None, *, end: bool = False) -> datetime | None:
    if value is None:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start + timedelta(days=1) if end else start


@click.group()
def export() -> None:
    """Export what an auditor takes away."""


@export.command()
@click.option("--program", required=True, help="The program (its id).")
@click.option("--from", "start", help="Obligations due on or after this day (YYYY-MM-DD, UTC).")
@click.option("--to", "end", help="Obligations due on or before this day (YYYY-MM-DD, UTC).")
@click.option("--format", "fmt", type=click.Choice(["csv", "xlsx"]), default="csv")
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write here (default: standard output for CSV; required for XLSX).",
)
@click.pass_obj
def evidence(
    obj: Context, program: str, start: str | None, end: str | None, fmt: str, output: Path | None
) -> None:
    """One row per obligation of PROGRAM: who, what was asked, every message and reply, the
    answer and when; then the survey statistics."""
    from jobs import export as formats
    from scheduler.daemon.service import Service

    due_from, due_to = _day(start), _day(end, end=True)
    if due_from and due_to and due_to <= due_from:
        fail(f"--to {end} is before --from {start}")
    programs = obj.programs()
    if program not in {p.id for p in programs}:
        fail(f"unknown program {program}; known: {', '.join(sorted(p.id for p in programs))}")
    if fmt == "xlsx" and output is None:
        fail("--format xlsx needs --output FILE")
    service = Service(obj.settings, programs)
    service.migrate()
    try:
        with service.factory() as session:
            if output is None:
                tallies = formats.write(
                    session, program, "csv", sys.stdout.buffer, due_from=due_from, due_to=due_to
                )
                sys.stdout.buffer.flush()
            else:
                with output.open("wb") as f:
                    tallies = formats.write(
                        session,
                        program,
                        "xlsx" if fmt == "xlsx" else "csv",
                        f,
                        due_from=due_from,
                        due_to=due_to,
                    )
    finally:
        service.engine.dispose()
    if output is not None:
        total = sum(t.surveyed for t in tallies.values())
        click.echo(f"wrote {total} obligations of {program} to {output}", err=True)
