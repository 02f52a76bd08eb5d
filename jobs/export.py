"""The evidence export's format: what an auditor takes away, one row per obligation.

Each row: the person, what was asked and by when, its state, every message that went out (when,
to whom, its Message-ID, the server's reply), and the answer from the event log (when it
happened, when the server recorded it, who recorded it, what it said). Then the survey
statistics a Conflict Minerals Report quotes, per occurrence: people asked ("suppliers
surveyed"), responded, complete, the response rate, escalated. CSV puts them in a section
after the rows; XLSX (openpyxl, write-only) in a sheet of their own.

``tickler export evidence`` and the dashboard's downloads both write through ``write``: rows
come from ``jobs.storage.evidence`` in keyset batches and go out as they come, to a file or to
any binary stream (a non-seekable one too: the XLSX zip then uses data descriptors), so
neither holds a table or a whole file. Any text cell that a spreadsheet would read as a
formula is prefixed with ``'`` (``config.cells``).

Nothing heavy is imported at module level: the CLI's start stays fast.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, Literal

from config.cells import csv_cell

if TYPE_CHECKING:
    from jobs.storage import Session
    from jobs.storage.evidence import ObligationRow

Format = Literal["csv", "xlsx"]
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
MEDIA_TYPES: dict[Format, str] = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


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


def tallied(rows: Iterator[ObligationRow], tallies: dict[str, Tally]) -> Iterator[list[Any]]:
    """Yield each obligation's escaped cells, counting it in ``tallies`` by occurrence."""
    for row in rows:
        out = cells(row)
        tally = tallies.setdefault(row.occurrence, Tally())
        tally.surveyed += 1
        tally.responded += row.state in ANSWERED or row.response is not None
        tally.complete += row.state in COMPLETE
        tally.escalated += out[-1] == "yes"
        yield [csv_cell(v) for v in out]


def write(
    session: Session,
    program: str,
    fmt: Format | Literal["statistics"],
    out: IO[bytes],
    *,
    due_from: datetime | None = None,
    due_to: datetime | None = None,
) -> dict[str, Tally]:
    """Write ``program``'s evidence to ``out`` as it is read (``statistics``: only the survey
    statistics, as CSV, the rows counted and dropped); return the statistics."""
    from jobs.storage import evidence

    tallies: dict[str, Tally] = {}
    rows = tallied(
        evidence.obligations(session, program, due_from=due_from, due_to=due_to), tallies
    )
    if fmt == "xlsx":
        write_xlsx(out, rows, tallies)
        return tallies
    text = io.TextIOWrapper(out, encoding="utf-8", newline="")
    try:
        if fmt == "csv":
            write_csv(text, rows, tallies)
        else:
            for _ in rows:
                pass
            csv.writer(text, lineterminator="\r\n").writerows(statistics_csv(tallies)[1:])
    finally:
        text.flush()
        text.detach()
    return tallies


def statistics_csv(tallies: dict[str, Tally]) -> list[list[Any]]:
    """Return the survey statistics' section: its title, header and one row per occurrence."""
    return [
        ["survey statistics"],
        STAT_COLUMNS,
        *([csv_cell(v) for v in t.row(occ)] for occ, t in sorted(tallies.items())),
    ]


def write_csv(out: IO[str], rows: Iterator[list[Any]], tallies: dict[str, Tally]) -> None:
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    writer.writerow([])
    writer.writerows(statistics_csv(tallies))


def write_xlsx(out: Any, rows: Iterator[list[Any]], tallies: dict[str, Tally]) -> None:
    """Write the workbook to ``out``, a path or a binary stream."""
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
        stats.append([csv_cell(v) for v in tally.row(occurrence)])
    book.save(out)
