"""Commands, menus, media and groups, end to end: what a person sees in Telegram when
they use /start, /model, /history, /settings, /image and the rest."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from core.db.models import User
from core.tiers import ResetFrequency, Tier, window_bounds
from tests.fakes.llm_server import Reply
from tests.fakes.telegram_server import DEFAULT_GROUP_ID, TINY_PNG, CallbackQuery, StoredMessage
from tests.support.chat import all_rows
from tests.telegram.conftest import USER, Harness, until

# Longer than the fake's per-chat interval: each action starts after the bot's last send,
# so replies come at once instead of after a 429's one-second wait (which they survive:
# see `test_a_command_right_after_an_answer_still_gets_its_reply`).
GAP = 0.15
BOT = "oneai_test_bot"


# -- helpers ------------------------------------------------------------------------


async def bot_reply(app: Harness, act: Callable[[], object], chat_id: int = USER) -> StoredMessage:
    """Do `act` (the person writes or sends something); the bot's next new message."""
    await asyncio.sleep(GAP)
    before = {m.message_id for m in app.bot_messages(chat_id)}
    act()
    return await app.tg.wait_for(
        lambda: next((m for m in app.bot_messages(chat_id) if m.message_id not in before), None)
    )


async def say(app: Harness, text: str, user: int = USER) -> StoredMessage:
    """The person sends `text` in their private chat; the bot's reply."""
    return await bot_reply(app, lambda: app.tg.send_text(user, text), chat_id=user)


def _finals(app: Harness, chat_id: int) -> list[StoredMessage]:
    return [
        m
        for m in app.bot_messages(chat_id)
        if any(str(b.get("callback_data", "")).startswith("a:r:") for b in m.buttons)
    ]


async def chat(app: Harness, text: str, user: int = USER) -> StoredMessage:
    """The person sends `text` and the model's answer arrives whole; that answer."""
    await asyncio.sleep(GAP)
    count = len(_finals(app, user))
    app.tg.send_text(user, text)
    await app.answered(count + 1, chat_id=user)
    return _finals(app, user)[-1]


async def press(app: Harness, message: StoredMessage, data: str) -> CallbackQuery:
    """Press a button; the query once the bot answered it (its toast or alert)."""
    await asyncio.sleep(GAP)
    query_id = app.tg.press(message.chat_id, message.message_id, data)
    query = app.tg.callback_queries[query_id]
    await until(lambda: query.answered)
    return query


async def pressed_edit(app: Harness, message: StoredMessage, data: str) -> StoredMessage:
    """Press a button that edits its message; the message after the edit."""
    edits = app.tg.message(message.chat_id, message.message_id).edits
    await press(app, message, data)
    await until(lambda: app.tg.message(message.chat_id, message.message_id).edits > edits)
    return app.tg.message(message.chat_id, message.message_id)


def last_query(app: Harness) -> CallbackQuery:
    return list(app.tg.callback_queries.values())[-1]


def labelled(message: StoredMessage, text: str) -> str:
    """The callback data of the button labelled exactly `text`."""
    for button in message.buttons:
        if button["text"] == text:
            return str(button["callback_data"])
    labels = [b["text"] for b in message.buttons]
    raise AssertionError(f"no button {text!r} on message {message.message_id}: {labels}")


def model_button(message: StoredMessage, name: str) -> dict[str, Any]:
    """The picker button of the model called `name` (✅ and 🔒 marks aside)."""
    for button in message.buttons:
        label = str(button["text"]).removeprefix("✅ ").split(" 🔒 ")[0]
        if label == name:
            return button
    raise AssertionError(f"no model {name!r} in the picker")


def history_titles(message: StoredMessage) -> list[str]:
    return [str(b["text"]) for b in message.buttons if str(b["callback_data"]).startswith("h:r:")]


def failed_calls(app: Harness) -> list[str]:
    """Bot API calls that failed: a lost reply, a 'message is not modified', a 429."""
    return [f"{c.method}: {c.error}" for c in app.tg.calls if not c.ok and c.method != "getUpdates"]


def handler_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Exceptions the dispatcher logged while handling updates."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def me(app: Harness, telegram_id: int = USER) -> User:
    user = await app.services.accounts.by_identity("telegram", str(telegram_id))
    assert user is not None
    return user


def sent_model(app: Harness) -> str:
    return str(app.llm.requests[-1].body["model"])


def sent_texts(app: Harness) -> list[Any]:
    return [m["content"] for m in app.llm.requests[-1].body["messages"]]


# -- /start, /help, /new --------------------------------------------------------------


async def test_start_greets_by_name_with_the_model_count_and_plan(app: Harness) -> None:
    reply = await say(app, "/start")
    text = reply.text or ""
    assert "Hi, Ann!" in text
    assert f"chat with {len(app.services.catalog)} AI models" in text
    assert "Your plan: Free." in text
    assert app.llm.requests_count == 0


async def test_help_lists_the_commands(app: Harness) -> None:
    text = (await say(app, "/help")).text or ""
    for command in ("/new", "/model", "/history", "/rename", "/export", "/usage", "/settings"):
        assert command in text
    assert "/image" in text and "/cancel" in text


async def test_new_starts_another_conversation(app: Harness) -> None:
    await chat(app, "first topic")
    reply = await say(app, "/new")
    assert reply.text == "🆕 New conversation. Send your first message."
    await chat(app, "second topic")
    # The new conversation starts empty: the model sees only the new message.
    assert sent_texts(app) == ["second topic"]
    listing = await say(app, "/history")
    assert "page 1/1" in (listing.text or "")
    assert history_titles(listing) == ["• second topic", "first topic"]


# -- /model -----------------------------------------------------------------------------


async def test_the_model_picker_is_grouped_marked_and_locked(app: Harness) -> None:
    picker = await say(app, "/model")
    assert (picker.text or "").startswith("Current model: GPT-4o mini")
    headers = {"— Small messages —", "— Large messages —", "— Images —"}
    group = ""
    groups: dict[str, str] = {}
    for button in picker.buttons:
        if button["text"] in headers:
            group = str(button["text"])
        else:
            groups[str(button["text"])] = group
    assert [b["text"] for b in picker.buttons if b["text"] in headers] == [
        "— Small messages —",
        "— Large messages —",
        "— Images —",
    ]
    assert len(groups) == len(app.services.catalog)
    assert [label for label in groups if label.startswith("✅ ")] == ["✅ GPT-4o mini"]
    assert groups["✅ GPT-4o mini"] == "— Small messages —"
    assert groups["GPT-4o"] == "— Large messages —"
    assert groups["Gemini 2.5 Flash Image"] == "— Images —"
    assert groups["GPT-4.1 🔒 Pro"] == "— Large messages —"
    assert groups["Claude Opus 4 🔒 Enterprise"] == "— Large messages —"
    # A group header is not a model: pressing it changes nothing.
    query = await press(app, picker, labelled(picker, "— Large messages —"))
    assert not query.show_alert
    assert (await me(app)).default_model is None


async def test_picking_a_free_model_switches_the_conversation_and_the_default(
    app: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    await chat(app, "hello")
    assert sent_model(app) == "openai/gpt-4o-mini"
    picker = await say(app, "/model")
    picker = await pressed_edit(
        app, picker, model_button(picker, "Claude 3.5 Haiku")["callback_data"]
    )
    query = last_query(app)
    assert query.text == "✅ Model: Claude 3.5 Haiku" and not query.show_alert
    assert (picker.text or "").startswith("Current model: Claude 3.5 Haiku")
    assert model_button(picker, "Claude 3.5 Haiku")["text"] == "✅ Claude 3.5 Haiku"
    assert model_button(picker, "GPT-4o mini")["text"] == "GPT-4o mini"
    # The conversation goes on with the new model...
    await chat(app, "and now?")
    assert sent_model(app) == "anthropic/claude-3.5-haiku"
    assert sent_texts(app) == ["hello", "Echo: hello", "and now?"]
    # ...and it is the default of new conversations too.
    await say(app, "/new")
    await chat(app, "fresh start")
    assert sent_model(app) == "anthropic/claude-3.5-haiku"
    assert (await me(app)).default_model == "anthropic/claude-3.5-haiku"
    assert failed_calls(app) == []
    # Pressing the model that is already picked is harmless.
    query = await press(app, picker, model_button(picker, "Claude 3.5 Haiku")["callback_data"])
    assert query.text == "✅ Model: Claude 3.5 Haiku"
    await asyncio.sleep(GAP)
    assert handler_errors(caplog) == []


async def test_picking_a_locked_model_alerts_and_changes_nothing(app: Harness) -> None:
    await chat(app, "hello")
    picker = await say(app, "/model")
    query = await press(app, picker, model_button(picker, "GPT-4.1")["callback_data"])
    assert query.show_alert
    assert query.text == "🔒 GPT-4.1 needs the Pro plan. /plan shows how to upgrade."
    assert app.tg.message(USER, picker.message_id).edits == 0
    assert (await me(app)).default_model is None
    await chat(app, "still the same?")
    assert sent_model(app) == "openai/gpt-4o-mini"


# -- /history ---------------------------------------------------------------------------


async def test_resume_continues_an_older_conversation(app: Harness) -> None:
    await chat(app, "about cats")
    await say(app, "/new")
    await chat(app, "about dogs")
    listing = await say(app, "/history")
    assert listing.text == "🗂 Your conversations (page 1/1):"
    assert history_titles(listing) == ["• about dogs", "about cats"]
    # Each conversation has its Resume (its title) and Delete buttons.
    assert [b["text"] for b in listing.buttons] == ["• about dogs", "🗑", "about cats", "🗑"]
    resumed = await bot_reply(
        app, lambda: app.tg.press(USER, listing.message_id, labelled(listing, "about cats"))
    )
    assert resumed.text == "▶ Continuing “about cats”."
    await chat(app, "tell me more")
    assert sent_texts(app) == ["about cats", "Echo: about cats", "tell me more"]
    # Now the older one is the most recent, and current.
    listing = await say(app, "/history")
    assert history_titles(listing) == ["• about cats", "about dogs"]


async def test_delete_removes_a_conversation_and_redraws_the_list(app: Harness) -> None:
    await chat(app, "keep me")
    await say(app, "/new")
    await chat(app, "drop me")
    listing = await say(app, "/history")
    # Each row: the title (Resume), then 🗑 (Delete).
    assert [b["text"] for b in listing.buttons[:2]] == ["• drop me", "🗑"]
    listing = await pressed_edit(app, listing, listing.buttons[1]["callback_data"])
    query = last_query(app)
    assert query.text == "🗑 Deleted “drop me”."
    assert history_titles(listing) == ["keep me"]
    page = await app.services.conversations.page((await me(app)).id)
    assert [c.title for c in page.items] == ["keep me"]
    # The deleted one was current: the next message starts a new conversation.
    await chat(app, "after the delete")
    assert sent_texts(app) == ["after the delete"]
    # Deleting the last ones leaves the empty notice.
    listing = await say(app, "/history")
    for _ in range(2):
        listing = await pressed_edit(app, listing, listing.buttons[1]["callback_data"])
    assert listing.text == "No conversations yet. Just send a message."
    assert listing.buttons == []
    assert failed_calls(app) == []


async def test_history_pages_after_eight_conversations(app: Harness) -> None:
    await say(app, "/start")
    user = await me(app)
    for i in range(10):
        generation = await app.services.chat.send(user.id, f"topic {i}", new_conversation=True)
        await generation.run()
    listing = await say(app, "/history")
    assert listing.text == "🗂 Your conversations (page 1/2):"
    assert history_titles(listing) == ["• topic 9", *[f"topic {i}" for i in range(8, 1, -1)]]
    assert [b["text"] for b in listing.buttons][-1] == "▶"
    listing = await pressed_edit(app, listing, labelled(listing, "▶"))
    assert listing.text == "🗂 Your conversations (page 2/2):"
    assert history_titles(listing) == ["topic 1", "topic 0"]
    assert [b["text"] for b in listing.buttons][-1] == "◀"
    # Deleting on page 2 redraws page 2.
    listing = await pressed_edit(app, listing, listing.buttons[1]["callback_data"])
    assert listing.text == "🗂 Your conversations (page 2/2):"
    assert history_titles(listing) == ["topic 0"]
    listing = await pressed_edit(app, listing, labelled(listing, "◀"))
    assert listing.text == "🗂 Your conversations (page 1/2):"
    assert len(history_titles(listing)) == 8
    assert failed_calls(app) == []


# -- /rename, /export, /usage -------------------------------------------------------------


async def test_rename_changes_the_title_and_needs_one(app: Harness) -> None:
    usage = await say(app, "/rename")
    assert usage.text == "Usage: /rename New title"
    nothing = await say(app, "/rename Too early")
    assert nothing.text == "There is no conversation yet."
    await chat(app, "what about the weather")
    done = await say(app, "/rename   Weather   talk  ")
    assert done.text == "✏️ Renamed to “Weather talk”."
    listing = await say(app, "/history")
    assert history_titles(listing) == ["• Weather talk"]
    assert (await say(app, "/rename")).text == "Usage: /rename New title"


async def test_export_sends_the_conversation_as_markdown(app: Harness) -> None:
    assert (await say(app, "/export")).text == "There is no conversation yet."
    await chat(app, "Explain tides")
    await chat(app, "Shorter please")
    document = await say(app, "/export")
    assert document.kind == "document" and document.file is not None
    assert document.caption == "Explain tides"
    call = app.tg.calls_of("sendDocument")[-1]
    upload = call.params["document"]
    assert upload.filename == "Explain-tides.md"
    markdown = upload.data.decode()
    assert markdown == document.file.text
    assert markdown.startswith("# Explain tides\n")
    assert "Model: `openai/gpt-4o-mini`" in markdown
    sections = re.findall(r"^## (.+)$", markdown, flags=re.MULTILINE)
    assert sections == ["You", "Assistant (openai/gpt-4o-mini)"] * 2
    for text in ("Explain tides", "Echo: Explain tides", "Shorter please", "Echo: Shorter please"):
        assert f"\n{text}\n" in markdown


async def test_usage_shows_bars_counts_and_reset_times(app: Harness) -> None:
    before = (await say(app, "/usage")).text or ""
    month_end = window_bounds(ResetFrequency.MONTHLY, datetime.now(UTC))[1]
    resets = month_end.strftime("%Y-%m-%d %H:%M UTC")
    day_end = window_bounds(ResetFrequency.DAILY, datetime.now(UTC))[1].strftime(
        "%Y-%m-%d %H:%M UTC"
    )
    assert before.splitlines() == [
        "📊 Plan: Free",
        f"Small messages: ▱▱▱▱▱▱▱▱▱▱ 0/100 · 100 left · resets {resets}",
        f"Large messages: ▱▱▱▱▱▱▱▱▱▱ 0/20 · 20 left · resets {resets}",
        "Images: ▱▱▱▱▱▱▱▱▱▱ 0/5 · 5 left · resets 3 h after next use",
        f"Voice minutes: ▱▱▱▱▱▱▱▱▱▱ 0/5 min · 5 min left · resets {day_end}",
    ]
    await chat(app, "hello")
    after = (await say(app, "/usage")).text or ""
    assert f"Small messages: ▱▱▱▱▱▱▱▱▱▱ 1/100 · 99 left · resets {resets}" in after
    assert "0/20" in after
    # A bigger share fills the bar.
    app.llm.script(Reply(images=[_png_url()]), Reply(images=[_png_url()]))
    for _ in range(2):
        await bot_reply(app, lambda: app.tg.send_text(USER, "/image a red dot"))
    images = next(
        line
        for line in ((await say(app, "/usage")).text or "").splitlines()
        if line.startswith("Images")
    )
    assert re.fullmatch(
        r"Images: ▰▰▰▰▱▱▱▱▱▱ 2/5 · 3 left · resets \d{4}-\d\d-\d\d \d\d:\d\d UTC", images
    ), images


# -- /settings ----------------------------------------------------------------------------


async def test_system_prompt_is_set_used_and_cleared(
    app: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    menu = await say(app, "/settings")
    assert menu.text == (
        "⚙️ Settings\n\nSystem prompt: none\nDefault model: GPT-4o mini\nLanguage: English"
    )
    assert [b["text"] for b in menu.buttons] == [
        "✍️ System prompt",
        "🧹 Clear prompt",
        "🤖 Default model",
        "🌐 English",
        "🌐 Русский",
    ]
    ask = await bot_reply(
        app, lambda: app.tg.press(USER, menu.message_id, labelled(menu, "✍️ System prompt"))
    )
    assert ask.text == "Send the system prompt to use in new messages (or /cancel)."
    saved = await say(app, "Answer like a pirate.")
    assert saved.text == "✅ System prompt saved."
    assert app.llm.requests_count == 0  # the prompt itself is not a question
    await chat(app, "hi")
    assert app.llm.requests[-1].body["messages"] == [
        {"role": "system", "content": "Answer like a pirate."},
        {"role": "user", "content": "hi"},
    ]
    menu = await say(app, "/settings")
    assert "System prompt: Answer like a pirate." in (menu.text or "")
    menu = await pressed_edit(app, menu, labelled(menu, "🧹 Clear prompt"))
    assert last_query(app).text == "✅ System prompt cleared."
    assert "System prompt: none" in (menu.text or "")
    await chat(app, "again")
    assert [m["role"] for m in app.llm.requests[-1].body["messages"]] == [
        "user",
        "assistant",
        "user",
    ]
    assert failed_calls(app) == []
    # Pressing 🧹 again, or the language already chosen, is harmless.
    query = await press(app, menu, labelled(menu, "🧹 Clear prompt"))
    assert query.text == "✅ System prompt cleared."
    query = await press(app, menu, labelled(menu, "🌐 English"))
    assert query.text == "✅ Language: English"
    await asyncio.sleep(GAP)
    assert handler_errors(caplog) == []
    assert "System prompt: none" in (app.tg.message(USER, menu.message_id).text or "")


async def test_cancel_leaves_the_system_prompt_question(app: Harness) -> None:
    menu = await say(app, "/settings")
    await bot_reply(
        app, lambda: app.tg.press(USER, menu.message_id, labelled(menu, "✍️ System prompt"))
    )
    assert (await say(app, "/cancel")).text == "Cancelled."
    await chat(app, "a real question")
    assert sent_texts(app) == ["a real question"]
    assert (await me(app)).system_prompt is None


async def test_default_model_from_settings_applies_to_new_conversations(app: Harness) -> None:
    await chat(app, "hello")
    menu = await say(app, "/settings")
    picker = await bot_reply(
        app, lambda: app.tg.press(USER, menu.message_id, labelled(menu, "🤖 Default model"))
    )
    assert (picker.text or "").startswith("Current model: GPT-4o mini\n")
    picker = await pressed_edit(
        app, picker, model_button(picker, "Mistral Small 3.2")["callback_data"]
    )
    assert model_button(picker, "Mistral Small 3.2")["text"] == "✅ Mistral Small 3.2"
    menu = await say(app, "/settings")
    assert "Default model: Mistral Small 3.2" in (menu.text or "")
    # The conversation keeps its model; the next one gets the new default.
    await chat(app, "same conversation")
    assert sent_model(app) == "openai/gpt-4o-mini"
    await say(app, "/new")
    await chat(app, "new conversation")
    assert sent_model(app) == "mistralai/mistral-small-3.2-24b-instruct"


async def test_switching_to_russian(app: Harness) -> None:
    menu = await say(app, "/settings")
    menu = await pressed_edit(app, menu, labelled(menu, "🌐 Русский"))
    assert last_query(app).text == "✅ Язык: русский"
    assert (menu.text or "").startswith("⚙️ Настройки")
    assert "Язык: Русский" in (menu.text or "")
    assert labelled(menu, "✍️ Системный промпт")
    assert ((await say(app, "/help")).text or "").startswith("Команды:")
    assert (await say(app, "/nonsense")).text == "Я не знаю такой команды. /help — что я умею."
    answer = await chat(app, "привет")
    assert "🔄 Заново" in [b["text"] for b in answer.buttons]
    # And back.
    menu = await say(app, "/settings")
    await pressed_edit(app, menu, labelled(menu, "🌐 English"))
    assert ((await say(app, "/help")).text or "").startswith("Commands:")


async def test_a_russian_telegram_user_gets_russian_from_the_start(app: Harness) -> None:
    ivan = 3003
    app.tg.user(ivan, first_name="Иван", language_code="ru")
    start = await say(app, "/start", user=ivan)
    assert (start.text or "").startswith("👋 Привет, Иван!")
    assert "Ваш тариф: Free." in (start.text or "")
    assert ((await say(app, "/help", user=ivan)).text or "").startswith("Команды:")
    usage = (await say(app, "/usage", user=ivan)).text or ""
    assert usage.startswith("📊 Тариф: Free\nОбычные сообщения: ▱▱▱▱▱▱▱▱▱▱ 0/100 · осталось 100")
    # The English speaker next to him is still answered in English.
    assert ((await say(app, "/help")).text or "").startswith("Commands:")


# -- /cancel ------------------------------------------------------------------------------


async def test_cancel_with_nothing_running(app: Harness) -> None:
    assert (await say(app, "/cancel")).text == "Nothing to cancel."
    await chat(app, "done already")
    assert (await say(app, "/cancel")).text == "Nothing to cancel."


async def test_cancel_stops_a_streaming_answer(app: Harness) -> None:
    app.llm.script(Reply(chunks=[f"slow{i} " for i in range(40)], chunk_delay=0.1))
    app.tg.send_text(USER, "Go slowly")
    streaming = await app.tg.wait_for(
        lambda: next((m for m in app.bot_messages() if m.buttons), None)
    )
    await asyncio.sleep(0.3)
    app.tg.send_text(USER, "/cancel")
    await app.answered()
    await app.tg.wait_for(
        lambda: next((m for m in app.bot_messages() if m.text == "Cancelled."), None)
    )
    final = app.tg.message(USER, streaming.message_id)
    assert final.text is not None
    assert final.text.startswith("slow0") and final.text.endswith("⏹ Stopped.")
    assert "slow39" not in final.text
    user = await me(app)
    assert user.current_conversation_id is not None
    rows = await all_rows(app.services.db, user.current_conversation_id)
    assert rows[-1].status == "cancelled"
    # Nothing runs any more.
    assert (await say(app, "/cancel")).text == "Nothing to cancel."


async def test_a_command_right_after_an_answer_still_gets_its_reply(app: Harness) -> None:
    app.tg.send_text(USER, "hello")
    await app.answered()
    app.tg.send_text(USER, "/usage")  # within the chat's flood interval of the last edit
    usage = await app.tg.wait_for(
        lambda: next((m for m in app.bot_messages() if "Plan: Free" in (m.text or "")), None)
    )
    assert "1/100" in (usage.text or "")


# -- what the bot does not take ----------------------------------------------------------


async def test_unknown_commands_and_media_get_a_polite_answer(app: Harness) -> None:
    unknown = await say(app, "/frobnicate now")
    assert unknown.text == "I don't know that command. /help lists what I can do."
    only = (
        "I can read text, photos, documents and voice notes only. "
        "Please send your question as one of those."
    )
    assert (await bot_reply(app, lambda: app.tg.send_sticker(USER))).text == only
    assert app.llm.requests_count == 0
    user = await me(app)
    assert user.current_conversation_id is None


# -- photos and images ------------------------------------------------------------------


async def test_photos_need_a_vision_model(app: Harness) -> None:
    picker = await say(app, "/model")
    await pressed_edit(app, picker, model_button(picker, "Llama 3.3 70B Instruct")["callback_data"])
    refused = await bot_reply(app, lambda: app.tg.send_photo(USER, "What is this?"))
    assert refused.text == (
        "Llama 3.3 70B Instruct can't look at images. Pick a model that can with /model, "
        "or describe the picture in words."
    )
    assert app.llm.requests_count == 0
    picker = await say(app, "/model")
    await pressed_edit(app, picker, model_button(picker, "GPT-4.1 mini")["callback_data"])
    await asyncio.sleep(GAP)
    app.tg.send_photo(USER, "What is this?")
    await app.answered()
    assert sent_model(app) == "openai/gpt-4.1-mini"
    last = app.llm.requests[-1].body["messages"][-1]
    assert last["role"] == "user"
    text_part, image_part = last["content"]
    assert text_part == {"type": "text", "text": "What is this?"}
    url = image_part["image_url"]["url"]
    assert image_part["type"] == "image_url" and url.startswith("data:image/")
    header, _, encoded = url.partition(",")
    assert header.endswith(";base64")
    assert base64.b64decode(encoded) == TINY_PNG


def _png_url() -> str:
    return "data:image/png;base64," + base64.b64encode(TINY_PNG).decode()


async def _image_used(app: Harness) -> int:
    user = await me(app)
    report = await app.services.quotas.report(user.id, Tier(user.tier))
    return next(s.used for s in report if s.key.value == "image_generation")


async def test_image_sends_a_photo_and_counts_it(app: Harness) -> None:
    app.llm.script(Reply(images=[_png_url()]))
    photo = await say(app, "/image a red dot on white")
    assert photo.kind == "photo" and photo.file is not None
    assert photo.file.data == TINY_PNG
    assert photo.caption == "a red dot on white"
    body = app.llm.requests[-1].body
    assert body["modalities"] == ["image", "text"]
    assert body["messages"] == [{"role": "user", "content": "a red dot on white"}]
    assert app.services.catalog.require(body["model"]).image_output
    assert await _image_used(app) == 1
    usage = (await say(app, "/usage")).text or ""
    assert "Images: ▰▰▱▱▱▱▱▱▱▱ 1/5 · 4 left" in usage
    # Generating an image does not touch the chat.
    assert (await me(app)).current_conversation_id is None


async def test_image_without_a_picture_fails_politely_and_gives_the_unit_back(
    app: Harness,
) -> None:
    app.llm.script(Reply(text="I can only describe it.", images=[]))
    failed = await say(app, "/image a unicorn")
    assert failed.text == (
        "⚠️ The image could not be generated: The model did not return an image. Try another prompt."
    )
    assert app.tg.calls_of("sendPhoto") == []
    assert await _image_used(app) == 0
    assert "Images: ▱▱▱▱▱▱▱▱▱▱ 0/5 · 5 left" in ((await say(app, "/usage")).text or "")


async def test_image_without_a_prompt_shows_usage(app: Harness) -> None:
    assert (await say(app, "/image")).text == "Usage: /image a watercolor fox in the snow"
    assert (await say(app, "/image    ")).text == "Usage: /image a watercolor fox in the snow"
    assert app.llm.requests_count == 0


# -- the command menu and groups ----------------------------------------------------------


async def test_the_command_menu_in_english_and_russian(app: Harness) -> None:
    from bot.telegram.factory import COMMANDS, register_commands

    await register_commands(app.bot)
    english = app.tg.my_commands()
    russian = app.tg.my_commands(language_code="ru")
    assert [c["command"] for c in english] == list(COMMANDS)
    assert [c["command"] for c in russian] == list(COMMANDS)
    assert {c["command"]: c["description"] for c in english}["model"] == "Pick the AI model"
    assert {c["command"]: c["description"] for c in russian}["model"] == "Выбрать модель"
    assert all(c["description"] for c in english + russian)


async def test_in_a_group_only_mentions_are_answered(app: Harness) -> None:
    app.tg.group()
    app.tg.send_text(USER, "hello everyone", chat_type="group")
    await asyncio.sleep(GAP)
    app.tg.send_text(USER, f"@{BOT} what is a tide?", chat_type="group")
    await app.answered(chat_id=DEFAULT_GROUP_ID)
    await asyncio.sleep(0.3)
    assert app.llm.requests_count == 1
    assert sent_texts(app)[-1] == "what is a tide?"  # the mention is not part of it
    (answer,) = app.bot_messages(DEFAULT_GROUP_ID)
    assert "what is a tide?" in (answer.text or "")
    assert answer.reply_to is not None
    # A reply to the bot's answer needs no mention.
    await asyncio.sleep(GAP)
    app.tg.send_text(USER, "and why?", chat_type="group", reply_to=answer.message_id)
    await app.answered(2, chat_id=DEFAULT_GROUP_ID)
    assert sent_texts(app)[-1] == "and why?"
    assert app.llm.requests_count == 2
    # Nothing was said in the private chat.
    assert app.bot_messages(USER) == []


async def test_plan_shows_the_current_plan_and_every_plan(app: Harness) -> None:
    app.tg.send_text(USER, "/plan")
    message = await app.tg.wait_for(
        lambda: next((m for m in app.bot_messages() if "💳" in (m.text or "")), None)
    )
    text = message.text or ""
    assert "Your plan: Free" in text
    assert "✅ Free: 100 small and 20 large messages a month, 5 images every 3 hours" in text
    assert "Pro: 500 small" in text and "Enterprise: 5000 small" in text
