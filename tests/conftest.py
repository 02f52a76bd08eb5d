"""Shared fixtures: a migrated database per test, on SQLite and (when configured) PostgreSQL.

PostgreSQL runs when ``TICKLER_TEST_POSTGRES_URL`` names a server we may create databases on
(``scripts/pg-start`` starts one and prints its URL). The schema is migrated once per session
into a template database and each test gets ``CREATE DATABASE … TEMPLATE …``: a fresh, fully
migrated database in milliseconds, dropped afterwards. SQLite gets a copy of a file migrated
once per session.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from jobs.storage.db import make_engine, session_factory, upgrade

POSTGRES_ENV = "TICKLER_TEST_POSTGRES_URL"

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


class PostgresServer:
    """Creates and drops test databases on the server at ``admin_url``."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        # AUTOCOMMIT: CREATE / DROP DATABASE cannot run inside a transaction.
        self.engine = make_engine(admin_url).execution_options(isolation_level="AUTOCOMMIT")
        self.created: set[str] = set()

    def url(self, database: str) -> str:
        return make_url(self.admin_url).set(database=database).render_as_string(False)

    def create(self, prefix: str, template: str | None = None) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        sql = f'CREATE DATABASE "{name}"'
        if template is not None:
            sql += f' TEMPLATE "{template}"'
        with self.engine.connect() as connection:
            connection.exec_driver_sql(sql)
        self.created.add(name)
        return name

    def drop(self, name: str) -> None:
        with self.engine.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.discard(name)

    def close(self) -> None:
        for name in list(self.created):
            self.drop(name)
        self.engine.dispose()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    admin_url = os.environ.get(POSTGRES_ENV)
    if not admin_url:
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV} (bash .ci/run sets it)")
    server = PostgresServer(admin_url)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgres_template(postgres_server: PostgresServer) -> str:
    """Return the name of a database migrated to head, to clone per test."""
    name = postgres_server.create("tickler_template")
    # upgrade() disposes its engine: a template must have no open connection when cloned.
    upgrade(postgres_server.url(name))
    return name


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return an SQLite file migrated to head, to copy per test."""
    path = tmp_path_factory.mktemp("sqlite-template") / "tickler.db"
    upgrade(f"sqlite:///{path}")
    # The engine is disposed: the WAL was checkpointed into the main file and removed.
    assert not path.with_name(path.name + "-wal").exists()
    return path


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def empty_db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Return the URL of an empty database (no tables, never migrated)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = server.create("tickler_test")
    try:
        yield server.url(name)
    finally:
        server.drop(name)


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Return the URL of a database of its own, migrated to head."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "tickler.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = server.create("tickler_test", template=request.getfixturevalue("postgres_template"))
    try:
        yield server.url(name)
    finally:
        server.drop(name)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    try:
        yield engine
        # Every session and connection a test opened must have been given back.
        assert engine.pool.checkedout() == 0, "a test leaked a database connection"  # type: ignore[attr-defined]
    finally:
        engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with session_factory(engine)() as session:
        yield session
