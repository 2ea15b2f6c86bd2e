"""Documents on Telegram, end to end: a person sends a PDF, a DOCX or a text file;
the bot downloads it through getFile, reads it and answers, or says clearly why
not, or offers the first part or a model with a larger window."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import func, select

from core.db.models import Attachment, ChatMessage
from core.tiers import Tier
from core.views.history import export_current
from tests.fakes.llm_server import Reply
from tests.fakes.telegram_server import StoredMessage
from tests.support.documents import docx, pdf, report_pdf, scanned_pdf
from tests.telegram.conftest import USER, Harness, until
from tests.telegram.test_commands_e2e import (
    bot_reply,
    me,
    press,
    pressed_edit,
    say,
    sent_model,
)

MB = 1024 * 1024


@pytest.fixture(autouse=True)
def short_answers(app: Harness) -> None:
    # The fake echoes the last user message by default: a whole document, here.
    app.llm.default = Reply(text="I read it.")


def _last_user_turn(app: Harness) -> str:
    content = app.llm.requests[-1].body["messages"][-1]
    assert content["role"] == "user"
    return str(content["content"])


async def _send_document(
    app: Harness, data: bytes, name: str, mime: str, caption: str | None = None
) -> None:
    await asyncio.sleep(0.15)
    app.tg.send_document(USER, data, file_name=name, mime_type=mime, caption=caption)


async def _quota_used(app: Harness) -> int:
    user = await me(app)
    report = await app.services.quotas.report(user.id, Tier(user.tier))
    return sum(s.used for s in report)


async def _attachments(app: Harness) -> int:
    async with app.services.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(Attachment)) or 0)


async def test_a_pdf_is_read_and_answered_with_its_caption_as_the_question(app: Harness) -> None:
    data = pdf([["Quarterly report", "Revenue grew 12% to 4.2 million."], ["Costs fell 3%."]])
    await _send_document(app, data, "report.pdf", "application/pdf", "What was the revenue?")
    await app.answered()
    sent = _last_user_turn(app)
    assert sent.startswith('<document name="report.pdf" pages="2">\n')
    assert "Revenue grew 12% to 4.2 million." in sent and "Costs fell 3%." in sent
    assert sent.endswith("</document>\n\nWhat was the revenue?")
    assert app.tg.calls_of("getFile")
    assert await _quota_used(app) == 1
    # Stored once, with the prompt row pointing to it.
    async with app.services.db.read() as session:
        attachment = (await session.scalars(select(Attachment))).one()
        prompt = (
            await session.scalars(select(ChatMessage).where(ChatMessage.role == "user"))
        ).one()
    assert (attachment.name, attachment.mime_type, attachment.pages) == (
        "report.pdf",
        "application/pdf",
        2,
    )
    assert attachment.size_bytes == len(data) and attachment.chars == len(attachment.content)
    assert prompt.attachment_id == attachment.id
    assert prompt.content == "What was the revenue?"

    # Regenerate: the same attachment row goes again, not a copy.
    answer = app.bot_messages()[-1]
    await press(app, answer, app.button(answer, "a:r:"))
    await until(lambda: app.llm.requests_count == 2)
    await app.answered()
    assert "Revenue grew 12%" in _last_user_turn(app)
    assert await _attachments(app) == 1

    # The revision view names the document the answer was about.
    answer = app.bot_messages()[-1]
    paged = await pressed_edit(app, answer, app.button(answer, "a:p:"))
    assert "📎 report.pdf (2 pages)" in (paged.text or "")

    # /history lists the conversation under the document's name.
    listing = await say(app, "/history")
    assert any("📎 report.pdf" in str(b["text"]) for b in listing.buttons)

    # Exports name it.
    user = await me(app)
    exported = await export_current(app.services, user.id)
    assert exported is not None
    assert "📎 report.pdf (2 pages)" in exported.content
    assert exported.caption.startswith("📎 report.pdf")


async def test_a_docx_without_caption_is_summarized_and_its_caption_edit_keeps_it(
    app: Harness,
) -> None:
    data = docx(["Meeting notes", "We agreed to ship on Friday."])
    mime = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    await _send_document(app, data, "notes.docx", mime)
    await app.answered()
    sent = _last_user_turn(app)
    assert sent.startswith('<document name="notes.docx">\nMeeting notes\nWe agreed to ship')
    assert sent.endswith("\n\nSummarize this document.")

    # The person edits the caption: a new revision of the message, same document row.
    document_message = next(m for m in app.tg.messages(USER) if not m.from_bot)
    await asyncio.sleep(0.15)
    app.tg.edit_caption(USER, document_message.message_id, "When do we ship?")
    await until(lambda: app.llm.requests_count == 2)
    await app.answered()
    sent = _last_user_turn(app)
    assert "We agreed to ship on Friday." in sent and sent.endswith("When do we ship?")
    async with app.services.db.read() as session:
        prompts = (
            await session.scalars(
                select(ChatMessage)
                .where(ChatMessage.role == "user")
                .order_by(ChatMessage.revision_number)
            )
        ).all()
    assert [p.revision_number for p in prompts] == [0, 1]
    assert prompts[0].attachment_id == prompts[1].attachment_id is not None
    assert await _attachments(app) == 1


async def _offer(app: Harness) -> StoredMessage:
    data = report_pdf(300, marker="ZEBRA-START")
    assert len(data) < 20 * MB
    await asyncio.sleep(0.15)
    return await bot_reply(
        app,
        lambda: app.tg.send_document(
            USER, data, file_name="annual.pdf", mime_type="application/pdf"
        ),
    )


async def test_a_300_page_pdf_that_does_not_fit_gets_an_offer_and_the_first_part(
    app: Harness,
) -> None:
    offer = await _offer(app)
    text = offer.text or ""
    assert text.startswith("📎 annual.pdf is too long for GPT-4o mini: about ")
    assert " of 300 pages (" in text
    assert "Claude 3.5 Haiku takes it whole." in text
    labels = [str(b["text"]) for b in offer.buttons]
    assert labels == ["✂️ Use the first part", "🔁 Switch to Claude 3.5 Haiku"]
    # Nothing was asked or charged yet.
    assert app.llm.requests_count == 0
    assert await _quota_used(app) == 0

    await press(app, offer, app.button(offer, "dc:f:"))
    await app.answered()
    note = next(m for m in app.bot_messages() if (m.text or "").startswith("✂️ Only the first"))
    assert "about " in (note.text or "") and " of 300 pages" in (note.text or "")
    sent = _last_user_turn(app)
    assert sent.startswith('<document name="annual.pdf" pages="300" part="only the first ')
    assert "ZEBRA-START" in sent
    assert "Page 300." not in sent
    assert sent_model(app) == "openai/gpt-4o-mini"
    assert await _quota_used(app) == 1
    # The offer's buttons are gone: a second press cannot ask again.
    assert app.tg.message(USER, offer.message_id).buttons == []


async def test_the_larger_model_button_switches_and_asks_again_whole(app: Harness) -> None:
    offer = await _offer(app)
    await press(app, offer, app.button(offer, "dc:m:"))
    await app.answered()
    assert sent_model(app) == "anthropic/claude-3.5-haiku"
    sent = _last_user_turn(app)
    assert "part=" not in sent and "Page 300." in sent and "ZEBRA-START" in sent
    user = await me(app)
    assert await app.services.current_model_id(user) == "anthropic/claude-3.5-haiku"
    assert await _attachments(app) == 1


async def test_someone_else_cannot_press_the_offer(app: Harness) -> None:
    offer = await _offer(app)
    other = 2002
    app.tg.user(other, first_name="Bob", language_code="en")
    query_id = app.tg.press(
        other, offer.message_id, app.button(offer, "dc:f:"), chat_id=USER, forge=True
    )
    query = app.tg.callback_queries[query_id]
    await until(lambda: query.answered)
    assert query.text == "This button is not for you."
    assert app.llm.requests_count == 0


async def test_a_scanned_pdf_and_an_encrypted_pdf_get_different_clear_replies(
    app: Harness,
) -> None:
    scanned = await bot_reply(
        app,
        lambda: app.tg.send_document(
            USER, scanned_pdf(4), file_name="scan.pdf", mime_type="application/pdf"
        ),
    )
    assert (scanned.text or "").startswith("That PDF (4 pages) has no text layer: it looks scanned")
    locked = await bot_reply(
        app,
        lambda: app.tg.send_document(
            USER,
            pdf(["top secret"], password="hunter2"),
            file_name="locked.pdf",
            mime_type="application/pdf",
        ),
    )
    assert (locked.text or "").startswith("That document is protected by a password")
    assert app.llm.requests_count == 0
    assert await _quota_used(app) == 0
    assert await _attachments(app) == 0
    assert (await me(app)).current_conversation_id is None


async def test_a_binary_file_named_txt_is_refused(app: Harness) -> None:
    binary = b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 8
    reply = await bot_reply(
        app,
        lambda: app.tg.send_document(USER, binary, file_name="notes.txt", mime_type="text/plain"),
    )
    assert (reply.text or "").startswith("That file is not text I can read")
    assert app.llm.requests_count == 0
    assert await _quota_used(app) == 0


async def test_a_source_file_is_read_by_its_content(app: Harness) -> None:
    code = b"def add(a, b):\n    return a + b\n"
    await _send_document(app, code, "add.bin", "application/octet-stream", "Explain it")
    await app.answered()
    assert "def add(a, b):" in _last_user_turn(app)


async def test_an_oversized_file_is_refused_without_a_download(app: Harness) -> None:
    big = b"%PDF-1.7\n" + b"0" * (21 * MB)
    reply = await bot_reply(
        app,
        lambda: app.tg.send_document(USER, big, file_name="huge.pdf", mime_type="application/pdf"),
    )
    assert reply.text == (
        "That file is 21.0 MB; I can read documents up to 20 MB. "
        "Please send a smaller file or only the part you need."
    )
    assert not app.tg.calls_of("getFile")
    assert app.llm.requests_count == 0


async def test_the_json_export_names_the_attachment(app: Harness) -> None:
    await _send_document(app, b"a,b\n1,2\n", "data.csv", "text/csv", "Sum column b")
    await app.answered()
    from core.conversations.export import export_json

    user = await me(app)
    assert user.current_conversation_id is not None
    document = json.loads(await export_json(app.services.db, user.id, user.current_conversation_id))
    prompt = next(m for m in document["messages"] if m["role"] == "user")
    assert prompt["attachment"] == {
        "name": "data.csv",
        "mime_type": "text/csv",
        "size_bytes": 8,
        "pages": None,
        "chars": 7,
    }
