"""Keep what the last plan left out: ``planning_skips`` (a program, or a person under one).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

One row per program whose rules raised, or per person whose rows made them raise, as of the
last plan of that program; ``tickler status`` shows them. Nothing to carry over: the next plan
fills the table.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "planning_skips",
        sa.Column("program", sa.String(length=64), nullable=False),
        sa.Column("person", sa.String(length=200), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("program", "person", name=op.f("pk_planning_skips")),
    )


def downgrade() -> None:
    op.drop_table("planning_skips")
