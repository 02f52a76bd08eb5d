"""Record facts and actions taken on the web dashboard as such.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02

``event_log.source`` gains ``dashboard``: an answer recorded by hand, or a retry, cancel,
resend or address correction made from the compliance team's dashboard, says so in the audit
trail, rather than passing for a call of the HTTP API. Rows written before this revision
keep ``api``: nothing stored says which of them came through the dashboard.

The downgrade writes ``api`` back into the rows that say ``dashboard`` (what they would have
said before this revision), so that the older CHECK constraint accepts every row.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = ("cli", "api", "daemon", "import", "link")
_AFTER = (*_BEFORE, "dashboard")


def _source(values: Sequence[str]) -> sa.Enum:
    return sa.Enum(
        *values, name="event_source", native_enum=False, create_constraint=True, length=32
    )


def upgrade() -> None:
    with op.batch_alter_table("event_log") as batch:
        batch.alter_column(
            "source", existing_type=_source(_BEFORE), type_=_source(_AFTER), existing_nullable=False
        )


def downgrade() -> None:
    log = sa.table("event_log", sa.column("source", sa.String(32)))
    op.execute(log.update().where(log.c.source == "dashboard").values(source="api"))
    with op.batch_alter_table("event_log") as batch:
        batch.alter_column(
            "source", existing_type=_source(_AFTER), type_=_source(_BEFORE), existing_nullable=False
        )
