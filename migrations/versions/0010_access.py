"""access: the allowlist, invites, who used them, and the once-a-day private note

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-03 05:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db.types

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = core.db.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "access_entries",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("entry", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("added_by_user_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["added_by_user_id"],
            ["users.id"],
            name=op.f("fk_access_entries_added_by_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_entries")),
        sa.UniqueConstraint("entry", name=op.f("uq_access_entries_entry")),
    )
    op.create_table(
        "access_invites",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("uses_total", sa.Integer(), nullable=False),
        sa.Column("uses_left", sa.Integer(), nullable=False),
        sa.Column("expires_at", WHEN, nullable=False),
        sa.Column("created_by_user_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_user_id"],
            ["users.id"],
            name=op.f("fk_access_invites_created_by_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_invites")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_access_invites_code_hash")),
    )
    op.create_table(
        "access_redemptions",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("invite_id", sa.BigInteger(), nullable=True),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("redeemed_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["invite_id"],
            ["access_invites.id"],
            name=op.f("fk_access_redemptions_invite_id_access_invites"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_access_redemptions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_redemptions")),
    )
    with op.batch_alter_table("access_redemptions", schema=None) as batch_op:
        batch_op.create_index("ix_access_redemptions_invite_id", ["invite_id"], unique=False)
        batch_op.create_index("ix_access_redemptions_user_id", ["user_id"], unique=False)
    op.create_table(
        "access_notes",
        sa.Column("account", sa.String(length=40), nullable=False),
        sa.Column("told_on", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("account", name=op.f("pk_access_notes")),
    )


def downgrade() -> None:
    op.drop_table("access_notes")
    with op.batch_alter_table("access_redemptions", schema=None) as batch_op:
        batch_op.drop_index("ix_access_redemptions_user_id")
        batch_op.drop_index("ix_access_redemptions_invite_id")
    op.drop_table("access_redemptions")
    op.drop_table("access_invites")
    op.drop_table("access_entries")
