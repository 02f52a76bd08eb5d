"""A contact's locale: the language their emails are written in.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

``people.locale`` (``fr``, ``fr-CA``; NULL: the default templates) picks the template folder of
that locale before the shipped English ones; the people imports may set it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("people") as batch:
        batch.add_column(sa.Column("locale", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("people") as batch:
        batch.drop_column("locale")
