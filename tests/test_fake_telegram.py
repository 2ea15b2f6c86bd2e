"""The fake Telegram server, driven by the real aiogram client and dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.methods import SendMessage
from aiogram.types import (
    BotCommand,
    BotCommandScopeChat,
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LabeledPrice,
    Message,
    MessageEntity,
    PreCheckoutQuery,
)
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web
from telegramify_markdown import convert, entities_to_markdownv2

from tests.fakes.telegram_server import ENTITIES_REFUSED, NOT_MODIFIED, FakeTelegram, utf16_len

USER = 42


def make_bot(tg: FakeTelegram, token: str | None = None) -> Bot:
    api = TelegramAPIServer.from_base(tg.url)
    return Bot(token or tg.token, session=AiohttpSession(api=api))


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    # No per-chat flood limit by default: most tests send and edit back to back.
    async with FakeTelegram(per_chat_interval=None) as server:
        server.user(USER, first_name="Ann")
        yield server


@pytest.fixture
async def bot(tg: FakeTelegram) -> AsyncIterator[Bot]:
    bot = make_bot(tg)
    yield bot
    await bot.session.close()


@contextlib.asynccontextmanager
async def polling(dp: Dispatcher, bot: Bot, tg: FakeTelegram) -> AsyncIterator[None]:
    """Run the real polling loop until the block ends."""
    task = asyncio.create_task(dp.start_polling(bot, handle_signals=False, close_bot_session=False))
    await tg.wait_for(lambda: tg.waiting_pollers > 0 or task.done())
    try:
        yield
    finally:
        if not task.done():
            await dp.stop_polling()
        await task


async def test_get_me_and_auth(tg: FakeTelegram, bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.is_bot, me.username) == (tg.bot_id, True, "oneai_test_bot")

    wrong = make_bot(tg, "987654321:AAwrongTokenForTheFakeServer_0123456789")
    with pytest.raises(TelegramUnauthorizedError):
        await wrong.get_me()
    await wrong.session.close()

    async with aiohttp.ClientSession() as http:
        async with http.post(f"{tg.url}/bot{tg.token}/noSuchMethod", json={}) as response:
            assert response.status == 404
            assert await response.json() == {
                "ok": False,
                "error_code": 404,
                "description": "Not Found",
            }
        async with http.get(f"{tg.url}/botnope/getMe") as response:
            assert response.status == 401
            assert (await response.json())["description"] == "Unauthorized"
        # Method names are case-insensitive; JSON bodies work as well as forms.
        async with http.post(
            f"{tg.url}/bot{tg.token}/SENDMESSAGE", json={"chat_id": USER, "text": "raw"}
        ) as response:
            assert (await response.json())["result"]["text"] == "raw"
    assert [c.method for c in tg.calls].count("sendMessage") == 1


async def test_send_edit_and_not_modified(tg: FakeTelegram, bot: Bot) -> None:
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="More", callback_data="more")]]
    )
    sent = await bot.send_message(USER, "Hello", reply_markup=keyboard)
    assert (sent.message_id, sent.chat.id, sent.from_user and sent.from_user.id) == (
        1,
        USER,
        tg.bot_id,
    )
    assert sent.reply_markup is not None
    assert sent.reply_markup.inline_keyboard[0][0].callback_data == "more"

    edited = await bot.edit_message_text(
        "Hello, Ann", chat_id=USER, message_id=1, reply_markup=keyboard
    )
    assert isinstance(edited, Message) and edited.text == "Hello, Ann"
    with pytest.raises(TelegramBadRequest) as not_modified:
        await bot.edit_message_text("Hello, Ann", chat_id=USER, message_id=1, reply_markup=keyboard)
    assert not_modified.value.message == NOT_MODIFIED
    # Same text without the markup is a change: Telegram drops the keyboard.
    await bot.edit_message_text("Hello, Ann", chat_id=USER, message_id=1)

    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=USER, message_id=99)
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(USER, "  \n ")
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(777, "nobody here")

    # Message ids are per chat and shared with the user's messages.
    assert tg.send_text(USER, "hi bot") == 2
    assert (await bot.send_message(USER, "hi user")).message_id == 3
    await bot.delete_message(USER, 3)
    shown = tg.messages(USER)
    assert [(m.message_id, m.from_bot, m.text) for m in shown] == [
        (1, True, "Hello, Ann"),
        (2, False, "hi bot"),
    ]
    assert shown[0].reply_markup is None and shown[0].edits == 2
    failed = tg.calls_of("editMessageText", USER, ok=False)
    assert [c.error for c in failed] == [
        NOT_MODIFIED,
        "Bad Request: message to edit not found",
    ]


async def test_text_limit_counts_utf16_units(tg: FakeTelegram, bot: Bot) -> None:
    await bot.send_message(USER, "😀" * 2048)  # 4096 UTF-16 units
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(USER, "😀" * 2100)  # 2100 characters, 4200 units
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(USER, "a" * 4097)
    assert utf16_len(tg.messages(USER)[-1].text or "") == 4096


async def test_entities_are_checked_in_utf16_units(tg: FakeTelegram, bot: Bot) -> None:
    text = "😀 bold"  # the emoji is 2 UTF-16 units: "bold" starts at 3
    sent = await bot.send_message(
        USER, text, entities=[MessageEntity(type="bold", offset=3, length=4)]
    )
    assert sent.entities is not None and sent.entities[0].extract_from(text) == "bold"

    bad = {
        "out of the text bounds": MessageEntity(type="bold", offset=3, length=5),
        "splits a UTF-16 surrogate pair": MessageEntity(type="bold", offset=1, length=5),
        "out of the text bounds ": MessageEntity(type="italic", offset=-1, length=2),
        "unsupported entity type": MessageEntity(type="sparkles", offset=0, length=1),
    }
    for reason, entity in bad.items():
        with pytest.raises(TelegramBadRequest, match="can't parse entities") as error:
            await bot.send_message(USER, text, entities=[entity])
        assert reason.strip() in error.value.message
    with pytest.raises(TelegramBadRequest, match="has no url"):
        await bot.send_message(
            USER, text, entities=[MessageEntity(type="text_link", offset=0, length=2)]
        )


async def test_parse_modes(tg: FakeTelegram, bot: Bot) -> None:
    markdown = (
        "# Plan\n\nUse **bold**, _italic_ and `code`; see [docs](https://example.com/a_(b)).\n\n"
        "- step 1.5!\n- #2 {x} = y + z\n\n> quoted\n\n```python\nprint('hi')  # `x`\n```\n"
    )
    text, entities = convert(markdown)
    await bot.send_message(USER, entities_to_markdownv2(text, entities), parse_mode="MarkdownV2")
    stored = tg.messages(USER)[-1]
    assert stored.text == text
    key = lambda e: (e["offset"], -e["length"], e["type"])  # noqa: E731
    assert stored.entities == sorted((e.to_dict() for e in entities), key=key)

    for source in ["Done.", "*bold", "1 + 1 = 2", "[x](https://a.b"]:
        with pytest.raises(TelegramBadRequest, match="can't parse entities"):
            await bot.send_message(USER, source, parse_mode="MarkdownV2")

    await bot.send_message(
        USER, '<b>Hi</b> &amp; <a href="https://x.y">link</a>', parse_mode="HTML"
    )
    stored = tg.messages(USER)[-1]
    assert stored.text == "Hi & link"
    assert [e["type"] for e in stored.entities] == ["bold", "text_link"]
    with pytest.raises(TelegramBadRequest, match='Unsupported start tag "div"'):
        await bot.send_message(USER, "<div>x</div>", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(USER, "<b></b>", parse_mode="HTML")
    # With both, the Bot API parses the text and ignores the entities.
    await bot.send_message(
        USER,
        "<i>Hi</i>",
        parse_mode="HTML",
        entities=[MessageEntity(type="bold", offset=0, length=3)],
    )
    assert tg.messages(USER)[-1].entities == [{"type": "italic", "offset": 0, "length": 2}]


# Telegram's answers for text_link URLs, from tdlib's LinkManager::check_link and
# parse_url (the Bot API prefixes "Bad Request: " and lower-cases the first letter).
REFUSED_LINKS = {
    "/etc/app.conf": "URL host is empty",
    "#intro": "URL host is empty",
    "": "URL host is empty",
    "javascript:alert(1)": "Wrong port number specified in the URL",
    "data:text/html,<b>x</b>": "Wrong port number specified in the URL",
    "D:/work/CLAUDE.md:1": "Wrong port number specified in the URL",
    "docs/guide.md": "Wrong HTTP URL",
    "http://localhost:3000/a": "Wrong HTTP URL",
    "@some_bot": "Wrong HTTP URL",
    "./a.png": "Host is invalid",
    "ftp://x.org/file": "Unsupported URL protocol",
    "file:///etc/passwd": "Unsupported URL protocol",
    "https://exa mple.com": "Disallowed character in URL host",
    "https://x.org:0": "Wrong port number specified in the URL",
    "tg://resolve:80?domain=x": "Wrong tg URL",
}


async def test_text_link_urls_are_checked_like_telegram(tg: FakeTelegram, bot: Bot) -> None:
    for url, reason in REFUSED_LINKS.items():
        link = MessageEntity(type="text_link", offset=0, length=4, url=url)
        with pytest.raises(TelegramBadRequest) as refused:
            await bot.send_message(USER, "link text", entities=[link])
        assert refused.value.message == f"Bad Request: entity URL '{url}' is invalid: {reason}"
    # The same check guards edits and drafts.
    sent = await bot.send_message(USER, "link text")
    bad = [MessageEntity(type="text_link", offset=0, length=4, url="/etc/app.conf")]
    with pytest.raises(TelegramBadRequest, match="URL host is empty"):
        await bot.edit_message_text("link", chat_id=USER, message_id=sent.message_id, entities=bad)
    with pytest.raises(TelegramBadRequest, match="URL host is empty"):
        await bot.send_message_draft(chat_id=USER, draft_id=1, text="link", entities=bad)
    assert tg.messages(USER)[-1].text == "link text"

    # Accepted links are stored the way Telegram normalizes them.
    accepted = {
        "https://x.org": "https://x.org/",
        "HTTP://Example.COM/A b?q=1#f": "http://example.com/A%20b?q=1#f",
        "README.md": "http://readme.md/",  # a bare host: Telegram assumes http
        "tg://resolve?domain=oneai_test_bot": "tg://resolve?domain=oneai_test_bot",
        "https://[::1]:8443/x": "https://[::1]:8443/x",
    }
    for url, stored in accepted.items():
        link = MessageEntity(type="text_link", offset=0, length=4, url=url)
        sent = await bot.send_message(USER, "link text", entities=[link])
        assert sent.entities is not None and sent.entities[0].url == stored
    # tg://user?id=N is a mention of that user.
    mention = MessageEntity(type="text_link", offset=0, length=3, url=f"tg://user?id={USER}")
    sent = await bot.send_message(USER, "Ann, hi", entities=[mention])
    assert sent.entities is not None and sent.entities[0].type == "text_mention"
    assert sent.entities[0].user is not None and sent.entities[0].user.first_name == "Ann"


async def test_parse_modes_keep_the_text_of_a_refused_link(tg: FakeTelegram, bot: Bot) -> None:
    # No error: Telegram drops a link it refuses from parsed markup and keeps its text.
    for source, mode in [
        (r"See [conf](/etc/app.conf) and [web](https://x.org)\.", "MarkdownV2"),
        ('See <a href="/etc/app.conf">conf</a> and <a href="https://x.org">web</a>.', "HTML"),
        ("See [conf](/etc/app.conf) and [web](https://x.org).", "Markdown"),
    ]:
        await bot.send_message(USER, source, parse_mode=mode)
        stored = tg.messages(USER)[-1]
        assert stored.text == "See conf and web.", mode
        assert stored.entities == [
            {"type": "text_link", "offset": 13, "length": 3, "url": "https://x.org/"}
        ], mode
    await bot.send_message(USER, "<a>https://x.org</a> <a>plain</a>", parse_mode="HTML")
    assert tg.messages(USER)[-1].entities == [
        {"type": "text_link", "offset": 0, "length": 13, "url": "https://x.org/"}
    ]


async def test_refuse_entities_once(tg: FakeTelegram, bot: Bot) -> None:
    bold = [MessageEntity(type="bold", offset=0, length=4)]
    tg.refuse_entities_once()
    await bot.send_message(USER, "no entities here")  # only a text with entities counts
    with pytest.raises(TelegramBadRequest) as refused:
        await bot.send_message(USER, "Bold text", entities=bold)
    assert refused.value.message == ENTITIES_REFUSED
    await bot.send_message(USER, "Bold text", entities=bold)  # once only
    tg.refuse_entities_once("Bad Request: can't parse entities: nope")
    with pytest.raises(TelegramBadRequest, match="nope"):
        await bot.edit_message_text("Bold", chat_id=USER, message_id=2, entities=bold)
    assert [m.text for m in tg.messages(USER)] == ["no entities here", "Bold text"]


async def test_flood_control() -> None:
    async with FakeTelegram(per_chat_interval=0.2, global_per_second=3) as tg:
        tg.user(1)
        tg.user(2)
        bot = make_bot(tg)
        await bot.send_message(1, "first")
        with pytest.raises(TelegramRetryAfter) as flood:
            await bot.send_message(1, "too soon")
        assert flood.value.retry_after == 1  # whole seconds on the wire, like Telegram
        await bot.send_chat_action(1, "typing")  # chat actions are not limited
        await asyncio.sleep(0.2)  # the fake's window is the configured interval
        await bot.send_message(1, "later")

        await bot.send_message(2, "other chat")  # 3 sends within 1 s: the global cap
        tg.user(3)
        with pytest.raises(TelegramRetryAfter):
            await bot.send_message(3, "over the global limit")
        assert [(f.chat_id, f.reason) for f in tg.floods] == [(1, "chat"), (3, "global")]

        tg.global_per_second = None
        tg.flood_storm("sendMessage", 2, retry_after=3)
        for _ in range(2):
            with pytest.raises(TelegramRetryAfter) as storm:
                await bot.send_message(3, "storm")
            assert storm.value.retry_after == 3
        await bot.send_message(3, "calm again")
        assert len(tg.calls_of("sendMessage", ok=False)) == 4
        await bot.session.close()


async def test_long_polling_delivers_to_a_handler_quickly(tg: FakeTelegram, bot: Bot) -> None:
    router = Router()

    @router.message(F.text)
    async def echo(message: Message) -> None:
        await message.answer(f"Echo: {message.text}")

    dp = Dispatcher()
    dp.include_router(router)
    async with polling(dp, bot, tg):
        for word in ("one", "two"):
            since = len(tg.calls)
            injected = time.monotonic()
            tg.send_text(USER, word)
            reply = await tg.wait_for_call("sendMessage", chat_id=USER, since=since)
            assert reply.params["text"] == f"Echo: {word}"
            assert reply.time - injected < 0.2  # woken at once, not at the poll timeout
        # Handled updates get confirmed by the next poll's offset.
        await tg.wait_for(lambda: not tg.pending_updates)
    polls = tg.calls_of("getUpdates")
    assert polls[0].params["allowed_updates"] == ["message"]
    assert [m.text for m in tg.messages(USER)] == ["one", "Echo: one", "two", "Echo: two"]


async def test_callback_press_and_answer(tg: FakeTelegram, bot: Bot) -> None:
    router = Router()

    @router.callback_query(F.data == "regen")
    async def regenerate(query: CallbackQuery) -> None:
        await query.answer("Regenerating…")
        assert isinstance(query.message, Message)
        await query.message.edit_text("Second answer")

    dp = Dispatcher()
    dp.include_router(router)
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="🔄", callback_data="regen")]]
    )
    sent = await bot.send_message(USER, "First answer", reply_markup=keyboard)
    with pytest.raises(ValueError, match="no button"):
        tg.press(USER, sent.message_id, "missing")
    async with polling(dp, bot, tg):
        query_id = tg.press(USER, sent.message_id, "regen")
        await tg.wait_for_call("editMessageText", chat_id=USER)
    answer = tg.callback_queries[query_id]
    assert answer.answered and answer.text == "Regenerating…"
    assert answer.answer_delay is not None and answer.answer_delay < 1
    # The edit sent no markup, so the button is gone and cannot be pressed again.
    assert tg.messages(USER)[0].text == "Second answer"
    with pytest.raises(ValueError):
        tg.press(USER, sent.message_id, "regen")


async def test_files_round_trip(tg: FakeTelegram, bot: Bot) -> None:
    export = b"# Chat export\n\n**Ann:** hi\n"
    sent = await bot.send_document(
        USER, BufferedInputFile(export, filename="chat.md"), caption="Your export"
    )
    assert sent.document is not None and sent.document.file_name == "chat.md"
    stored = tg.messages(USER)[-1]
    assert stored.file is not None and stored.file.data == export
    assert stored.file.mime_type == "text/markdown" and stored.caption == "Your export"
    # The call record keeps the upload too, and re-sending by file_id works.
    assert tg.calls_of("sendDocument")[0].params["document"].data == export
    await bot.send_document(USER, sent.document.file_id)

    message_id = tg.send_photo(USER, caption="what is this?")
    photo = tg.message(USER, message_id).media["photo"][-1]
    file = await bot.get_file(photo["file_id"])
    assert file.file_path is not None
    downloaded = await bot.download_file(file.file_path)
    assert downloaded is not None and downloaded.read() == tg.file(photo["file_id"]).data

    with pytest.raises(TelegramBadRequest, match="wrong file_id"):
        await bot.get_file("nope")


async def test_blocked_user(tg: FakeTelegram, bot: Bot) -> None:
    tg.block(USER)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(USER, "are you there?")
    assert tg.pending_updates[-1]["my_chat_member"]["new_chat_member"]["status"] == "kicked"
    tg.unblock(USER)
    await bot.send_message(USER, "welcome back")


async def test_drafts(tg: FakeTelegram, bot: Bot) -> None:
    await bot.send_message_draft(chat_id=USER, draft_id=7, text="")  # "Thinking…"
    await bot.send_message_draft(
        chat_id=USER, draft_id=7, text="*Partial*", parse_mode="MarkdownV2"
    )
    draft = tg.draft(USER)
    assert draft is not None and (draft.draft_id, draft.text) == (7, "Partial")
    with pytest.raises(TelegramBadRequest, match="DRAFT_ID_INVALID"):
        await bot.send_message_draft(chat_id=USER, draft_id=0, text="x")
    await bot.send_message(USER, "Partial and final")
    assert tg.draft(USER) is None  # the real message replaces the preview


async def test_stars_payments_flow(tg: FakeTelegram, bot: Bot) -> None:
    router = Router()

    @router.pre_checkout_query()
    async def check(query: PreCheckoutQuery) -> None:
        if query.invoice_payload == "sold-out":
            await query.answer(ok=False, error_message="Sold out")
        else:
            await query.answer(ok=True)

    @router.message(F.successful_payment)
    async def paid(message: Message) -> None:
        payment = message.successful_payment
        assert payment is not None and message.from_user is not None
        await message.answer(f"Thanks for {payment.total_amount} ⭐")

    dp = Dispatcher()
    dp.include_router(router)
    await bot.send_invoice(
        USER,
        title="Pro",
        description="30 days of Pro",
        payload="pro-30",
        currency="XTR",
        prices=[LabeledPrice(label="Pro", amount=250)],
    )
    invoice = tg.messages(USER)[-1]
    assert invoice.media["invoice"]["total_amount"] == 250
    assert invoice.invoice is not None and invoice.invoice["payload"] == "pro-30"
    with pytest.raises(TelegramBadRequest, match="STARS_INVOICE_INVALID"):
        await bot.send_invoice(
            USER,
            title="Pro",
            description="d",
            payload="p",
            currency="XTR",
            prices=[LabeledPrice(label="a", amount=1), LabeledPrice(label="b", amount=2)],
        )
    link = await bot.create_invoice_link(
        title="Pro monthly",
        description="Renews every 30 days",
        payload="pro-sub",
        currency="XTR",
        prices=[LabeledPrice(label="Month", amount=300)],
        subscription_period=2592000,
    )
    assert tg.invoice_links[link]["subscription_period"] == 2592000

    async with polling(dp, bot, tg):
        good = tg.pre_checkout(USER, "pro-30", "XTR", 250)
        sold_out = tg.pre_checkout(USER, "sold-out", "XTR", 250)
        await tg.wait_for(lambda: tg.pre_checkouts[sold_out].answered)
        tg.successful_payment(USER, "pro-30", "XTR", 250, "charge-1")
        await tg.wait_for_call("sendMessage", chat_id=USER)
    answer = tg.pre_checkouts[good]
    assert answer.ok is True and answer.answer_delay is not None and answer.answer_delay < 1
    assert tg.pre_checkouts[sold_out].error_message == "Sold out"
    assert tg.messages(USER)[-1].text == "Thanks for 250 ⭐"

    assert await bot.refund_star_payment(USER, "charge-1")
    with pytest.raises(TelegramBadRequest, match="CHARGE_ALREADY_REFUNDED"):
        await bot.refund_star_payment(USER, "charge-1")
    tg.successful_payment(USER, "pro-sub", "XTR", 300, "charge-2", is_recurring=True)
    await bot.edit_user_star_subscription(USER, "charge-2", is_canceled=True)
    assert tg.charges["charge-2"].subscription_canceled


async def test_commands_per_language_and_scope(tg: FakeTelegram, bot: Bot) -> None:
    await bot.set_my_commands([BotCommand(command="new", description="New chat")])
    await bot.set_my_commands(
        [BotCommand(command="new", description="Новый чат")], language_code="ru"
    )
    await bot.set_my_commands(
        [BotCommand(command="admin", description="Admin")],
        scope=BotCommandScopeChat(chat_id=USER),
    )
    assert [c.description for c in await bot.get_my_commands(language_code="ru")] == ["Новый чат"]
    assert tg.my_commands() == [{"command": "new", "description": "New chat"}]
    scoped = tg.my_commands(scope={"type": "chat", "chat_id": USER})
    assert scoped[0]["command"] == "admin"
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="New-Chat", description="x")])


async def test_group_mention_reaches_the_bot(tg: FakeTelegram, bot: Bot) -> None:
    seen: list[tuple[str, list[str]]] = []
    router = Router()

    @router.message()
    async def record(message: Message) -> None:
        seen.append((message.chat.type, [e.type for e in message.entities or []]))

    dp = Dispatcher()
    dp.include_router(router)
    async with polling(dp, bot, tg):
        tg.send_text(7, "@oneai_test_bot what is 2+2? /help", chat_type="group")
        await tg.wait_for(lambda: seen)
    assert seen == [("group", ["mention", "bot_command"])]


async def test_webhook_mode(tg: FakeTelegram, bot: Bot) -> None:
    router = Router()

    @router.message(F.text)
    async def reply_in_webhook(message: Message) -> SendMessage:
        # Answered in the webhook response body: Telegram executes it.
        return message.answer(f"Webhook echo: {message.text}")

    dp = Dispatcher()
    dp.include_router(router)
    app = web.Application()
    SimpleRequestHandler(dp, bot, secret_token="s3cret", handle_in_background=False).register(
        app, path="/hook"
    )
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    hook = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        await bot.set_webhook("https://bot.example/hook", secret_token="s3cret")
        assert (await bot.get_webhook_info()).url == "https://bot.example/hook"
        with pytest.raises(TelegramConflictError):
            await bot.get_updates()

        tg.send_text(USER, "ping")
        refused = await tg.deliver_webhook(hook, secret_token="wrong")
        assert refused.status == 401 and len(tg.pending_updates) == 1
        result = await tg.deliver_webhook(hook, secret_token="s3cret")
        assert result.status == 200 and not tg.pending_updates
        assert result.call is not None and result.call.via_webhook and result.call.ok
        assert tg.messages(USER)[-1].text == "Webhook echo: ping"
    finally:
        await runner.cleanup()


async def test_multipart_json_fields_are_decoded(tg: FakeTelegram) -> None:
    form = aiohttp.FormData()
    form.add_field("chat_id", str(USER))
    form.add_field("caption", "123")  # a string field stays a string
    form.add_field(
        "reply_markup", json.dumps({"inline_keyboard": [[{"text": "a", "url": "https://a.b"}]]})
    )
    form.add_field("document", b"data", filename="a.bin")
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{tg.url}/bot{tg.token}/sendDocument", data=form) as response,
    ):
        assert response.status == 200
    call = tg.calls_of("sendDocument")[0]
    assert call.params["chat_id"] == USER and call.params["caption"] == "123"
    assert call.params["reply_markup"]["inline_keyboard"][0][0]["text"] == "a"
    assert tg.messages(USER)[-1].file is not None


async def test_get_updates_semantics(tg: FakeTelegram, bot: Bot) -> None:
    tg.send_text(USER, "a")
    tg.send_text(USER, "b")
    first = await bot.get_updates(limit=1)
    assert [u.message.text for u in first if u.message] == ["a"]
    assert len(await bot.get_updates()) == 2  # nothing confirmed yet
    rest = await bot.get_updates(offset=first[0].update_id + 1)
    assert [u.message.text for u in rest if u.message] == ["b"]
    await bot.get_updates(offset=rest[0].update_id + 1)
    assert not tg.pending_updates

    # A long poll wakes as soon as an update arrives, not at its timeout.
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await tg.wait_for(lambda: tg.waiting_pollers == 1)
    started = time.monotonic()
    tg.send_text(USER, "c")
    delivered = await poll
    assert [u.message.text for u in delivered if u.message] == ["c"]
    assert time.monotonic() - started < 0.5
    await bot.get_updates(offset=delivered[-1].update_id + 1)  # confirm "c"

    # A second poller ends the first one with 409, as Telegram does.
    older = asyncio.create_task(bot.get_updates(timeout=5))
    await tg.wait_for(lambda: tg.waiting_pollers == 1)
    assert await bot.get_updates() == []
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates"):
        await older

    # Update types the bot did not ask for are dropped.
    tg.send_text(USER, "d")
    assert await bot.get_updates(allowed_updates=["callback_query"]) == []
    assert tg.dropped_updates[-1]["message"]["text"] == "d"


async def test_injected_updates_parse_in_aiogram(tg: FakeTelegram, bot: Bot) -> None:
    await bot.send_message_draft(chat_id=USER, draft_id=3, text="…", can_stop=True)
    first = tg.send_text(USER, "/start", language_code="de", first_name="Bea")
    tg.edit_text(USER, first, "/start again")
    tg.send_text(USER, "reply", reply_to=first)
    tg.send_voice(USER)
    tg.send_sticker(USER)
    tg.send_document(USER, b"x,y\n", file_name="data.csv", mime_type="text/csv")
    tg.successful_payment(USER, "p", "XTR", 5, "c1", is_recurring=True, is_first_recurring=True)
    tg.refunded_payment(USER, "p", "XTR", 5, "c1")
    tg.stop_generation(USER)
    updates = await bot.get_updates()
    kinds = [u.event_type for u in updates]
    assert kinds == ["message", "edited_message"] + ["message"] * 6 + ["stopped_message_generation"]
    start = updates[0].message
    assert start is not None and start.from_user is not None
    assert (start.from_user.language_code, start.from_user.first_name) == ("de", "Bea")
    assert start.entities is not None and start.entities[0].type == "bot_command"
    assert updates[1].edited_message and updates[1].edited_message.text == "/start again"
    reply = updates[2].message
    assert reply and reply.reply_to_message and reply.reply_to_message.message_id == first
    media = [u.message for u in updates[3:8]]
    assert [m.content_type for m in media if m] == [
        "voice",
        "sticker",
        "document",
        "successful_payment",
        "refunded_payment",
    ]
    stopped = updates[8].stopped_message_generation
    assert stopped is not None and stopped.draft_id == 3
