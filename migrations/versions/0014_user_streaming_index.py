"""an index of each person's answers streaming now

Every message a person sends counts their answers streaming now, under the lock on
their row (the bound on concurrent generations). By `user_id` alone that read every
message they ever had; this partial index holds only the streaming ones, so the
count costs the same for a person with ten messages and one with ten thousand.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 05:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain CREATE INDEX on both databases: SQLite's batch mode would rebuild the
    # table and drop migration 0013's trigger.
    op.create_index(
        "ix_chat_messages_user_streaming",
        "chat_messages",
        ["user_id"],
        unique=False,
        sqlite_where=sa.text("status = 'streaming'"),
        postgresql_where=sa.text("status = 'streaming'"),
    )


def downgrade() -> None:
    op.drop_index("ix_chat_messages_user_streaming", table_name="chat_messages")
