"""Storage: the tables, the engine, sessions and schema migrations.

Synchronous SQLAlchemy 2: the async daemon calls it through ``asyncio.to_thread``. Every instant
is stored as UTC (``UtcDateTime``) and read back as an aware UTC datetime, on SQLite and on
PostgreSQL alike. Nothing here reads the clock: ``created_at`` and friends are set by the caller
from the ``now`` it was handed.

SQLite is the default (one replica); PostgreSQL is for production and for several replicas.
"""

from __future__ import annotations

import enum
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    Engine,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    false,
)
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from config.facts import FactKind

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

#: Connection execution option read by the SQLite ``begin`` hook: "DEFERRED" (default),
#: "IMMEDIATE" or "EXCLUSIVE". See ``begin_immediate``.
SQLITE_BEGIN_OPTION = "tickler_sqlite_begin"


class UtcDateTime(TypeDecorator[datetime]):
    """Store an aware datetime as UTC; return it as an aware UTC datetime.

    A naive datetime is refused on write (``ValueError``): it has no defined instant, and
    guessing "local" or "UTC" is how reminders go out an hour off after a DST change. SQLite
    has no time-zone type, so the value is written there as naive UTC text (fixed format, so
    that ``<`` / ``>`` comparisons in SQL stay correct) and given back its ``UTC`` on read;
    PostgreSQL stores ``timestamptz`` and returns it in the session time zone, converted here.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected an aware datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: store aware UTC")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class PersonKind(enum.StrEnum):
    SUPPLIER = "supplier"
    EMPLOYEE = "employee"
    THIRD_PARTY = "third_party"


class FcpaRole(enum.StrEnum):
    DIRECTOR = "director"
    OFFICER = "officer"
    EMPLOYEE = "employee"
    AGENT = "agent"
    DISTRIBUTOR = "distributor"
    CONSULTANT = "consultant"
    JV_PARTNER = "jv_partner"


class SupplierTier(enum.StrEnum):
    CONTRACT_MANUFACTURER = "contract_manufacturer"
    DIRECT = "direct"
    INDIRECT = "indirect"


class ObligationKind(enum.StrEnum):
    """What an obligation waits for: named by the kind of fact that discharges it."""

    CMRT_RESPONSE = FactKind.CMRT_RESPONSE.value
    ELECTION = FactKind.ELECTION.value
    FCPA_ACK = FactKind.FCPA_ACK.value


class EventSource(enum.StrEnum):
    CLI = "cli"
    API = "api"
    DAEMON = "daemon"
    IMPORT = "import"
    LINK = "link"  # the recipient, from an email's signed action link
    DASHBOARD = "dashboard"  # a compliance officer, signed in to the web dashboard


class OutboxState(enum.StrEnum):
    """Life of an outgoing message; see ``jobs.storage.outbox`` for the transitions."""

    PENDING = "pending"
    CLAIMED = "claimed"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class Role(enum.StrEnum):
    """What a dashboard account may do; each role may do everything the ones before it may."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    # VARCHAR + CHECK rather than a native PostgreSQL ENUM: adding a value is then an ordinary
    # batch migration on both backends, and the stored text is the enum's value, not its name.
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        validate_strings=True,
        values_callable=lambda e: [m.value for m in e],
    )


# Deterministic constraint names: SQLite can only change a constraint by rebuilding the table
# (alembic batch mode), which needs to know the names, and downgrades need them everywhere.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 (read once by the declarative machinery)
        datetime: UtcDateTime(),
        dict[str, Any]: JSON(),
        Decimal: Numeric(12, 4),
    }


EMAIL = String(320)
PROGRAM = String(64)


class Person(Base):
    """A supplier, an employee or a third party; the per-kind columns are null for other kinds."""

    __tablename__ = "people"
    __table_args__ = (
        UniqueConstraint("kind", "external_id"),
        CheckConstraint("length(country) = 2", name="country_iso2"),
        # Planning finds the people an import wrote by its instant.
        Index(None, "updated_at"),
        # The dashboard's program page walks people in name or id order, a page at a time.
        Index(None, "name"),
        Index(None, "external_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[PersonKind] = mapped_column(_enum(PersonKind, "person_kind"))
    external_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(256))
    email: Mapped[str] = mapped_column(EMAIL)
    country: Mapped[str | None] = mapped_column(String(2))
    hire_date: Mapped[date | None] = mapped_column(Date)
    termination_date: Mapped[date | None] = mapped_column(Date)
    is_director: Mapped[bool | None] = mapped_column(Boolean)
    is_executive_officer: Mapped[bool | None] = mapped_column(Boolean)
    role: Mapped[FcpaRole | None] = mapped_column(_enum(FcpaRole, "fcpa_role"))
    manager_email: Mapped[str | None] = mapped_column(EMAIL)
    tier: Mapped[SupplierTier | None] = mapped_column(_enum(SupplierTier, "supplier_tier"))
    # The internal owner of a supplier relationship: where its escalations go.
    owner_email: Mapped[str | None] = mapped_column(EMAIL)
    start_date: Mapped[date | None] = mapped_column(Date)
    # The language of the person's emails (``config.locales``); NULL: the default templates.
    locale: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class OptionGrant(Base):
    __tablename__ = "option_grants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128), unique=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    grant_date: Mapped[date] = mapped_column(Date)
    shares: Mapped[int] = mapped_column(Integer)
    unexercised: Mapped[int] = mapped_column(Integer)
    price: Mapped[Decimal]


class Obligation(Base):
    """What one person owes one occurrence of a program (a CMRT, an election, an ack).

    ``details`` is JSON: reassign it (``o.details = {**o.details, ...}``) rather than mutate it
    in place, which the ORM does not see.
    """

    __tablename__ = "obligations"
    __table_args__ = (
        UniqueConstraint("program", "occurrence", "person_id", "kind"),
        # The dashboard's program page: by status, and in due-date order, a page at a time.
        Index(None, "program", "state"),
        Index(None, "program", "due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    program: Mapped[str] = mapped_column(PROGRAM)
    occurrence: Mapped[str] = mapped_column(String(64))
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    kind: Mapped[ObligationKind] = mapped_column(_enum(ObligationKind, "obligation_kind"))
    state: Mapped[str] = mapped_column(String(32))
    # Indexed: each tick replans the people whose obligations fell due since the last one.
    due_at: Mapped[datetime | None] = mapped_column(index=True)
    updated_at: Mapped[datetime]
    details: Mapped[dict[str, Any]]


class EventLog(Base):
    """Append-only audit trail: who did what, from where, when.

    ``person_id`` is deliberately not a foreign key: the trail must outlive the rows it
    describes. ``at`` is when the fact says it happened, ``received_at`` the server's clock
    when it was recorded: the audit trail tells a backdated fact from a timely one, and
    ``backfill`` marks a fact recorded as of an earlier time on purpose (``jobs.record``).
    """

    __tablename__ = "event_log"
    __table_args__ = (Index(None, "program", "at"), Index(None, "person_id"), Index(None, "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(256))
    source: Mapped[EventSource] = mapped_column(_enum(EventSource, "event_source"))
    kind: Mapped[str] = mapped_column(String(64))
    program: Mapped[str | None] = mapped_column(PROGRAM)
    person_id: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]]
    received_at: Mapped[datetime]
    backfill: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class OutboxMessage(Base):
    """One outgoing email with its delivery state; ``jobs.storage.outbox`` holds all its SQL.

    ``identity`` ("program/occurrence/recipient/step") is what makes a message exactly-once:
    planning the same message twice hits the unique key. ``message_id`` is the RFC 5322
    Message-ID, fixed at planning so that a retry after an ambiguous SMTP failure carries the
    same one and the recipient's server can de-duplicate it.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index(None, "state", "due_at"),
        Index(None, "state", "lease_until"),
        Index(None, "program", "occurrence", "job"),
        Index(None, "person_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identity: Mapped[str] = mapped_column(String(512), unique=True)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    program: Mapped[str] = mapped_column(PROGRAM)
    occurrence: Mapped[str] = mapped_column(String(64))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    recipient: Mapped[str] = mapped_column(EMAIL)
    job: Mapped[str] = mapped_column(String(64))
    step: Mapped[str] = mapped_column(String(64))
    template: Mapped[str] = mapped_column(String(128))
    context: Mapped[dict[str, Any]]
    due_at: Mapped[datetime]
    # After this instant the message has lost its purpose (a reminder for a passed cutoff).
    expires_at: Mapped[datetime | None]
    state: Mapped[OutboxState] = mapped_column(_enum(OutboxState, "outbox_state"))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime]
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None]
    last_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # A resend (``tickler messages resend``) names the message it repeats; planned ones, NULL.
    resend_of: Mapped[int | None] = mapped_column(ForeignKey("outbox.id"))


class UploadedFile(Base):
    """A file a recipient uploaded and Tickler accepted (a CMRT), kept once per content.

    The recorded fact names it by ``sha256``; its size is bounded by the upload limit
    (``jobs.cmrt_file.MAX_UPLOAD``). ``received_at`` is when the content first came.
    """

    __tablename__ = "uploaded_files"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime]


class SentMessage(Base):
    """Evidence: the exact bytes of one sent message, as the server accepted them.

    Written by the delivery job in the same transaction as the ``sent`` mark
    (``jobs.storage.evidence``). ``body`` is the message zlib-compressed (``size`` is its
    length uncompressed); ``reply`` is what the server answered to DATA (for the Maildir, the
    file's key), ``code`` its reply code.
    """

    __tablename__ = "sent_messages"

    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox.id"), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(255), index=True)
    sent_at: Mapped[datetime]
    code: Mapped[int | None] = mapped_column(Integer)
    reply: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)
    body: Mapped[bytes] = mapped_column(LargeBinary)


class EventVersion(Base):
    """iCal SEQUENCE bookkeeping: bump ``sequence`` when an event's content fingerprint changes."""

    __tablename__ = "event_versions"

    program: Mapped[str] = mapped_column(PROGRAM, primary_key=True)
    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    sequence: Mapped[int] = mapped_column(Integer)
    last_modified: Mapped[datetime]
    # The event as last revised (``calendars.events.event_to_dict``), for a program's events:
    # a removed meeting is cancelled by email as it was. NULL for a person's own events.
    event: Mapped[dict[str, Any] | None]


class FeedToken(Base):
    """A secret feed URL token; only its sha256 is stored, so a database leak leaks no feed."""

    __tablename__ = "feed_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    feed: Mapped[str] = mapped_column(String(128), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class PlanningSkip(Base):
    """A program, or one person under a program, that the last plan left out: its rules raised.

    Planning rewrites a program's rows each time it plans it; ``tickler status`` reads them.
    ``person`` is the person's key (``employee:E1001``), or "" when the whole program was left
    out; ``since`` is when the skip was first seen, kept while it lasts.
    """

    __tablename__ = "planning_skips"

    program: Mapped[str] = mapped_column(PROGRAM, primary_key=True)
    person: Mapped[str] = mapped_column(String(200), primary_key=True)
    error: Mapped[str] = mapped_column(Text)
    since: Mapped[datetime]


class User(Base):
    """A dashboard account. ``password_hash`` is an argon2id hash; the password is never kept."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[Role] = mapped_column(_enum(Role, "user_role"))
    created_at: Mapped[datetime]
    password_changed_at: Mapped[datetime]
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class WebSession(Base):
    """A signed-in browser. ``id`` is the sha256 of the cookie's secret: a leaked table opens
    no session. ``csrf`` is the value every form of that session must carry back."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    csrf: Mapped[str] = mapped_column(String(64))


# ---------------------------------------------------------------------------------------------
# Engine and sessions


def normalize_url(url: str | URL) -> URL:
    """Return ``url`` with ``postgresql://`` (and ``postgres://``) mapped to psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def make_engine(url: str | URL, *, sqlite_busy_timeout: float = 30.0) -> Engine:
    """Create the engine for ``url``: an SQLite file or a PostgreSQL server.

    SQLite gets WAL (readers never block the writer), foreign keys (off by default there) and
    a busy timeout (a writer waits for the lock instead of failing at once). pysqlite's own
    transaction handling is switched off and SQLAlchemy emits BEGIN itself, the recipe of the
    SQLAlchemy SQLite docs ("Enabling Non-Legacy SQLite Transactional Modes"; Python 3.11 has no
    ``sqlite3.Connection.autocommit``): otherwise pysqlite starts no transaction before a
    SELECT, reads are not repeatable, and BEGIN IMMEDIATE cannot be chosen per transaction.

    PostgreSQL goes through psycopg 3 with server-side prepared statements off
    (``prepare_threshold=None``): after a few executions a prepared statement may switch to a
    generic plan, and with a long ``IN (…)`` list on a freshly filled table (statistics not yet
    gathered) that plan scans the whole table once per statement; re-planning 20,000 outbox
    rows took 7.8 s instead of 0.4 s. It also keeps the engine usable behind PgBouncer.
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, sqlite_busy_timeout)
    return create_engine(parsed, pool_pre_ping=True, connect_args={"prepare_threshold": None})


def _wal(cursor: Any, busy_timeout: float) -> None:
    """Put the database in WAL mode, waiting up to ``busy_timeout`` for the lock it needs.

    Why a loop: switching the journal mode answers "database is locked" at once, without
    the busy handler, when another connection (a replica starting at the same moment) holds
    a lock. WAL is a property of the file, so once one connection switched it, the others
    find it already set.
    """
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _sqlite_engine(url: URL, busy_timeout: float) -> Engine:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's begin hook emits BEGIN
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            _wal(cursor, busy_timeout)
            cursor.execute("PRAGMA foreign_keys=ON")
            # synchronous stays FULL: a "sent" mark lost to a power cut means a second email.
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            return  # e.g. VACUUM: no transaction wanted
        mode = connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED")
        if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
            raise ValueError(f"{SQLITE_BEGIN_OPTION}={mode!r}")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def ping(engine: Engine) -> None:
    """Run a trivial query: raises if the database cannot be reached."""
    with engine.connect() as connection:
        connection.exec_driver_sql("SELECT 1")


def sqlite_path(url: str | URL) -> str | None:
    """Return the database file of an SQLite ``url`` (":memory:" for memory), else ``None``."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    return parsed.database or ":memory:"


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return the session factory for ``engine``.

    ``expire_on_commit=False``: objects are handed from the worker thread back to the event
    loop after the commit, where a lazy refresh would be a blocking query (or an error).
    """
    return sessionmaker(engine, expire_on_commit=False)


def dialect_name(session: Session) -> str:
    """Return "sqlite" or "postgresql" for the database ``session`` talks to."""
    return session.get_bind().dialect.name


def begin_immediate(session: Session) -> Connection:
    """Start ``session``'s transaction with SQLite's write lock taken (BEGIN IMMEDIATE).

    Why: a deferred SQLite transaction that reads and then writes fails with "database is
    locked" *without waiting* if another writer committed in between (in WAL mode its read
    snapshot is stale); taking the write lock first makes it wait (busy_timeout) and then see
    the latest data. This must be the first use of the session's transaction: an already begun
    one cannot be upgraded, and ``RuntimeError`` says so. On PostgreSQL it only returns the
    connection (row locks there are taken by the statements themselves).
    """
    if dialect_name(session) != "sqlite":
        return session.connection()
    if _has_connection(session):
        raise RuntimeError(
            "begin_immediate() must start the session's transaction on SQLite; "
            "commit or roll back first"
        )
    connection = session.connection(execution_options={SQLITE_BEGIN_OPTION: "IMMEDIATE"})
    return connection


@contextmanager
def begin_write(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Open a session for a transaction that will write; commit it at the end, or roll back.

    ``factory.begin()`` plus, on SQLite, the write lock taken up front (``begin_immediate``):
    use it for every transaction that reads and then writes (planning, recording events). With
    a plain deferred transaction SQLite raises "database is locked" at the first write, without
    waiting, whenever another connection committed since this one's first read.
    """
    with factory.begin() as session:
        begin_immediate(session)
        yield session


# pg_advisory_xact_lock key held while planning ("plan" in ASCII).
PLANNING_LOCK = 0x706C616E


def lock_planning(session: Session) -> None:
    """On PostgreSQL, wait until no other replica is planning; hold the lock until commit.

    Why: planning reads, then inserts and updates (event versions, the outbox, obligations).
    Replicas planning the same facts at once raced on the same new rows (a unique violation
    on ``event_versions`` made every replica but one fail its first tick). SQLite needs no
    such lock: ``begin_write`` already takes its write lock first, and it runs one replica.
    """
    if dialect_name(session) == "postgresql":
        session.connection().exec_driver_sql(f"SELECT pg_advisory_xact_lock({PLANNING_LOCK})")


def _has_connection(session: Session) -> bool:
    # A transaction begun with ``session.begin()`` holds no connection until its first
    # statement: that case is fine. ``SessionTransaction.connections`` is new in SQLAlchemy 2.1.7.
    transaction = session.get_transaction()
    return transaction is not None and bool(transaction.connections)


# ---------------------------------------------------------------------------------------------
# Migrations


def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


# pg_advisory_xact_lock key held while migrating ("tick" in ASCII).
MIGRATION_LOCK = 0x7469636B


@contextmanager
def _migration_connection(url: str | URL) -> Iterator[Connection]:
    engine = make_engine(url)
    try:
        # One transaction for the whole run: on PostgreSQL and (with the begin hook) on SQLite
        # DDL is transactional, so a failed migration leaves the schema as it was. Migrations
        # are serialized: replicas starting together on an empty database would otherwise all
        # run the first migration and all but one fail ("duplicate key value violates unique
        # constraint pg_type_typname_nsp_index"). The next one in finds the schema at head.
        with engine.connect() as plain:
            connection = plain.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
                yield connection
    finally:
        engine.dispose()


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision``."""
    from alembic import command

    with _migration_connection(url) as connection:
        command.upgrade(_alembic_config(connection), revision)


def downgrade(url: str | URL, revision: str) -> None:
    """Migrate the database at ``url`` down to ``revision`` ("base" empties it)."""
    from alembic import command

    with _migration_connection(url) as connection:
        command.downgrade(_alembic_config(connection), revision)


def current_revision(url: str | URL) -> str | None:
    """Return the revision the database at ``url`` is at (``None`` when never migrated)."""
    from alembic.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
