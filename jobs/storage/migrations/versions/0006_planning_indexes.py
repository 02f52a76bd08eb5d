"""Indexes for incremental planning's hot queries.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

The daemon plans again what changed: the people an import wrote (``people.updated_at`` equal
to the import's instant), the people with an obligation due since the last tick
(``obligations.due_at``) and the facts dated since then (``event_log.at``). Each is a range or
equality lookup on a column that had no index, so every tick scanned its table.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_people_updated_at"), "people", ["updated_at"], unique=False)
    op.create_index(op.f("ix_obligations_due_at"), "obligations", ["due_at"], unique=False)
    op.create_index(op.f("ix_event_log_at"), "event_log", ["at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_event_log_at"), table_name="event_log")
    op.drop_index(op.f("ix_obligations_due_at"), table_name="obligations")
    op.drop_index(op.f("ix_people_updated_at"), table_name="people")
