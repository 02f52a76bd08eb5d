"""Keep every sent message as evidence, and link a resend to the message it repeats.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

``sent_messages`` holds the exact bytes of each sent message (zlib-compressed), its Message-ID,
the server's reply and when: what an auditor is shown. Messages sent before this revision have
no row (their bytes were never kept). ``outbox.resend_of`` names the message a resend repeats;
``outbox.person_id`` gets an index, since operators list a person's messages.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sent_messages",
        sa.Column("outbox_id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("code", sa.Integer(), nullable=True),
        sa.Column("reply", sa.Text(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["outbox_id"], ["outbox.id"], name=op.f("fk_sent_messages_outbox_id_outbox")
        ),
        sa.PrimaryKeyConstraint("outbox_id", name=op.f("pk_sent_messages")),
    )
    op.create_index(
        op.f("ix_sent_messages_message_id"), "sent_messages", ["message_id"], unique=False
    )
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("resend_of", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            batch.f("fk_outbox_resend_of_outbox"), "outbox", ["resend_of"], ["id"]
        )
        batch.create_index(batch.f("ix_outbox_person_id"), ["person_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index(batch.f("ix_outbox_person_id"))
        batch.drop_constraint(batch.f("fk_outbox_resend_of_outbox"), type_="foreignkey")
        batch.drop_column("resend_of")
    op.drop_index(op.f("ix_sent_messages_message_id"), table_name="sent_messages")
    op.drop_table("sent_messages")
