"""CSV imports of people and option grants, and the demo data set.

**All or nothing.** Every row is parsed and checked before anything is written; the checks that
need the database (a grant's employee) run in the same transaction as the writes, and the audit
row goes in with them. A bad file raises ``ImportErrors`` with every problem it has (line,
column, what is wrong) and changes nothing.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args

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

#: At most this many change lines go into the audit row; the report keeps them all.
AUDIT_CHANGES_MAX = 1000
_FLUSH_EVERY = 500


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
    """Every problem found in a file; nothing was written."""

    def __init__(self, errors: Sequence[RowError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = list(errors)


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportReport:
    kind: str
    created: int
    updated: int
    unchanged: int
    changes: list[str] = field(default_factory=list)  # "employee:E1001 email: a@x -> b@x"

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


class PersonRow(Row):
    external_id: ExternalId
    name: Name
    email: Email

    def values(self) -> dict[str, Any]:
        """Return the Person columns this row sets."""
        return self.model_dump(exclude={"external_id"})


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


class GrantRow(Row):
    external_id: ExternalId
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
    return tuple(model.model_fields)


# ---------------------------------------------------------------------------------------------
# Reading a file


def read_table(data: bytes, expected: Sequence[str]) -> list[tuple[int, dict[str, str | None]]]:
    """Decode ``data`` and return (line, {column: cell}) per record; blank cells become None.

    Checks what needs no model: UTF-8 (a BOM is allowed), the header (every expected column,
    nothing else), the field count, and no control characters in a cell, CR and LF above all:
    a line break in a name or an address ends up in an email header.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ImportErrors(
            [
                RowError(
                    row=line,
                    column="",
                    message=f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                    f"{exc.start}); save the file as CSV UTF-8",
                )
            ]
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    records: list[tuple[int, dict[str, str | None]]] = []
    errors: list[RowError] = []
    start = 1
    try:
        for record in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in record):
                continue  # blank lines, and the ",,,," rows spreadsheets leave at the end
            if header is None:
                header = [cell.strip().lower() for cell in record]
                _check_header(header, expected, line)
                continue
            if len(record) > len(header) and not any(c.strip() for c in record[len(header) :]):
                record = record[: len(header)]
            if len(record) != len(header):
                errors.append(
                    RowError(
                        row=line,
                        column="",
                        message=f"{len(record)} fields where the header has {len(header)}",
                    )
                )
                continue
            cells = dict(zip(header, (cell.strip() for cell in record), strict=True))
            bad = [
                RowError(row=line, column=c, message=_control(v))
                for c, v in cells.items()
                if _control(v)
            ]
            if bad:
                errors.extend(bad)
                continue
            records.append((line, {c: v or None for c, v in cells.items()}))
    except csv.Error as exc:
        errors.append(RowError(row=reader.line_num, column="", message=f"malformed CSV: {exc}"))
    if header is None:
        errors.append(
            RowError(row=1, column="", message=f"empty file; the header is: {','.join(expected)}")
        )
    if errors:
        raise ImportErrors(errors)
    return records


def _check_header(header: list[str], expected: Sequence[str], line: int) -> None:
    wanted = ",".join(expected)
    errors = [
        RowError(row=line, column=c, message=f"missing column (the header is: {wanted})")
        for c in expected
        if c not in header
    ]
    seen: set[str] = set()
    for column in header:
        if column in seen:
            errors.append(RowError(row=line, column=column, message="column appears twice"))
        elif column not in expected:
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


def _duplicates(keys: Sequence[tuple[int, str]]) -> list[RowError]:
    first: dict[str, int] = {}
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
# Importing


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
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    if kind not in KINDS:
        raise ValueError(f"unknown import kind {kind!r}; known: {', '.join(KINDS)}")
    data = path.read_bytes()
    if kind == "grants":
        grants, errors = parse_rows(read_table(data, columns(GrantRow)), GrantRow)
        errors += _duplicates([(line, row.external_id) for line, row in grants])
    else:
        model = PERSON_ROWS[kind]
        persons, errors = parse_rows(read_table(data, columns(model)), model)
        errors += _duplicates([(line, row.external_id) for line, row in persons])
        if errors:  # nothing more to learn from the database
            raise ImportErrors(sorted(errors, key=lambda e: e.row))
    begin_immediate(session)
    try:
        if kind == "grants":
            report = _import_grants(session, grants, errors, now=now, progress=progress)
        else:
            report = _import_people(session, kind, persons, now=now, progress=progress)
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
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "kind": kind,
                    "created": report.created,
                    "updated": report.updated,
                    "unchanged": report.unchanged,
                    "changes": report.changes[:AUDIT_CHANGES_MAX],
                    "changes_omitted": max(0, len(report.changes) - AUDIT_CHANGES_MAX),
                },
            ),
        )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return report


def _import_people(
    session: Session,
    kind: Kind,
    rows: Sequence[tuple[int, PersonRow]],
    *,
    now: datetime,
    progress: Callable[[int], None] | None,
) -> ImportReport:
    person_kind = PERSON_KINDS[kind]
    stored = people.of_kind(session, person_kind)
    created = updated = 0
    changes: list[str] = []
    for done, (_line, row) in enumerate(rows, 1):
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
            stored[row.external_id] = person  # (duplicates were refused above)
            created += 1
        else:
            diff = _diff(person, values)
            if diff:
                for column, (_old, new) in diff.items():
                    setattr(person, column, new)
                person.updated_at = now
                updated += 1
                changes += _describe(f"{person_kind}:{row.external_id}", diff)
        _progress(session, progress, done, len(rows))
    return ImportReport(
        kind=kind,
        created=created,
        updated=updated,
        unchanged=len(rows) - created - updated,
        changes=changes,
    )


def _import_grants(
    session: Session,
    rows: Sequence[tuple[int, GrantRow]],
    errors: list[RowError],
    *,
    now: datetime,
    progress: Callable[[int], None] | None,
) -> ImportReport:
    employees = people.employee_ids(session)
    errors = errors + [
        RowError(
            row=line,
            column="employee_id",
            message=f"no employee {row.employee_id!r}; import the employees first",
        )
        for line, row in rows
        if row.employee_id not in employees
    ]
    if errors:
        raise ImportErrors(sorted(errors, key=lambda e: e.row))
    external = {id_: ext for ext, id_ in employees.items()}
    stored = people.grants(session)
    created = updated = 0
    changes: list[str] = []
    for done, (_line, row) in enumerate(rows, 1):
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
            created += 1
        else:
            diff = _diff(grant, values)
            if diff:
                for column, (_old, new) in diff.items():
                    setattr(grant, column, new)
                updated += 1
                if "person_id" in diff:  # say which employee, not which database id
                    old, new = diff.pop("person_id")
                    diff = {"employee_id": (external.get(old, old), row.employee_id), **diff}
                changes += _describe(f"grant:{row.external_id}", diff)
        _progress(session, progress, done, len(rows))
    return ImportReport(
        kind="grants",
        created=created,
        updated=updated,
        unchanged=len(rows) - created - updated,
        changes=changes,
    )


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


def _progress(
    session: Session, progress: Callable[[int], None] | None, done: int, total: int
) -> None:
    if progress is not None and (done % _FLUSH_EVERY == 0 or done == total):
        people.flush(session)  # so that the bar follows the database work, not the loop
        progress(done)


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
    """Record the events of ``path`` (``at,kind,program,person,payload``) in one transaction.

    A scenario is history: each row is recorded as of its own date, a backfill (flagged in the
    event log, its receipt time ``now``). It goes through ``jobs.record.record``, so it obeys
    every rule an API call does, judged at that date (no election dated after the cutoff, no
    withdrawal without an election). A row whose event (kind, program, person, at) is
    already in the event log is skipped, which makes loading the same file twice a no-op.
    All or nothing: any bad row raises ``ImportErrors``.

    Rows dated after ``now`` are left out (and counted): with ``tickler --now 2017-02-01…`` the
    demo shows the world as it stood that day, and a later run records the rest.
    """
    rows, errors = parse_rows(read_table(path.read_bytes(), columns(ScenarioRow)), ScenarioRow)
    if errors:
        raise ImportErrors(errors)
    rows.sort(key=lambda item: (item[1].at, item[0]))  # facts are checked against earlier ones
    recorded: dict[str, int] = {}
    skipped = later = 0
    begin_immediate(session)
    try:
        for line, row in rows:
            if row.at > now:
                later += 1
                continue
            try:
                person_id = find_person(session, row.person).id if row.person else None
                if _recorded(session, row, person_id):
                    skipped += 1
                    continue
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
            except RecordError as exc:
                errors.append(RowError(row=line, column="", message=f"{row.kind}: {exc.message}"))
                continue
            recorded[row.kind] = recorded.get(row.kind, 0) + 1
        if errors:
            raise ImportErrors(sorted(errors, key=lambda e: e.row))
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return ScenarioReport(recorded=recorded, skipped=skipped, later=later)


def _recorded(session: Session, row: ScenarioRow, person_id: int | None) -> bool:
    return people.event_exists(
        session, kind=row.kind, program=row.program, person_id=person_id, at=row.at
    )
