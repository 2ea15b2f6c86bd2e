"""aiogram's Bot API models are built on first use (bot/lazy_aiogram.py): every one
still builds, and validates and serializes as an eagerly built one does."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.process import clean_env

SCRIPT = r"""
import json, sys
if sys.argv[1] == "lazy":
    import bot  # as every entry point does
import aiogram.methods, aiogram.types, pydantic
from aiogram.types import Message, Update
lazy_at_start = not Message.__pydantic_complete__
update = Update.model_validate({
    "update_id": 7,
    "callback_query": {
        "id": "1", "chat_instance": "x", "data": "a:r:1",
        "from": {"id": 1, "is_bot": False, "first_name": "A"},
        "message": {
            "message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}, "text": "hi",
            "entities": [{"type": "text_link", "offset": 0, "length": 2, "url": "https://a.b"}],
        },
    },
}, context={"bot": None})
sent = aiogram.methods.SendMessage(
    chat_id=1, text="x",
    reply_markup=aiogram.types.InlineKeyboardMarkup(
        inline_keyboard=[[aiogram.types.InlineKeyboardButton(text="a", callback_data="b")]]
    ),
)
built = 0
for module in (aiogram.types, aiogram.methods):
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, pydantic.BaseModel):
            if not value.__pydantic_complete__:
                value.model_rebuild()
            assert value.__pydantic_complete__, value
            built += 1
print(json.dumps({
    "lazy": lazy_at_start,
    "update": update.model_dump(exclude_none=True),
    "sent": sent.model_dump(exclude_none=True),
    "schema": aiogram.types.Message.model_json_schema(),
    "built": built,
}, default=str))
"""


def _run(mode: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode],
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_deferred_models_all_build_and_behave_as_eager_ones() -> None:
    lazy, eager = _run("lazy"), _run("eager")
    assert lazy["lazy"] is True and eager["lazy"] is False
    assert lazy["built"] == eager["built"] and int(str(lazy["built"])) > 400
    for key in ("update", "sent", "schema"):
        assert lazy[key] == eager[key], key
