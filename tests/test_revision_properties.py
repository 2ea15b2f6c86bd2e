"""Property tests: random sequences of send / edit / regenerate / switch / branch keep
the data-model invariants, and nothing is ever deleted or rewritten."""

from __future__ import annotations

import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.conversations.errors import ConversationBusy
from core.db.models import ChatMessage
from core.services import Services
from tests.support.chat import all_rows, check_invariants, finish, new_user

OPS = st.lists(
    st.tuples(
        st.sampled_from(["send", "send", "edit", "regenerate", "switch", "branch", "reply"]),
        st.integers(min_value=0, max_value=50),
        st.integers(min_value=1, max_value=4),
    ),
    min_size=1,
    max_size=12,
)


async def _apply(
    services: Services,
    user_id: int,
    conversation_id: uuid.UUID | None,
    op: tuple[str, int, int],
    rows: list[ChatMessage],
    step: int,
) -> uuid.UUID | None:
    kind, pick, revision = op
    users = [r for r in rows if r.role == "user"]
    answers = [r for r in rows if r.role == "assistant"]
    if kind == "send" or not rows:
        gen = await services.chat.send(user_id, f"message {step}", conversation_id=conversation_id)
        await finish(gen)
        return gen.turn.conversation.id
    if kind == "edit":
        target = users[pick % len(users)]
        await finish(await services.chat.edit(user_id, target.id, f"edit {step}"))
    elif kind == "regenerate":
        target = answers[pick % len(answers)]
        await finish(await services.chat.regenerate(user_id, target.id))
    elif kind == "switch":
        target = rows[pick % len(rows)]
        group = [r for r in rows if r.original_message_id == target.original_message_id]
        await services.conversations.switch_revision(
            user_id, target.id, 1 + (revision - 1) % len(group)
        )
    elif kind == "branch":
        await services.conversations.branch_from(user_id, answers[pick % len(answers)].id)
    elif kind == "reply":
        target = answers[pick % len(answers)]
        await finish(await services.chat.send(user_id, f"reply {step}", reply_to=target.id))
    return conversation_id


def _predict_switch(
    rows: list[ChatMessage], shown_at: dict[uuid.UUID, int], op: tuple[str, int, int]
) -> list[uuid.UUID] | None:
    """The active path a switch must produce: the target revision, its ancestors,
    and below it the child shown most recently at each step."""
    kind, pick, revision = op
    if kind != "switch" or not rows:
        return None
    target = rows[pick % len(rows)]
    group = sorted(
        (r for r in rows if r.original_message_id == target.original_message_id),
        key=lambda r: r.revision_number,
    )
    chosen = group[(revision - 1) % len(group)]
    by_id = {r.id: r for r in rows}
    path = [chosen.id]
    parent = chosen.parent_message_id
    while parent is not None:
        path.insert(0, parent)
        parent = by_id[parent].parent_message_id
    node = chosen.id
    while True:
        kids = [r for r in rows if r.parent_message_id == node]
        if not kids:
            return path
        node = max(kids, key=lambda r: shown_at.get(r.id, -1)).id
        path.append(node)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=OPS)
async def test_random_operations_keep_the_invariants(
    services: Services, ops: list[tuple[str, int, int]]
) -> None:
    user_id = await new_user(services)  # each example builds its own state
    conversation_id: uuid.UUID | None = None
    seen: dict[uuid.UUID, tuple[str, int, int, str]] = {}
    rows: list[ChatMessage] = []
    # Our own record of when each row was last on the active path (by step), to
    # predict independently which branch a switch must bring back.
    shown_at: dict[uuid.UUID, int] = {}
    for step, op in enumerate(ops):
        expected = _predict_switch(rows, shown_at, op)
        try:
            conversation_id = await _apply(services, user_id, conversation_id, op, rows, step)
        except ConversationBusy:  # pragma: no cover - every generation is awaited
            raise
        assert conversation_id is not None
        rows = await all_rows(services.db, conversation_id)
        active = check_invariants(rows)
        if expected is not None:
            assert [r.id for r in active] == expected
        for row in active:
            shown_at[row.id] = step
        # The active path is exactly what one query loads.
        loaded = await services.conversations.active_path(conversation_id)
        assert [r.id for r in loaded] == [r.id for r in active]
        # Nothing is deleted or rewritten by an edit, a regeneration or a switch.
        current = {r.id: (r.content, r.sequence_number, r.revision_number, r.role) for r in rows}
        for row_id, before in seen.items():
            assert current[row_id] == before
        seen = current
        # A conversation of pairs: every user row has an answer on the active path.
        assert len(active) % 2 == 0
