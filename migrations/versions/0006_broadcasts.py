"""broadcasts and their recipients

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 15:18:08.281909
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "broadcasts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("photo", sa.String(length=1024), nullable=True),
        sa.Column("photo_platform", sa.String(length=16), nullable=True),
        sa.Column("audience", sa.String(length=16), server_default="all", nullable=False),
        sa.Column("audience_tier", sa.String(length=16), nullable=True),
        sa.Column("active_days", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="draft", nullable=False),
        sa.Column("total", sa.Integer(), server_default="0", nullable=False),
        sa.Column("sent", sa.Integer(), server_default="0", nullable=False),
        sa.Column("blocked", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("unconfirmed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("floods", sa.Integer(), server_default="0", nullable=False),
        sa.Column("runner_id", sa.String(length=64), nullable=True),
        sa.Column("lease_until", core.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("report_to", sa.JSON(), nullable=True),
        sa.Column("started_at", core.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", core.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", core.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", core.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_broadcasts_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_broadcasts")),
    )
    with op.batch_alter_table("broadcasts", schema=None) as batch_op:
        batch_op.create_index("ix_broadcasts_status", ["status"], unique=False)

    op.create_table(
        "broadcast_recipients",
        sa.Column("broadcast_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("platform_user_id", sa.String(length=64), nullable=False),
        sa.Column("chat_id", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_at", core.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("done_at", core.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("created_at", core.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["broadcast_id"],
            ["broadcasts.id"],
            name=op.f("fk_broadcast_recipients_broadcast_id_broadcasts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_broadcast_recipients_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("broadcast_id", "user_id", name=op.f("pk_broadcast_recipients")),
    )
    with op.batch_alter_table("broadcast_recipients", schema=None) as batch_op:
        batch_op.create_index(
            "ix_broadcast_recipients_queue",
            ["broadcast_id", "state", "platform", "user_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_broadcast_recipients_user_id"), ["user_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("broadcast_recipients", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_broadcast_recipients_user_id"))
        batch_op.drop_index("ix_broadcast_recipients_queue")

    op.drop_table("broadcast_recipients")
    with op.batch_alter_table("broadcasts", schema=None) as batch_op:
        batch_op.drop_index("ix_broadcasts_status")

    op.drop_table("broadcasts")
