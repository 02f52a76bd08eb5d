"""Keep each program event's content with its revision: ``event_versions.event`` (JSON).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

A meeting removed from a program is cancelled by email as it was (its own times, place and
text), which only its last stored copy still knows. Rows from before stay NULL until planning
revises them again; a cancellation without a copy falls back to what the old context held.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("event_versions") as batch:
        batch.add_column(sa.Column("event", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("event_versions") as batch:
        batch.drop_column("event")
