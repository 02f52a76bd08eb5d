"""CSV imports of people and option grants, and the demo data set.

**All or nothing.** A file is read as a stream and written a batch at a time in one
transaction, with its audit row; the checks that need the database (a grant's employee) run in
it. A bad file raises ``ImportErrors`` with every problem it has (line, column, what is wrong),
the transaction is rolled back and nothing is changed. Files that belong together (the demo's
people, grants and facts: ``import_all``) share one transaction, so a daemon never plans people
without the facts about them, and a bad row in the last file undoes the first.

**Idempotent.** People are upserted by (kind, external_id), grants by external_id. A row equal
to what is stored is counted as unchanged and not touched, so its ``updated_at`` keeps telling
when it last really changed. Nothing is deleted: a person missing from a file stays.

Line numbers are those of the file as a text editor shows them, the header being line 1; a
quoted field spanning lines is reported at the line its record starts on.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from importlib import resources
from itertools import islice
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal, TypeVar, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from config.dates import plausible
from config.emails import Email
from config.facts import FactKind
from config.locales import Locale
from config.programs import Program
from jobs.record import RecordError, find_person, record
from jobs.storage import Session, people
from jobs.storage.db import (
    EventLog,
    EventSource,
    FcpaRole,
    OptionGrant,
    Person,
    PersonKind,
    SupplierTier,
    begin_immediate,
)

Kind = Literal["suppliers", "employees", "third-parties", "grants"]
KINDS: tuple[Kind, ...] = get_args(Kind)

#: The demo CSVs in import order (grants need their employees), then the recorded events.
DEMO_FILES: tuple[tuple[Kind, str], ...] = (
    ("suppliers", "suppliers.csv"),
    ("employees", "employees.csv"),
    ("third-parties", "third_parties.csv"),
    ("grants", "grants.csv"),
)
DEMO_SCENARIO = "scenario.csv"

#: At most this many change lines go into the audit row and the report; the rest are counted.
AUDIT_CHANGES_MAX = 1000
#: Rows checked, looked up and written together: memory holds one batch of a file.
BATCH = 500
T = TypeVar("T")
R = TypeVar("R")


def demo_dir() -> Path:
    """Return the directory of the shipped demo CSVs."""
    return Path(str(resources.files("config") / "demo"))


@dataclass(frozen=True, slots=True, kw_only=True)
class RowError:
    """One problem in a file. (Not named ``ImportError``: that would shadow the builtin.)"""

    row: int  # line number, the header being line 1
    column: str  # "" when the problem is the line or the file as a whole
    message: str

    def __str__(self) -> str:
        return (
            f"{self.row}: {self.column}: {self.message}"
            if self.column
            else f"{self.row}: {self.message}"
        )


class ImportErrors(Exception):
    """Every problem found in a file (``path``, when several were imported); nothing was
    written."""

    def __init__(self, errors: Sequence[RowError], path: Path | None = None) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = list(errors)
        self.path = path


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportReport:
    kind: str
    created: int
    updated: int
    unchanged: int
    changes: list[str] = field(default_factory=list)  # "employee:E1001 email: a@x -> b@x"
    more_changes: int = 0  # changes beyond the AUDIT_CHANGES_MAX listed

    def __str__(self) -> str:
        return (
            f"{self.kind}: {self.created} created, {self.updated} updated, "
            f"{self.unchanged} unchanged"
        )


# ---------------------------------------------------------------------------------------------
# Cell parsers: strings in, typed values out, messages a compliance officer can act on.
# A blank cell arrives as None: optional fields accept it, required ones report it.

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_COUNT = re.compile(r"^\d{1,9}$")
_PRICE = re.compile(r"^\d{1,8}(\.\d{1,4})?$")  # Numeric(12, 4)
_EXTERNAL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _date(value: object) -> object:
    if isinstance(value, str):
        if not _DATE.match(value):
            raise ValueError(f"{value!r} is not a date (YYYY-MM-DD)")
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a valid date") from None
        return plausible(day)  # 9999-12-31 ("no end date") would overflow the rules
    return value


def _bool(value: object) -> object:
    if isinstance(value, str):
        try:
            return _BOOLEANS[value.lower()]
        except KeyError:
            raise ValueError(f"{value!r} is not a boolean (true/false, yes/no, 1/0)") from None
    return value


def _count(value: object) -> object:
    if isinstance(value, str):
        if not _COUNT.match(value):
            raise ValueError(f"{value!r} is not a whole number of shares")
        return int(value)
    return value


def _price(value: object) -> object:
    if isinstance(value, str):
        if not _PRICE.match(value):
            raise ValueError(f"{value!r} is not a price such as 6.00 (no currency sign)")
        try:
            return Decimal(value)
        except InvalidOperation:  # pragma: no cover (the pattern admits only valid decimals)
            raise ValueError(f"{value!r} is not a price") from None
    return value


def _external_id(value: object) -> object:
    if isinstance(value, str) and not _EXTERNAL_ID.match(value):
        raise ValueError(f"{value!r}: use letters, digits, '.', '_' and '-' (at most 128)")
    return value


def _country(value: object) -> object:
    if isinstance(value, str):
        if not _COUNTRY.match(value):
            raise ValueError(f"{value!r} is not an ISO 3166 two-letter country code")
        return value.upper()
    return value


Day = Annotated[date, BeforeValidator(_date)]
Flag = Annotated[bool, BeforeValidator(_bool)]
Count = Annotated[int, BeforeValidator(_count)]
Price = Annotated[Decimal, BeforeValidator(_price)]
ExternalId = Annotated[str, BeforeValidator(_external_id)]
Country = Annotated[str, BeforeValidator(_country)]
Name = Annotated[str, Field(max_length=256)]


class Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


M = TypeVar("M", bound=Row)


class Keyed(Row):
    """A row naming what it writes by ``external_id``: a file may hold each one once."""

    external_id: ExternalId


K = TypeVar("K", bound=Keyed)


class PersonRow(Keyed):
    name: Name
    email: Email
    # An optional column: a file without it leaves each person's locale as it is.
    locale: Locale | None = None

    def values(self) -> dict[str, Any]:
        """Return the Person columns this row sets."""
        unset = set() if "locale" in self.model_fields_set else {"locale"}
        return self.model_dump(exclude={"external_id", *unset})


class SupplierRow(PersonRow):
    tier: SupplierTier
    owner_email: Email | None


class EmployeeRow(PersonRow):
    country: Country
    hire_date: Day
    termination_date: Day | None
    is_director: Flag
    is_executive_officer: Flag
    role: Literal["director", "officer", "employee", "agent"]
    manager_email: Email | None

    def values(self) -> dict[str, Any]:
        return {**super().values(), "role": FcpaRole(self.role)}


class ThirdPartyRow(PersonRow):
    role: Literal["distributor", "consultant", "jv_partner", "agent"]
    start_date: Day

    def values(self) -> dict[str, Any]:
        return {**super().values(), "role": FcpaRole(self.role)}


class GrantRow(Keyed):
    employee_id: ExternalId
    grant_date: Day
    shares: Annotated[Count, Field(gt=0)]
    unexercised: Count
    price: Annotated[Price, Field(ge=0)]

    @field_validator("unexercised")
    @classmethod
    def _within_shares(cls, value: int, info: ValidationInfo) -> int:
        shares = info.data.get("shares")
        if shares is not None and value > shares:
            raise ValueError(f"{value} unexercised is more than the {shares} shares granted")
        return value


PERSON_ROWS: dict[Kind, type[PersonRow]] = {
    "suppliers": SupplierRow,
    "employees": EmployeeRow,
    "third-parties": ThirdPartyRow,
}
PERSON_KINDS: dict[Kind, PersonKind] = {
    "suppliers": PersonKind.SUPPLIER,
    "employees": PersonKind.EMPLOYEE,
    "third-parties": PersonKind.THIRD_PARTY,
}


def columns(model: type[Row]) -> tuple[str, ...]:
    """Return the columns a file for ``model`` must have, in the documented order."""
    return tuple(name for name, f in model.model_fields.items() if f.is_required())


def optional_columns(model: type[Row]) -> tuple[str, ...]:
    """Return the columns a file for ``model`` may have besides (``locale``)."""
    return tuple(name for name, f in model.model_fields.items() if not f.is_required())


# ---------------------------------------------------------------------------------------------
# Reading a file, as a stream: a record at a time, never the whole file in memory

Record = tuple[int, dict[str, str | None]]  # (line, {column: cell}); a blank cell is None


def read_table(data: bytes, expected: Sequence[str], optional: Sequence[str] = ()) -> list[Record]:
    """Return the records of ``data`` (see ``scan``); raise ``ImportErrors`` for any bad one."""
    records: list[Record] = []
    errors: list[RowError] = []
    for item in scan(io.BytesIO(data), expected, optional):
        if isinstance(item, RowError):
            errors.append(item)
        else:
            records.append(item)
    if errors:
        raise ImportErrors(errors)
    return records


def scan(
    stream: BinaryIO, expected: Sequence[str], optional: Sequence[str] = ()
) -> Iterator[Record | RowError]:
    """Yield each record of the CSV ``stream`` as it is read, or the ``RowError`` of a bad one.

    Checks what needs no model: UTF-8 (a BOM is allowed), the header (every expected column,
    nothing else: ``ImportErrors`` at once), the field count, and no control characters in a
    cell, CR and LF above all: a line break in a name or an address ends up in an email header.
    ``stream`` must be seekable: text that is not UTF-8 is located by reading it again.
    """
    # newline="": the csv module sees line ends untranslated (quoted fields may span lines).
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    reader = csv.reader(text, strict=True)
    header: list[str] | None = None
    start = 1
    try:
        for record in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in record):
                continue  # blank lines, and the ",,,," rows spreadsheets leave at the end
            if header is None:
                header = [cell.strip().lower() for cell in record]
                _check_header(header, expected, line, optional)
                continue
            if len(record) > len(header) and not any(c.strip() for c in record[len(header) :]):
                record = record[: len(header)]
            if len(record) != len(header):
                yield RowError(
                    row=line,
                    column="",
                    message=f"{len(record)} fields where the header has {len(header)}",
                )
                continue
            cells = dict(zip(header, (cell.strip() for cell in record), strict=True))
            bad = [(c, _control(v)) for c, v in cells.items() if _control(v)]
            for column, message in bad:
                yield RowError(row=line, column=column, message=message)
            if not bad:
                yield line, {c: v or None for c, v in cells.items()}
    except csv.Error as exc:
        yield RowError(row=reader.line_num, column="", message=f"malformed CSV: {exc}")
        return
    except UnicodeDecodeError:
        yield _not_utf8(stream)
        return
    finally:
        text.detach()  # the caller's stream stays open (a wrapper closes it when collected)
    if header is None:
        yield RowError(row=1, column="", message=f"empty file; the header is: {','.join(expected)}")


def _not_utf8(stream: BinaryIO) -> RowError:
    """Return where the first byte that is not UTF-8 is, reading ``stream`` again line by line
    (a UTF-8 character never holds the byte of LF, so each line decodes on its own)."""
    stream.seek(0)
    offset = 0
    for number, raw in enumerate(stream, 1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return RowError(
                row=number,
                column="",
                message=f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                f"{offset + exc.start}); save the file as CSV UTF-8",
            )
        offset += len(raw)
    # A character cut by the end of the file: the decoder saw it, line by line it is whole.
    return RowError(row=1, column="", message="not UTF-8 text; save the file as CSV UTF-8")


def _check_header(
    header: list[str], expected: Sequence[str], line: int, optional: Sequence[str] = ()
) -> None:
    wanted = ",".join(expected) + "".join(f" (optional: {c})" for c in optional)
    errors = [
        RowError(row=line, column=c, message=f"missing column (the header is: {wanted})")
        for c in expected
        if c not in header
    ]
    seen: set[str] = set()
    for column in header:
        if column in seen:
            errors.append(RowError(row=line, column=column, message="column appears twice"))
        elif column not in expected and column not in optional:
            errors.append(
                RowError(
                    row=line,
                    column=column or "(blank)",
                    message=f"unknown column (the header is: {wanted})",
                )
            )
        seen.add(column)
    if errors:
        raise ImportErrors(errors)


def _control(value: str) -> str:
    for char in value:
        if char in "\r\n":
            return "contains a line break (CR or LF); a field must be one line"
        if ord(char) < 32 or ord(char) == 127:
            return f"contains the control character U+{ord(char):04X}"
    return ""


def parse_rows(
    records: Sequence[tuple[int, dict[str, str | None]]], model: type[M]
) -> tuple[list[tuple[int, M]], list[RowError]]:
    """Validate each record against ``model``; every error names its line and column."""
    rows: list[tuple[int, M]] = []
    errors: list[RowError] = []
    for line, cells in records:
        try:
            rows.append((line, model.model_validate(cells)))
        except ValidationError as exc:
            errors.extend(
                RowError(row=line, column=str(e["loc"][0]) if e["loc"] else "", message=_message(e))
                for e in exc.errors(include_url=False)
            )
    return rows, errors


def _message(error: Any) -> str:
    if error.get("input", "") is None:
        return "is blank; a value is required"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _duplicates(first: dict[str, int], keys: Sequence[tuple[int, str]]) -> list[RowError]:
    """Return the rows of ``keys`` whose external id came before; ``first`` remembers the line
    of each id seen so far in the file."""
    errors: list[RowError] = []
    for line, key in keys:
        if key in first:
            errors.append(
                RowError(
                    row=line,
                    column="external_id",
                    message=f"duplicate external_id {key!r}: lines {first[key]} and {line}",
                )
            )
        else:
            first[key] = line
    return errors


# ---------------------------------------------------------------------------------------------
# Importing: a batch at a time, in the caller's transaction


def import_csv(
    session: Session,
    kind: Kind,
    path: Path,
    *,
    now: datetime,
    actor: str,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import the ``kind`` CSV at ``path`` in one transaction, committed here.

    Raises ``ImportErrors`` (every problem, nothing written) for a bad file. ``session`` must
    have no transaction in progress: on SQLite the import takes the write lock before it reads
    what is stored (``begin_immediate``), so that a daemon writing meanwhile makes it wait rather
    than fail half-way. ``progress`` is called with the number of rows written so far.
    """
    return _committed(
        session,
        now,
        lambda: stage_csv(session, kind, path, now=now, actor=actor, progress=progress),
    )


def _committed(session: Session, now: datetime, stage: Callable[[], R]) -> R:
    """Return ``stage()`` run in a new transaction of ``session``, committed; rolled back when
    it raises. On SQLite the write lock is taken first (``begin_immediate``), so that a daemon
    writing meanwhile makes an import wait rather than fail half-way."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    begin_immediate(session)
    try:
        result = stage()
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return result


@dataclass(slots=True)
class _Tally:
    """What an import did so far; change lines beyond what the audit row keeps are counted."""

    rows: int = 0
    created: int = 0
    updated: int = 0
    changes: list[str] = field(default_factory=list)
    more_changes: int = 0

    def change(self, lines: Sequence[str]) -> None:
        room = max(0, AUDIT_CHANGES_MAX - len(self.changes))
        self.changes += lines[:room]
        self.more_changes += max(0, len(lines) - room)

    def report(self, kind: Kind) -> ImportReport:
        return ImportReport(
            kind=kind,
            created=self.created,
            updated=self.updated,
            unchanged=self.rows - self.created - self.updated,
            changes=self.changes,
            more_changes=self.more_changes,
        )


def stage_csv(
    session: Session,
    kind: Kind,
    path: Path,
    *,
    now: datetime,
    actor: str,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Write the ``kind`` CSV at ``path`` and its audit row in ``session``'s transaction; the
    caller commits, or rolls back on ``ImportErrors``.

    The file is read as a stream, ``BATCH`` rows at a time: a batch is checked, its stored rows
    looked up by external id, and it is written (flushed). Memory holds one batch, the external
    ids seen (to refuse a duplicate) and the change lines the audit row keeps. From the first
    bad row on nothing more is written but the rest is still checked, so that ``ImportErrors``
    lists every problem; the caller's rollback undoes the batches already written.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown import kind {kind!r}; known: {', '.join(KINDS)}")
    tally = _Tally()
    errors: list[RowError] = []
    first: dict[str, int] = {}
    with path.open("rb") as stream:
        if kind == "grants":
            for grants, bad in _checked(stream, GrantRow, first):
                employees = people.employee_ids(session, {row.employee_id for _, row in grants})
                errors += bad + [
                    RowError(
                        row=line,
                        column="employee_id",
                        message=f"no employee {row.employee_id!r}; import the employees first",
                    )
                    for line, row in grants
                    if row.employee_id not in employees
                ]
                if not errors:  # from the first error on, the rest is only checked
                    _write_grants(session, grants, employees, tally)
                    _progress(session, progress, tally)
        else:
            for persons, bad in _checked(stream, PERSON_ROWS[kind], first):
                errors += bad
                if not errors:
                    _write_people(session, kind, persons, now, tally)
                    _progress(session, progress, tally)
        if errors:
            raise ImportErrors(sorted(errors, key=lambda e: e.row))
        stream.seek(0)
        sha256 = hashlib.file_digest(stream, "sha256").hexdigest()
    report = tally.report(kind)
    people.add(
        session,
        EventLog(
            at=now,
            received_at=now,
            actor=actor,
            source=EventSource.IMPORT,
            kind="import",
            program=None,
            person_id=None,
            payload={
                "file": path.name,
                "sha256": sha256,
                "kind": kind,
                "created": report.created,
                "updated": report.updated,
                "unchanged": report.unchanged,
                "changes": report.changes,
                "changes_omitted": report.more_changes,
            },
        ),
    )
    return report


def _checked(
    stream: BinaryIO, model: type[K], first: dict[str, int]
) -> Iterator[tuple[list[tuple[int, K]], list[RowError]]]:
    """Yield the rows of ``stream`` by batches of ``BATCH``: the valid ones, and the errors."""
    for batch in _batches(scan(stream, columns(model), optional_columns(model)), BATCH):
        rows, errors = _parsed(batch, model)
        errors += _duplicates(first, [(line, row.external_id) for line, row in rows])
        yield rows, errors


def _parsed(
    batch: Sequence[Record | RowError], model: type[M]
) -> tuple[list[tuple[int, M]], list[RowError]]:
    """Return the rows of ``batch`` that ``model`` accepts, and every error of the batch."""
    rows, errors = parse_rows([r for r in batch if not isinstance(r, RowError)], model)
    return rows, [r for r in batch if isinstance(r, RowError)] + errors


def _batches(items: Iterator[T], size: int) -> Iterator[list[T]]:
    while batch := list(islice(items, size)):
        yield batch


def _write_people(
    session: Session,
    kind: Kind,
    rows: Sequence[tuple[int, PersonRow]],
    now: datetime,
    tally: _Tally,
) -> None:
    person_kind = PERSON_KINDS[kind]
    stored = people.of_kind(session, person_kind, [row.external_id for _, row in rows])
    for _line, row in rows:
        tally.rows += 1
        values = row.values()
        if values.get("termination_date", "") is None:
            # A termination is recorded as an event (``jobs.record``), which sets this
            # date; an HR export that lags behind must not quietly undo it and put the person
            # back on the offer's mailing list. A date in the file still replaces it.
            del values["termination_date"]
        person = stored.get(row.external_id)
        if person is None:
            person = Person(
                kind=person_kind,
                external_id=row.external_id,
                created_at=now,
                updated_at=now,
                **values,
            )
            people.add(session, person)
            tally.created += 1
        else:
            diff = _diff(person, values)
            if diff:
                for column, (_old, new) in diff.items():
                    setattr(person, column, new)
                person.updated_at = now
                tally.updated += 1
                tally.change(_describe(f"{person_kind}:{row.external_id}", diff))


def _write_grants(
    session: Session,
    rows: Sequence[tuple[int, GrantRow]],
    employees: Mapping[str, int],
    tally: _Tally,
) -> None:
    stored = people.grants(session, [row.external_id for _, row in rows])
    for _line, row in rows:
        tally.rows += 1
        values: dict[str, Any] = {
            "person_id": employees[row.employee_id],
            "grant_date": row.grant_date,
            "shares": row.shares,
            "unexercised": row.unexercised,
            "price": row.price,
        }
        grant = stored.get(row.external_id)
        if grant is None:
            people.add(session, OptionGrant(external_id=row.external_id, **values))
            tally.created += 1
        else:
            diff = _diff(grant, values)
            if diff:
                for column, (_old, new) in diff.items():
                    setattr(grant, column, new)
                tally.updated += 1
                if "person_id" in diff:  # say which employee, not which database id
                    old, new = diff.pop("person_id")
                    was = people.external_ids(session, [old]).get(old, old)
                    diff = {"employee_id": (was, row.employee_id), **diff}
                tally.change(_describe(f"grant:{row.external_id}", diff))


def _diff(obj: object, values: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    # Equality, not identity of representation: Decimal("6.0000") == Decimal("6.00"), and a
    # StrEnum equals its value, so a re-import of the same file finds nothing to change.
    return {
        column: (getattr(obj, column), new)
        for column, new in values.items()
        if getattr(obj, column) != new
    }


def _describe(who: str, diff: Mapping[str, tuple[Any, Any]]) -> list[str]:
    return [f"{who} {column}: {_show(old)} -> {_show(new)}" for column, (old, new) in diff.items()]


def _show(value: object) -> str:
    if value is None:
        return "(blank)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        cents = value.quantize(Decimal("0.01"))
        return str(cents if cents == value else value.normalize())
    return str(value)


def _progress(session: Session, progress: Callable[[int], None] | None, tally: _Tally) -> None:
    # Flushed batch by batch whatever the bar: memory holds one batch of changes, and the bar
    # follows the database work, not the loop.
    people.flush(session)
    if progress is not None:
        progress(tally.rows)


# ---------------------------------------------------------------------------------------------
# Recorded events (the demo scenario)

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def _instant(value: object) -> object:
    if isinstance(value, str):
        if not _RFC3339.match(value):
            raise ValueError(
                f"{value!r} is not an RFC 3339 instant such as 2017-01-17T10:30:00-08:00"
            )
        return plausible(datetime.fromisoformat(value))
    return value


def _json_object(value: object) -> object:
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise ValueError('must be a JSON object, e.g. {"complete": true}')
    return value


class ScenarioRow(Row):
    at: Annotated[datetime, BeforeValidator(_instant)]
    kind: FactKind  # the event log's name: cmrt_response, fcpa_ack...
    program: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")] | None
    person: Annotated[str, Field(max_length=160)] | None
    payload: Annotated[dict[str, Any], BeforeValidator(_json_object)]


@dataclass(frozen=True, slots=True, kw_only=True)
class ScenarioReport:
    recorded: dict[str, int]  # per event kind
    skipped: int  # already in the event log
    later: int = 0  # dated after ``now``: left for a later run

    def __str__(self) -> str:
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(self.recorded.items()))
        total = sum(self.recorded.values())
        text = f"events: {total} recorded ({kinds or 'none'}), {self.skipped} already recorded"
        return text + (f", {self.later} dated after now left for later" if self.later else "")


def load_scenario(
    session: Session,
    path: Path,
    *,
    programs: Mapping[str, Program],
    now: datetime,
    actor: str,
) -> ScenarioReport:
    """Record the events of ``path`` in one transaction, committed here (see
    ``stage_scenario``); ``session`` must have no transaction in progress."""
    return _committed(
        session,
        now,
        lambda: stage_scenario(session, path, programs=programs, now=now, actor=actor),
    )


def stage_scenario(
    session: Session,
    path: Path,
    *,
    programs: Mapping[str, Program],
    now: datetime,
    actor: str,
) -> ScenarioReport:
    """Record the events of ``path`` (``at,kind,program,person,payload``) in ``session``'s
    transaction; the caller commits, or rolls back on ``ImportErrors``.

    A scenario is history: each row is recorded as of its own date, a backfill (flagged in the
    event log, its receipt time ``now``). It goes through ``jobs.record.record``, so it obeys
    every rule an API call does, judged at that date (no election dated after the cutoff, no
    withdrawal without an election). A row whose event (kind, program, person, at) is
    already in the event log is skipped, which makes loading the same file twice a no-op.
    All or nothing: any bad row raises ``ImportErrors``, with every malformed row, or when
    there is none every row the rules refused.

    Streamed: the rows must come in date order (a fact is checked against the earlier ones,
    and sorting would need the whole file); a row dated before the one above it is refused.
    Rows dated after ``now`` are left out (and counted): with ``tickler --now 2017-02-01…`` the
    demo shows the world as it stood that day, and a later run records the rest.
    """
    malformed: list[RowError] = []
    refused: list[RowError] = []
    recorded: dict[str, int] = {}
    skipped = later = 0
    last: tuple[int, datetime] | None = None
    with path.open("rb") as stream:
        for batch in _batches(scan(stream, columns(ScenarioRow)), BATCH):
            rows, errors = _parsed(batch, ScenarioRow)
            malformed += errors
            for line, row in rows:
                if last is not None and row.at < last[1]:
                    malformed.append(
                        RowError(
                            row=line,
                            column="at",
                            message=f"dated before line {last[0]} ({last[1].isoformat()}): "
                            "facts are recorded in date order, sort the file by at",
                        )
                    )
                last = (line, row.at)
                if malformed:  # from the first malformed row on, the rest is only checked
                    continue
                if row.at > now:
                    later += 1
                    continue
                try:
                    if _record_once(session, row, programs=programs, now=now, actor=actor):
                        recorded[row.kind] = recorded.get(row.kind, 0) + 1
                    else:
                        skipped += 1
                except RecordError as exc:
                    refused.append(
                        RowError(row=line, column="", message=f"{row.kind}: {exc.message}")
                    )
    if malformed or refused:
        raise ImportErrors(sorted(malformed or refused, key=lambda e: e.row))
    return ScenarioReport(recorded=recorded, skipped=skipped, later=later)


def _record_once(
    session: Session,
    row: ScenarioRow,
    *,
    programs: Mapping[str, Program],
    now: datetime,
    actor: str,
) -> bool:
    """Record ``row`` unless the event log already holds it; tell whether it was recorded."""
    person_id = find_person(session, row.person).id if row.person else None
    if people.event_exists(
        session, kind=row.kind, program=row.program, person_id=person_id, at=row.at
    ):
        return False
    record(
        session,
        kind=row.kind,
        program=row.program,
        person=row.person,
        at=row.at,
        actor=actor,
        source=EventSource.IMPORT,
        payload=row.payload,
        programs=programs,
        now=now,
        may_backfill=True,
    )
    return True


# ---------------------------------------------------------------------------------------------
# Files that belong together


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportAllReport:
    files: list[ImportReport]
    events: ScenarioReport | None


def import_all(
    session: Session,
    files: Sequence[tuple[Kind, Path]],
    *,
    scenario: Path | None,
    programs: Mapping[str, Program],
    now: datetime,
    actor: str,
) -> ImportAllReport:
    """Import ``files`` in their order, then record the events of ``scenario``, in ONE
    transaction, committed here; ``session`` must have no transaction in progress.

    Why one: a daemon plans whatever is committed. With people committed before the facts
    about them (the demo's employees before their elections), it would plan and queue what
    those facts cancel a moment later, and its counts would depend on the timing. One
    transaction makes them visible together (on SQLite it also holds the write lock
    throughout, so the daemon's writes wait: the demo's took 3.9 s on a 2-core machine at a
    load of 7 to 10, well within the 30 s busy timeout). Any bad row,
    in the last file too, raises ``ImportErrors`` naming its file and leaves the database as
    it was.
    """

    def stage() -> ImportAllReport:
        reports: list[ImportReport] = []
        events: ScenarioReport | None = None
        for kind, path in files:
            try:
                reports.append(stage_csv(session, kind, path, now=now, actor=actor))
            except ImportErrors as exc:
                raise ImportErrors(exc.errors, path) from None
        if scenario is not None:
            try:
                events = stage_scenario(session, scenario, programs=programs, now=now, actor=actor)
            except ImportErrors as exc:
                raise ImportErrors(exc.errors, scenario) from None
        return ImportAllReport(files=reports, events=events)

    return _committed(session, now, stage)
