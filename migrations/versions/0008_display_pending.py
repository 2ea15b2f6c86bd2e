"""answers saved but not shown yet: shown by another worker if theirs dies

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 03:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("display_pending")


def upgrade() -> None:
    with op.batch_alter_table("chat_messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("display_pending", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.create_index(
            "ix_chat_messages_display_pending",
            ["worker_id"],
            unique=False,
            sqlite_where=PENDING,
            postgresql_where=PENDING,
        )


def downgrade() -> None:
    with op.batch_alter_table("chat_messages", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_chat_messages_display_pending", sqlite_where=PENDING, postgresql_where=PENDING
        )
        batch_op.drop_column("display_pending")
