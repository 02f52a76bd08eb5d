"""Keep each accepted CMRT upload, and record answers given through an email's link as such.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

``uploaded_files`` holds the bytes of each CMRT accepted through an action link, once per
content (keyed by its sha256, which the recorded fact names), with its size and when it first
came. ``event_log.source`` gains ``link``: a fact recorded from an action page says so, rather
than ``api``. The downgrade writes ``api`` back into those rows (what they said before).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = ("cli", "api", "daemon", "import")
_AFTER = (*_BEFORE, "link")


def _source(values: Sequence[str]) -> sa.Enum:
    return sa.Enum(
        *values, name="event_source", native_enum=False, create_constraint=True, length=32
    )


def upgrade() -> None:
    op.create_table(
        "uploaded_files",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_uploaded_files")),
    )
    with op.batch_alter_table("event_log") as batch:
        batch.alter_column(
            "source", existing_type=_source(_BEFORE), type_=_source(_AFTER), existing_nullable=False
        )


def downgrade() -> None:
    # An answer from a link said ``api`` before this revision: say so again, or the older
    # CHECK would refuse the rows and the downgrade fail.
    log = sa.table("event_log", sa.column("source", sa.String(32)))
    op.execute(log.update().where(log.c.source == "link").values(source="api"))
    with op.batch_alter_table("event_log") as batch:
        batch.alter_column(
            "source", existing_type=_source(_AFTER), type_=_source(_BEFORE), existing_nullable=False
        )
    op.drop_table("uploaded_files")
