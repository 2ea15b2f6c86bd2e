"""a conversation's message count and last message time follow its inserted rows

The database keeps `conversations.message_count`, `last_message_at` and
`updated_at` as rows are added to `chat_messages`, so that a turn does not spend
a statement of its own updating them. Every insert counts, as the application's
own bookkeeping did (revisions included: the count bounds a conversation's size).

SQLite's batch mode rebuilds a table by copying it, which drops its triggers: a
later migration that alters `chat_messages` that way must create this one again.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 13:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The same bookkeeping on both databases, once per inserted row.
_COUNT = """
    UPDATE conversations
    SET message_count = message_count + 1,
        last_message_at = NEW.created_at,
        updated_at = NEW.created_at
    WHERE id = NEW.conversation_id;
"""

_SQLITE = f"""
CREATE TRIGGER chat_messages_counted AFTER INSERT ON chat_messages
FOR EACH ROW BEGIN{_COUNT}END
"""

_POSTGRESQL_FUNCTION = f"""
CREATE FUNCTION chat_messages_counted() RETURNS trigger AS $$
BEGIN{_COUNT}    RETURN NULL;
END
$$ LANGUAGE plpgsql
"""

_POSTGRESQL_TRIGGER = """
CREATE TRIGGER chat_messages_counted AFTER INSERT ON chat_messages
FOR EACH ROW EXECUTE FUNCTION chat_messages_counted()
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_POSTGRESQL_FUNCTION)
        op.execute(_POSTGRESQL_TRIGGER)
    else:
        op.execute(_SQLITE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS chat_messages_counted ON chat_messages")
        op.execute("DROP FUNCTION IF EXISTS chat_messages_counted()")
    else:
        op.execute("DROP TRIGGER IF EXISTS chat_messages_counted")
