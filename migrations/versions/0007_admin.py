"""admin: models turned off for everyone, indexes for the stats screen

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 15:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db.types

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ASSISTANT = sa.text("role = 'assistant'")
CURRENT = sa.text("is_current")


def upgrade() -> None:
    op.create_table(
        "disabled_models",
        sa.Column("model_id", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("disabled_at", core.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model_id", name=op.f("pk_disabled_models")),
    )
    # From now on a person's last_seen_at moves with any of their accounts; until
    # now only the accounts' did.
    op.execute(
        "UPDATE users SET last_seen_at = (SELECT max(i.last_seen_at) FROM identities i"
        " WHERE i.user_id = users.id) WHERE EXISTS (SELECT 1 FROM identities i"
        " WHERE i.user_id = users.id AND i.last_seen_at IS NOT NULL"
        " AND (users.last_seen_at IS NULL OR i.last_seen_at > users.last_seen_at))"
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.create_index("ix_users_last_seen_at", ["last_seen_at"], unique=False)
    with op.batch_alter_table("identities", schema=None) as batch_op:
        batch_op.create_index(
            "ix_identities_last_seen_at", ["last_seen_at", "user_id"], unique=False
        )
        batch_op.create_index("ix_identities_username", ["username"], unique=False)
    with op.batch_alter_table("chat_messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_chat_messages_answer_stats",
            [
                "created_at",
                "status",
                "model_id",
                "error_code",
                "prompt_tokens",
                "completion_tokens",
                "role",
            ],
            unique=False,
            sqlite_where=ASSISTANT,
            postgresql_where=ASSISTANT,
        )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.create_index("ix_payments_created_at", ["created_at"], unique=False)
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_subscriptions_current_tier",
            ["tier", "status"],
            unique=False,
            sqlite_where=CURRENT,
            postgresql_where=CURRENT,
        )


def downgrade() -> None:
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_subscriptions_current_tier", sqlite_where=CURRENT, postgresql_where=CURRENT
        )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index("ix_payments_created_at")
    with op.batch_alter_table("chat_messages", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_chat_messages_answer_stats", sqlite_where=ASSISTANT, postgresql_where=ASSISTANT
        )
    with op.batch_alter_table("identities", schema=None) as batch_op:
        batch_op.drop_index("ix_identities_username")
        batch_op.drop_index("ix_identities_last_seen_at")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index("ix_users_last_seen_at")
    op.drop_table("disabled_models")
