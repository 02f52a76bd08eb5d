"""``tickler export evidence``: what an auditor takes away, one row per obligation.

Each row: the person, what was asked and by when, its state, every message that went out (when,
to whom, its Message-ID, the server's reply), and the answer from the event log (when it
happened, when the server recorded it, who recorded it, what it said). Then the survey
statistics a Conflict Minerals Report quotes, per occurrence: people asked ("suppliers
surveyed"), responded, complete, the response rate, escalated. CSV puts them in a section
after the rows; XLSX (openpyxl, write-only) in a sheet of their own.

Rows are read in keyset batches and written as they come (``jobs.storage.evidence``): the
export never holds a table. Any text cell that a spreadsheet would read as a formula (it
starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) is prefixed with ``'``.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from scheduler.cli.context import Context, fail
from scheduler.cli.terminal import csv_cell as safe

if TYPE_CHECKING:
    from jobs.storage.evidence import ObligationRow

COLUMNS = [
    "program",
    "occurrence",
    "person",
    "name",
    "email",
    "asked",
    "due",
    "state",
    "messages",
    "message_count",
    "responded_at",
    "recorded_at",
    "recorded_by",
    "response",
    "escalated",
]
STAT_COLUMNS = ["occurrence", "surveyed", "responded", "complete", "response_rate", "escalated"]
#: Obligation states that mean the person answered, and answered completely.
ANSWERED = {"complete", "incomplete", "acknowledged", "elected"}
COMPLETE = {"complete", "acknowledged", "elected"}


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else ""


def cells(row: ObligationRow) -> list[Any]:
    """Return the export's cells for one obligation, unescaped."""
    lines = [
        " ".join(
            part
            for part in (
                _when(m.sent_at or m.due_at),
                m.job,
                f"to {m.recipient}",
                f"<{m.message_id}>",
                m.state,
                f"{m.code if m.code is not None else '-'} {m.reply}".strip(),
            )
        )
        for m in row.messages
    ]
    r = row.response
    payload = ", ".join(f"{k}={v}" for k, v in sorted(r.payload.items())) if r else ""
    escalated = row.state == "escalated" or any(
        m.job.endswith("_escalation") and m.state == "sent" for m in row.messages
    )
    return [
        row.program,
        row.occurrence,
        row.person,
        row.name,
        row.email,
        row.kind,
        _when(row.due_at),
        row.state,
        "\n".join(lines),
        len(row.messages),
        _when(r.at) if r else "",
        _when(r.received_at) if r else "",
        r.actor if r else "",
        payload,
        "yes" if escalated else "no",
    ]


@dataclass
class Tally:
    surveyed: int = 0
    responded: int = 0
    complete: int = 0
    escalated: int = 0

    def row(self, occurrence: str) -> list[Any]:
        rate = f"{self.responded / self.surveyed:.1%}" if self.surveyed else ""
        return [occurrence, self.surveyed, self.responded, self.complete, rate, self.escalated]


def _rows(rows: Iterator[ObligationRow], tallies: dict[str, Tally]) -> Iterator[list[Any]]:
    for row in rows:
        out = cells(row)
        tally = tallies.setdefault(row.occurrence, Tally())
        tally.surveyed += 1
        tally.responded += row.state in ANSWERED or row.response is not None
        tally.complete += row.state in COMPLETE
        tally.escalated += out[-1] == "yes"
        yield [safe(v) for v in out]


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
    from jobs.storage import evidence as store
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
    tallies: dict[str, Tally] = {}
    try:
        with service.factory() as session:
            rows = _rows(
                store.obligations(session, program, due_from=due_from, due_to=due_to), tallies
            )
            if fmt == "csv":
                if output is None:
                    _csv(sys.stdout, rows, tallies)
                else:
                    with output.open("w", newline="", encoding="utf-8") as f:
                        _csv(f, rows, tallies)
            else:
                assert output is not None
                _xlsx(output, rows, tallies)
    finally:
        service.engine.dispose()
    if output is not None:
        total = sum(t.surveyed for t in tallies.values())
        click.echo(f"wrote {total} obligations of {program} to {output}", err=True)


def _csv(out: IO[str], rows: Iterator[list[Any]], tallies: dict[str, Tally]) -> None:
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    writer.writerow([])
    writer.writerow(["survey statistics"])
    writer.writerow(STAT_COLUMNS)
    writer.writerows([safe(v) for v in t.row(occ)] for occ, t in sorted(tallies.items()))


def _xlsx(path: Path, rows: Iterator[list[Any]], tallies: dict[str, Tally]) -> None:
    from openpyxl import Workbook

    # Write-only: rows go to a temporary file as they come, not into a tree in memory.
    book = Workbook(write_only=True)
    sheet = book.create_sheet("Obligations")
    stats = book.create_sheet("Survey statistics")
    sheet.append(COLUMNS)
    for row in rows:
        sheet.append(row)
    stats.append(STAT_COLUMNS)
    for occurrence, tally in sorted(tallies.items()):
        stats.append([safe(v) for v in tally.row(occurrence)])
    book.save(path)
