"""Keep the server's receipt time of every fact beside the time it claims, and flag backfills.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

``event_log.at`` is the time a fact claims (an API caller's ``at``); ``received_at`` is the
server's clock when it was recorded, which is what the rules with a deadline judge, and
``backfill`` says the fact was recorded as of an earlier time on purpose (a scoped capability).
Rows from before could not be told apart: they take ``received_at = at`` and no flag.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("event_log") as batch:
        batch.add_column(sa.Column("received_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("backfill", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.execute("UPDATE event_log SET received_at = at")
    with op.batch_alter_table("event_log") as batch:
        batch.alter_column("received_at", existing_type=sa.DateTime(timezone=True), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("event_log") as batch:
        batch.drop_column("backfill")
        batch.drop_column("received_at")
