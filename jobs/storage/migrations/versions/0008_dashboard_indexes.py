"""Indexes for the dashboard's program page.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

The program page shows a program's people a page at a time, in name, id, status or due-date
order, and starts each page after the last row of the one before (keyset). Without these,
every page sorted the program's whole join (100,000 rows: half a second on SQLite); with
them a page reads its 50 rows in index order.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_people_name"), "people", ["name"], unique=False)
    op.create_index(op.f("ix_people_external_id"), "people", ["external_id"], unique=False)
    op.create_index(
        op.f("ix_obligations_program_state"), "obligations", ["program", "state"], unique=False
    )
    op.create_index(
        op.f("ix_obligations_program_due_at"), "obligations", ["program", "due_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_obligations_program_due_at"), table_name="obligations")
    op.drop_index(op.f("ix_obligations_program_state"), table_name="obligations")
    op.drop_index(op.f("ix_people_external_id"), table_name="people")
    op.drop_index(op.f("ix_people_name"), table_name="people")
