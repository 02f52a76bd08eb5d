"""Alembic environment: run by ``jobs.storage.db.upgrade`` / ``downgrade``, no alembic.ini needed.

The caller hands over an open connection in ``config.attributes["connection"]`` (inside its
transaction); the ``alembic`` command line works too with ``-x url=...`` or
``sqlalchemy.url`` set.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from jobs.storage.db import Base, make_engine, normalize_url

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: later migrations rebuild tables ("batch" mode).
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise RuntimeError("no database: pass a connection, -x url=..., or sqlalchemy.url")
    return url


def run_offline() -> None:
    context.configure(
        url=normalize_url(_url()),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as own:
            _configure(own)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
