"""`oneai chat`: a terminal chat on the same services the bots use.

Reads lines from stdin (a terminal or a pipe); lines starting with `/` are commands.
Answers stream to stdout as they arrive. Ends with exit code 0 at end of input. A line
that fails gets one line starting with "!" and the chat goes on with the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import mimetypes
import shlex
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import BinaryIO, TextIO

from core.accounts import PlatformProfile
from core.chat import Generation
from core.conversations.export import export_json
from core.conversations.turns import AttachmentUse
from core.db.models import ChatMessage, User
from core.documents.flow import offer_text
from core.documents.service import Pending, question_of
from core.errors import OneAIError
from core.i18n import pick_language, t
from core.llm.catalog import ModelChoiceError
from core.llm.citations import Citation, from_meta, plain_lines
from core.notices import format_date
from core.services import Services
from core.text import decode_lenient
from core.tiers import Tier
from core.views import Platform
from core.views.cancel import cancel
from core.views.history import export_current, history_page, open_conversation, rename_current
from core.views.models import ModelScope, menu_for, switch_model
from core.views.modes import mode_menu, switch_mode
from core.views.search import search_refusal, toggle_web_search
from core.views.settings import settings_view
from core.views.usage import usage_report
from core.voice import VoiceNote
from payments.offers import plan_page

log = logging.getLogger(__name__)

# The terminal's model list: `oneai models` (Telegram's /model does not exist here).
MODELS_COMMAND = "`oneai models`"
PLATFORM: Platform = "console"
HISTORY_PAGE = 10
# The largest recording /voice reads.
CONSOLE_AUDIO_MAX_BYTES = 25 * 1024 * 1024

HELP = """Commands:
  /new              start a new conversation
  /regen            regenerate the last answer
  /edit TEXT        edit your last message and get a new answer
  /rev N            show revision N of the last answer and make it current
  /history [PAGE]   list your conversations (newest first)
  /open N           continue conversation N of /history
  /rename TITLE     rename this conversation
  /show             print the current conversation
  /usage            your quotas
  /plan             your plan and every plan
  /settings         your system prompt, default model and language
  /model ID         use another model (this conversation and new ones)
  /models           list the models
  /mode [ID]        this conversation's chat mode, or use mode ID (- : your own prompt)
  /modes            list the chat modes
  /cancel           stop an answer of yours that streams elsewhere
  /export [json]    print the conversation as Markdown (or JSON with every revision)
  /search QUESTION  ask with a web search (where the server offers it)
  /websearch        switch web search for every answer in this conversation
  /voice FILE       transcribe a recording (ogg, mp3, m4a, wav, ...) and send its text
  /file PATH [Q]    send a document (PDF, DOCX, text) with question Q (default: summarize)
  /first, /bigger   a document too long for the model: its first part, or a larger model
  /help             this text
  /quit             leave
Anything else is sent to the model. Ctrl-C stops an answer that is streaming."""


def terminal_message(error: OneAIError) -> str:
    """What the terminal says for an error: its message, with the terminal's own name
    for the model list where it points to one."""
    if isinstance(error, ModelChoiceError):
        return error.pointing_to(MODELS_COMMAND)
    return error.user_message


def _file_size(name: str) -> tuple[Path, int]:
    path = Path(name).expanduser()
    return path, path.stat().st_size


class ConsoleChat:
    def __init__(
        self,
        services: Services,
        *,
        user_name: str | None = None,
        model: str | None = None,
        stdin: BinaryIO | None = None,
        stdout: TextIO | None = None,
        interactive: bool | None = None,
        log_file: Path | None = None,
    ) -> None:
        """`stdin` is read as bytes: a pipe may carry anything. `interactive` (prompts,
        Ctrl-C stops an answer) defaults to whether stdin is a terminal; `log_file` is
        where logging goes meanwhile, said once at the start."""
        self.services = services
        self.user_name = user_name or _local_user()
        self.initial_model = model
        self.stdin = stdin or sys.stdin.buffer
        self.out = stdout or sys.stdout
        self.interactive = self.stdin.isatty() if interactive is None else interactive
        self.log_file = log_file
        self.user: User | None = None
        self.conversation_id: uuid.UUID | None = None
        self._history_ids: list[uuid.UUID] = []
        self._current: Generation | None = None
        self._document: Pending | None = None  # a document waiting for /first or /bigger

    # -- I/O ----------------------------------------------------------------------------

    def write(self, text: str = "", end: str = "\n") -> None:
        self.out.write(text + end)
        self.out.flush()

    async def _readline(self) -> str | None:
        if self.interactive:
            self.out.write("you> ")
            self.out.flush()
        raw = await asyncio.to_thread(self.stdin.readline)
        # Invalid UTF-8 and NUL become U+FFFD: one odd line must not end the session.
        return None if raw == b"" else decode_lenient(raw).rstrip("\r\n")

    # -- main loop ------------------------------------------------------------------

    async def run(self) -> int:
        self.user = await self.services.accounts.upsert(
            PlatformProfile("cli", self.user_name, username=self.user_name)
        )
        if self.initial_model:
            await self._set_model(self.initial_model, ModelScope.DEFAULT)
        current = await self.services.conversations.current(self.user.id)
        self.conversation_id = current.id if current else None
        if self.interactive:
            self.write(f"OneAI playground — model {await self._model_id()}. /help lists commands.")
            if self.log_file is not None:
                self.write(f"(Logs go to {self.log_file}.)")
        self._install_interrupt()
        while True:
            line = await self._readline()
            if line is None:
                break
            line = line.strip()
            if not line:
                continue
            try:
                if line.startswith("/"):
                    if not await self._command(line):
                        break
                else:
                    await self._send(line)
            except OneAIError as exc:
                self.write(f"! {terminal_message(exc)}")
            except Exception as exc:
                # A fault behind one line (a bug, the database) must not end the chat.
                log.warning("%r failed", line[:80], exc_info=log.isEnabledFor(logging.DEBUG))
                reason = (str(exc).splitlines() or [""])[0][:200]
                self.write(f"! Sorry, that went wrong ({type(exc).__name__}: {reason}).")
        return 0

    def _install_interrupt(self) -> None:
        if not self.interactive:
            return
        # Not available on Windows loops or off the main thread: Ctrl+C then ends
        # the chat instead of stopping the answer, which is all that is lost.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._interrupt)

    def _interrupt(self) -> None:
        if self._current is not None:
            self._current.stop()
        else:
            raise KeyboardInterrupt

    @property
    def _uid(self) -> int:
        assert self.user is not None
        return self.user.id

    @property
    def lang(self) -> str:
        return pick_language(self.user.language if self.user else None)

    async def _fresh_user(self) -> User:
        """The person as stored now (their plan may have changed meanwhile)."""
        user = await self.services.accounts.get(self._uid)
        assert user is not None
        self.user = user
        return user

    # -- generations -------------------------------------------------------------------

    async def _send(self, text: str) -> None:
        await self._stream(
            lambda: self.services.chat.send(
                self._uid, text, conversation_id=self.conversation_id, platform="cli"
            )
        )

    async def _cmd_search(self, arg: str) -> None:
        refusal = search_refusal(self.services, self.lang, arg)
        if refusal is not None:
            self.write(f"! {refusal}")
            return
        await self._stream(
            lambda: self.services.chat.send(
                self._uid,
                arg.strip(),
                conversation_id=self.conversation_id,
                platform="cli",
                web_search=True,
            )
        )

    async def _cmd_websearch(self, _arg: str) -> None:
        """Switch web search for the current conversation."""
        self.write(await toggle_web_search(self.services, await self._fresh_user(), self.lang))

    def _sources(self, citations: Sequence[Citation]) -> None:
        if citations:
            self.write(t(self.lang, "search.sources"))
            for line in plain_lines(citations):
                self.write(line)

    async def _stream(self, start: Callable[[], Awaitable[Generation]]) -> None:
        generation = await start()
        self.conversation_id = generation.turn.conversation.id
        self._current = generation
        self.write(f"[{generation.turn.model.name}] ", end="")
        try:
            async for delta in generation.stream():
                self.out.write(delta)
                self.out.flush()
        finally:
            self._current = None
        result = generation.result
        assert result is not None
        self.write()
        if result.status == "cancelled":
            self.write("(stopped)")
        elif result.error is not None:
            self.write(f"! {result.error.user_message}")
        elif result.status != "complete":
            self.write(f"! The answer was {result.status}.")
        self._sources(generation.citations)
        await self._revision_hint(generation.message_id)

    async def _revision_hint(self, message_id: uuid.UUID) -> None:
        revisions = await self.services.conversations.revisions(self._uid, message_id)
        if len(revisions.items) > 1:
            self.write(f"(revision {revisions.label} — /rev N shows another)")

    # -- commands ---------------------------------------------------------------------

    async def _command(self, line: str) -> bool:
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        name = name.lower()
        handlers: dict[str, Callable[[str], Awaitable[None]]] = {
            "/new": self._cmd_new,
            "/regen": self._cmd_regen,
            "/edit": self._cmd_edit,
            "/rev": self._cmd_rev,
            "/history": self._cmd_history,
            "/open": self._cmd_open,
            "/rename": self._cmd_rename,
            "/show": self._cmd_show,
            "/usage": self._cmd_usage,
            "/plan": self._cmd_plan,
            "/settings": self._cmd_settings,
            "/model": self._cmd_model,
            "/models": self._cmd_models,
            "/mode": self._cmd_mode,
            "/modes": self._cmd_modes,
            "/cancel": self._cmd_cancel,
            "/export": self._cmd_export,
            "/search": self._cmd_search,
            "/websearch": self._cmd_websearch,
            "/voice": self._cmd_voice,
            "/file": self._cmd_file,
            "/first": self._cmd_first,
            "/bigger": self._cmd_bigger,
            "/help": self._cmd_help,
        }
        if name in ("/quit", "/exit"):
            return False
        handler = handlers.get(name)
        if handler is None:
            self.write(f"! Unknown command {name}. /help lists the commands.")
            return True
        await handler(arg)
        return True

    async def _cmd_voice(self, arg: str) -> None:
        """A recording from a file, as a voice note: transcribed, shown, sent."""
        if not arg:
            self.write("! Usage: /voice FILE")
            return
        try:
            path, size = await asyncio.to_thread(_file_size, arg)
        except OSError as exc:
            self.write(f"! {arg}: {exc.strerror or exc}")
            return
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        # A file states no length: it is counted by its size, like a Discord audio file.
        note = VoiceNote(None, size, CONSOLE_AUDIO_MAX_BYTES, path.name, mime)

        def read() -> bytes:
            with path.open("rb") as file:
                return file.read(CONSOLE_AUDIO_MAX_BYTES + 1)

        async def fetch() -> bytes | None:
            return await asyncio.to_thread(read)

        user = await self._fresh_user()
        voice = self.services.voice
        hold, text = await voice.take(self._uid, Tier(user.tier), note, fetch)
        self.write(f"🎤 {text}")
        written = False

        async def start() -> Generation:
            nonlocal written
            generation = await self.services.chat.send(
                self._uid, text, conversation_id=self.conversation_id, platform="cli"
            )
            written = True
            return generation

        try:
            await self._stream(start)
        finally:
            if not written:  # no prompt came of it: the note costs nothing
                await voice.give_back(hold)

    async def _cmd_help(self, _arg: str) -> None:
        self.write(HELP)

    async def _cmd_new(self, _arg: str) -> None:
        self.conversation_id = None
        await self.services.accounts.set_current_conversation(self._uid, None)
        self.write("New conversation. Say something.")

    async def _last_answer(self) -> ChatMessage | None:
        if self.conversation_id is None:
            return None
        return await self.services.conversations.last_answer(self._uid, self.conversation_id)

    async def _cmd_regen(self, _arg: str) -> None:
        answer = await self._last_answer()
        if answer is None:
            self.write("! There is no answer to regenerate yet.")
            return
        await self._stream(lambda: self.services.chat.regenerate(self._uid, answer.id))

    async def _cmd_edit(self, arg: str) -> None:
        if not arg:
            self.write("! Usage: /edit NEW TEXT")
            return
        if self.conversation_id is None:
            self.write("! There is no message to edit yet.")
            return
        mine = await self.services.conversations.last_user_message(self._uid, self.conversation_id)
        if mine is None:
            self.write("! There is no message to edit yet.")
            return
        await self._stream(lambda: self.services.chat.edit(self._uid, mine.id, arg))

    async def _cmd_rev(self, arg: str) -> None:
        answer = await self._last_answer()
        if answer is None:
            self.write("! There is no answer yet.")
            return
        revisions = await self.services.conversations.revisions(self._uid, answer.id)
        if not arg.isdigit() or not 1 <= int(arg) <= len(revisions.items):
            self.write(f"! Usage: /rev N, where N is 1 to {len(revisions.items)}.")
            return
        await self.services.conversations.switch_revision(self._uid, answer.id, int(arg))
        shown = await self.services.conversations.revisions(self._uid, answer.id)
        self.write(f"(revision {shown.label})")
        if label := await self.services.documents.label_of(shown.current, self.lang):
            self.write(label)
        self.write(shown.current.content or "(no text)")
        self._sources(from_meta(shown.current.meta))

    async def _cmd_history(self, arg: str) -> None:
        page = await history_page(
            self.services, self._uid, self.lang, int(arg) if arg.isdigit() else 1, HISTORY_PAGE
        )
        if page.empty:
            self.write("No conversations yet.")
            return
        self._history_ids = [entry.id for entry in page.entries]
        for index, entry in enumerate(page.entries, start=1):
            mark = "*" if entry.current else " "
            self.write(f"{mark}{index:>2}. {entry.title}  ({entry.last_active:%Y-%m-%d %H:%M})")
        if page.pages > 1:
            self.write(f"page {page.page}/{page.pages} — /history N for page N")
        self.write("/open N continues one.")

    async def _cmd_open(self, arg: str) -> None:
        if not arg.isdigit() or not 1 <= int(arg) <= len(self._history_ids):
            self.write("! Usage: /open N, with N from /history.")
            return
        conversation_id = self._history_ids[int(arg) - 1]
        conversation = await open_conversation(self.services, self._uid, conversation_id)
        self.conversation_id = conversation.id
        self.write(f"Continuing “{conversation.title}”.")

    async def _cmd_rename(self, arg: str) -> None:
        self.write(await rename_current(self.services, self._uid, arg, self.lang))

    async def _cmd_show(self, _arg: str) -> None:
        if self.conversation_id is None:
            self.write("No conversation yet.")
            return
        for row in await self.services.conversations.active_path(self.conversation_id):
            who = "you" if row.role == "user" else "assistant"
            if row.role == "user" and row.attachment_id is not None:
                self.write(f"{who}> {await self.services.documents.label_of(row, self.lang)}")
            self.write(f"{who}> {row.content}")

    async def _cmd_usage(self, _arg: str) -> None:
        report = await usage_report(self.services, self._uid, self.lang)
        until = f", until {format_date(report.period_end)}" if report.period_end else ""
        self.write(f"Plan: {report.plan}{until}")
        for quota in report.quotas:
            used, limit, remaining = quota.amounts
            self.write(
                f"  {quota.label.lower()}: {used}/{limit} used, "
                f"{remaining} left, resets {quota.when}"
            )

    async def _cmd_plan(self, _arg: str) -> None:
        # Nothing is sold in a terminal: an operator grants plans with `oneai grant`.
        page = await plan_page(self.services, None, self._uid, PLATFORM, self.lang)
        self.write(page.text)

    async def _cmd_settings(self, _arg: str) -> None:
        self.write(settings_view(self.services, await self._fresh_user(), self.lang).text)

    async def _cmd_cancel(self, _arg: str) -> None:
        self.write((await cancel(self.services, self._uid, self.lang, pending=False)).text)

    async def _model_id(self) -> str:
        menu = await menu_for(
            self.services, await self._fresh_user(), self.lang, ModelScope.CONVERSATION
        )
        return menu.current

    async def _set_model(self, model_id: str, scope: ModelScope) -> None:
        user = await self._fresh_user()
        await switch_model(self.services, user, model_id, self.lang, scope)

    async def _cmd_model(self, arg: str) -> None:
        if not arg:
            self.write(f"Model: {await self._model_id()}. /model ID switches, /models lists.")
            return
        await self._set_model(arg, ModelScope.CONVERSATION)
        self.write(f"Model set to {arg}.")

    async def _cmd_models(self, _arg: str) -> None:
        user = await self._fresh_user()
        menu = await menu_for(self.services, user, self.lang, ModelScope.CONVERSATION)
        for group in menu.groups:
            self.write(f"{group.label}:")
            for model in group.models:
                mark = "*" if model.current else " "
                lock = f"  [{model.required_plan}]" if model.locked else ""
                self.write(f" {mark} {model.id:<45} {model.name}{lock}")

    async def _cmd_mode(self, arg: str) -> None:
        user = await self._fresh_user()
        if not arg:
            menu = await mode_menu(self.services, user, self.lang, self.conversation_id)
            self.write(f"Mode: {menu.current_label}. /mode ID switches, /modes lists.")
            return
        switched = await switch_mode(
            self.services, user, arg.lower(), self.lang, self.conversation_id, platform="cli"
        )
        # A pick before the first message makes the conversation it applies to.
        self.conversation_id = switched.conversation_id
        self.write(switched.notice)

    async def _cmd_modes(self, _arg: str) -> None:
        user = await self._fresh_user()
        menu = await mode_menu(self.services, user, self.lang, self.conversation_id)
        for choice in menu.choices:
            mark = "*" if choice.current else " "
            self.write(f" {mark} {choice.id:<14} {choice.label}")

    async def _cmd_export(self, arg: str) -> None:
        if self.conversation_id is None:
            self.write("No conversation yet.")
            return
        if arg.lower() == "json":
            self.write(await export_json(self.services.db, self._uid, self.conversation_id))
        elif (exported := await export_current(self.services, self._uid)) is not None:
            self.write(exported.content)

    # -- documents ------------------------------------------------------------------------

    async def _cmd_file(self, arg: str) -> None:
        try:
            parts = shlex.split(arg)
        except ValueError:
            parts = arg.split()
        if not parts:
            self.write("! Usage: /file PATH [QUESTION]")
            return
        path = Path(parts[0])
        question = question_of(" ".join(parts[1:]), self.lang)
        documents = self.services.documents
        try:
            path = await asyncio.to_thread(path.expanduser)
            size = (await asyncio.to_thread(path.stat)).st_size
        except OSError as exc:
            self.write(f"! Cannot open {path}: {exc.strerror or exc}.")
            return
        documents.check_size(size)  # before reading it
        data = await asyncio.to_thread(path.read_bytes)
        pending = await documents.receive(self._uid, path.name, None, data, question)
        fit = await documents.fit(await self._fresh_user(), pending)
        if fit.fits:
            await self._send_document(pending, None)
            return
        self._document = pending
        model = self.services.catalog.require(await self._model_id())
        self.write(offer_text(self.lang, pending.attachment.name, model, fit))
        if fit.chars > 0:
            self.write("  /first   answer from the first part")
        if fit.bigger is not None:
            self.write(f"  /bigger  switch to {fit.bigger.id} and ask again")

    async def _cmd_first(self, _arg: str) -> None:
        pending = await self._waiting_document()
        if pending is None:
            return
        fit = await self.services.documents.fit(await self._fresh_user(), pending)
        if fit.chars <= 0:
            self.write("! Nothing of it fits this model; try /bigger or /model.")
            return
        limit = None if fit.fits else fit.chars
        if limit is not None:
            self.write(f"(only the first part: about {fit.percent}% of the document)")
        await self._send_document(pending, limit)

    async def _cmd_bigger(self, _arg: str) -> None:
        pending = await self._waiting_document()
        if pending is None:
            return
        fit = await self.services.documents.fit(await self._fresh_user(), pending)
        if fit.bigger is None and not fit.fits:
            self.write("! No model on your plan takes it whole.")
            return
        if fit.bigger is not None:
            await self._set_model(fit.bigger.id, ModelScope.CONVERSATION)
            self.write(f"Model set to {fit.bigger.id}.")
        await self._send_document(pending, None)

    async def _waiting_document(self) -> Pending | None:
        if self._document is None:
            self.write("! No document is waiting. Send one with /file PATH.")
            return None
        # Checked again: it may have been used or replaced since.
        return await self.services.documents.pending(self._uid, self._document.attachment.id)

    async def _send_document(self, pending: Pending, limit: int | None) -> None:
        self._document = None
        use = AttachmentUse(pending.attachment.id, limit)
        await self._stream(
            lambda: self.services.chat.send(
                self._uid,
                pending.question,
                conversation_id=self.conversation_id,
                platform="cli",
                attachment=use,
            )
        )


def _local_user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "local"
