"""A fake Telegram Bot API server, over real HTTP, for end-to-end tests.

The real aiogram stack (Bot, AiohttpSession, Dispatcher.start_polling or the
webhook handler) talks to it instead of api.telegram.org:

    async with FakeTelegram(per_chat_interval=None) as tg:
        bot = Bot(tg.token, session=AiohttpSession(api=TelegramAPIServer.from_base(tg.url)))
        ...start polling...
        tg.send_text(42, "hello")                       # the user writes to the bot
        reply = await tg.wait_for_call("sendMessage", chat_id=42)
        assert tg.messages(42)[-1].text == "Echo: hello"

Every request is recorded in `calls` (in completion order) with its decoded
params and the JSON answered. `messages(chat_id)` is what the user would see
in the chat right now (edits applied, deletions gone).

Where it behaves like Telegram:

- `/bot{token}/{method}` (GET or POST, JSON / urlencoded / multipart bodies;
  JSON-ish form fields such as `reply_markup` are decoded; `attach://` file
  references are resolved). Method names are case-insensitive. Wrong token ->
  401, unknown method -> 404. Files download from `/file/bot{token}/{path}`.
- `getUpdates` long-polls: `offset` confirms (drops) older updates,
  `timeout` waits for an update, `limit` and `allowed_updates` (persisted
  between calls, default: all but chat_member and reactions) apply. A new
  getUpdates ends a still-waiting older one with 409 Conflict, and getUpdates
  is refused with 409 while a webhook is set. Undelivered updates stay queued
  until confirmed, so a restarted poller gets them again.
- Each chat numbers its messages from 1, shared by the bot and the user.
  Sending to a chat the bot has never seen -> 400 "chat not found" (inject an
  update or call `user()` first).
- Text is trimmed of leading/trailing whitespace (entities shifted/clipped),
  as Telegram does. Checks: empty -> "message text is empty"; over 4096 UTF-16
  code units after entity parsing -> "message is too long"; captions over 1024 ->
  "message caption is too long". Entities are validated in UTF-16 units
  (in bounds, length > 0, known type, not splitting a surrogate pair -- the
  last is stricter than Telegram, which silently adjusts). A parse_mode wins
  over explicit entities, which are then ignored, as in the Bot API
  (get_formatted_text in telegram-bot-api's Client.cpp).
- Links are checked as Telegram checks them (a port of tdlib's parse_url and
  LinkManager::check_link): http/https need a host with a dot (or an IPv6
  address), a valid port and allowed host characters; tg:/ton:/tonsite: need a
  plain host; every other scheme is refused. The URL stored is Telegram's
  normalized one (`https://x.org` -> `https://x.org/`, host lower-cased, a bare
  `x.org` -> `http://x.org/`), and `tg://user?id=N` becomes a text_mention.
  * An explicit `text_link` entity with a refused URL -> 400 with Telegram's
    wording, "Bad Request: entity URL '<url>' is invalid: <reason>", the reason
    one of "URL host is empty" (`/etc/app.conf`, `#intro`, ``), "Wrong HTTP URL"
    (`docs/a.md`, `http://localhost`), "Wrong port number specified in the URL"
    (`javascript:alert(1)`, `data:text/html,x`, `D:/a.md:1`), "Unsupported URL
    protocol" (`ftp://x.org`, `file:///etc`), "Host is invalid" (`./a.md`),
    "Disallowed character in URL host", "Wrong tg URL", ...
  * A link written in parse_mode MarkdownV2/HTML/Markdown with a refused URL is
    no error: Telegram keeps its text and drops the link (tdlib uses
    get_checked_link there), and so does the fake. `<a>` without href links to
    its own text, as `[https://x.y]` does in MarkdownV2.
- `refuse_entities_once()` makes the next text carrying entities fail with a
  400 about them (`ENTITIES_REFUSED` by default): Telegram refusing formatting
  for a reason a bot cannot foresee.
- parse_mode MarkdownV2, HTML and legacy Markdown are parsed into plain text
  + entities. They are approximations of Telegram's parsers: MarkdownV2
  requires `_*[]()~`>#+-=|{}.!` to be escaped outside markup (a `\\` escapes
  any ASCII character, also inside code/pre and link URLs); the newline
  before a closing ``` stays in the text but not in the pre entity (the model
  telegramify-markdown round-trips with); nesting is not checked beyond what
  the closing rules imply; "Can't find end of X entity" is reported for
  unclosed markup. HTML knows Telegram's tags and the
  `&lt; &gt; &amp; &quot; &#N; &#xN;` entities only.
- Editing: "message to edit not found", "message can't be edited" (not the
  bot's), "there is no text in the message to edit", and the full "message is
  not modified" error. As in Telegram, an edit without `reply_markup` removes
  the inline keyboard.
- Inline keyboards: callback_data must be 1-64 bytes (BUTTON_DATA_INVALID).
- `block(chat_id)` -> 403 "Forbidden: bot was blocked by the user" (and a
  my_chat_member update).
- sendMessageDraft (private chats, non-zero draft_id, empty text allowed):
  `draft(chat_id)` is the preview shown; a sent message replaces it.
- Webhooks: setWebhook needs an https URL (as Telegram); tests push updates
  with `deliver_webhook(url, ...)`, and a method returned in the webhook
  reply is executed like Telegram does.
- Flood control (methods in `rate_limited_methods`: sends and edits, not
  chat actions, deletions or drafts): at most one success per chat every
  `per_chat_interval` seconds (default 1.0) and `global_per_second` (default
  30) successes in any 1 s window, None switching either off;
  `flood_storm(method, k)` answers the next k calls with 429. Every 429 is in
  `floods`.
  `retry_after` on the wire is always an int >= 1, like Telegram: aiogram's
  ResponseParameters.retry_after is an `int`, so a fractional value fails
  validation (ClientDecodeError), and 0 is falsy so aiogram would not raise
  TelegramRetryAfter at all. For fast tests the window the fake actually
  enforces is the configured interval (e.g. 0.05 s), so a client that retries
  early succeeds; patch the bot's sleep if it honours retry_after literally.
- Payments: sendInvoice / createInvoiceLink (Stars: currency XTR, empty
  provider_token, exactly one price; subscription_period only 2592000 with
  XTR), answerPreCheckoutQuery (recorded with the delay since the query was
  delivered; later than `pre_checkout_timeout` -> "query is too old"),
  refundStarPayment (CHARGE_NOT_FOUND for a charge this user never paid,
  CHARGE_ALREADY_REFUNDED the second time; a refund puts the refunded_payment
  service message in the buyer's chat, as Telegram does), editUserStarSubscription.
  The Stars error names are approximations of Telegram's.

Not modelled: inline mode, channels, media groups, other methods (404).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import json
import math
import mimetypes
import re
import struct
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from tests.fakes.base import LocalServer

DEFAULT_TOKEN = "123456789:AAFakeTelegramTokenForTests_0123456789"
DEFAULT_GROUP_ID = -1001234567890
# The wait_* helpers give up after this long, so a broken test fails instead of hanging.
WAIT_LIMIT = 5.0

MAX_TEXT = 4096  # UTF-16 code units, after entity parsing
MAX_CAPTION = 1024
MAX_CALLBACK_DATA = 64  # bytes
STARS_SUBSCRIPTION_PERIOD = 2592000  # the only period Telegram accepts (30 days)
DRAFT_LIFETIME = 30.0  # a draft is an ephemeral preview

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup"
    " of the specified message are exactly the same as a current content and reply markup"
    " of the message"
)
# What `refuse_entities_once` answers by default: the shape of Telegram's complaints
# about explicit entities ("Entity beginning at UTF-16 offset ..." in tdlib).
ENTITIES_REFUSED = (
    "Bad Request: entity beginning at UTF-16 offset 0 ends after the end of the text"
    " at UTF-16 offset 1"
)
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"

ENTITY_TYPES = frozenset(
    {
        "mention",
        "hashtag",
        "cashtag",
        "bot_command",
        "url",
        "email",
        "phone_number",
        "bold",
        "italic",
        "underline",
        "strikethrough",
        "spoiler",
        "blockquote",
        "expandable_blockquote",
        "code",
        "pre",
        "text_link",
        "text_mention",
        "custom_emoji",
        "date_time",
    }
)
_ENTITY_KEYS = (
    "type",
    "offset",
    "length",
    "url",
    "user",
    "language",
    "custom_emoji_id",
    "unix_time",
    "date_time_format",
)
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
# Update types Telegram leaves out unless asked for explicitly.
_OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

# Form fields that are plain strings; everything else in a form is JSON-decoded
# when it parses (numbers, booleans, reply_markup, entities, ...).
_STRING_FIELDS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "action",
        "callback_query_id",
        "pre_checkout_query_id",
        "inline_message_id",
        "url",
        "secret_token",
        "ip_address",
        "title",
        "description",
        "payload",
        "provider_token",
        "currency",
        "start_parameter",
        "error_message",
        "language_code",
        "telegram_payment_charge_id",
        "file_id",
        "business_connection_id",
        "message_effect_id",
        "emoji",
        "photo_url",
    }
)
# Fields a JSON body may still carry as JSON strings (Telegram accepts both).
_JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "entities",
        "caption_entities",
        "reply_parameters",
        "link_preview_options",
        "prices",
        "commands",
        "scope",
        "allowed_updates",
        "suggested_tip_amounts",
    }
)

RATE_LIMITED_METHODS = frozenset(
    {
        "sendMessage",
        "editMessageText",
        "editMessageReplyMarkup",
        "sendDocument",
        "sendPhoto",
        "sendInvoice",
    }
)

_T = TypeVar("_T")
JSON = dict[str, Any]


# -- errors --------------------------------------------------------------------


class ApiError(Exception):
    """A Bot API error answer; handlers raise it, the server turns it into JSON."""

    def __init__(self, code: int, description: str, *, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after

    def body(self) -> JSON:
        body: JSON = {"ok": False, "error_code": self.code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def _bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


class _ParseError(Exception):
    """A parse_mode error; the text follows "can't parse entities: "."""


# -- text, entities and parse modes --------------------------------------------


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's limits and offsets."""
    return len(text.encode("utf-16-le")) // 2


def _utf16_boundaries(text: str) -> set[int]:
    """UTF-16 offsets that fall between characters (not inside a surrogate pair)."""
    bounds = {0}
    position = 0
    for char in text:
        position += 2 if ord(char) > 0xFFFF else 1
        bounds.add(position)
    return bounds


def _sorted_entities(entities: list[JSON]) -> list[JSON]:
    # Telegram answers entities ordered by offset, outer ones first; the type breaks
    # ties so equal sets compare equal ("message is not modified").
    return sorted(entities, key=lambda e: (e["offset"], -e["length"], e["type"]))


# -- links ---------------------------------------------------------------------
# A port of what Telegram checks in a link (tdlib: parse_url in tdutils/td/utils/
# HttpUrl.cpp, LinkManager::check_link_impl and LinkManager::get_link_user_id in
# td/telegram/LinkManager.cpp). The messages are Telegram's, word for word.


class LinkError(Exception):
    """Why Telegram refuses a link, e.g. "URL host is empty"."""


_URL_PART_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_!$,~*'();&+="
)
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_TD_SPACES = " \t\r\n\0\v"  # td::is_space


@dataclass(frozen=True)
class HttpUrl:
    protocol: str  # "http" or "https"
    userinfo: str
    host: str  # lower-cased (ASCII only, as tdlib does)
    is_ipv6: bool
    specified_port: int  # 0: none given
    query: str  # starts with "/"

    def url(self) -> str:
        userinfo = f"{self.userinfo}@" if self.userinfo else ""
        port = f":{self.specified_port}" if self.specified_port else ""
        return f"{self.protocol}://{userinfo}{self.host}{port}{self.query}"


def _check_url_part(part: str, name: str, *, allow_colon: bool) -> None:
    i = 0
    while i < len(part):
        char = part[i]
        if char in _URL_PART_CHARS or (allow_colon and char == ":") or ord(char) >= 128:
            i += 1
            continue
        if char == "%":
            if part[i + 1 : i + 2] in _HEX_DIGITS and part[i + 2 : i + 3] in _HEX_DIGITS:
                i += 3
                continue
            raise LinkError(f"Wrong percent-encoded symbol in URL {name}")
        raise LinkError(f"Disallowed character in URL {name}")


def _port(value: str) -> int:
    """td::to_integer_safe<int>: only the canonical spelling of an int parses; -1 if not."""
    while len(value) > 1 and value[0] == "0":
        value = value[1:]
    if not re.fullmatch(r"-?[0-9]+", value) or value == "-0":
        return -1
    number = int(value)
    return number if -(2**31) <= number < 2**31 and number != 0 else -1


def parse_url(url: str) -> HttpUrl:
    """tdlib's parse_url: [http[s]://][userinfo@]host[:port][/query]."""
    scheme_end = next((i for i, c in enumerate(url) if c in ":/?#@[]"), len(url))
    rest = url
    protocol = "http"  # the default when no "scheme://" is given
    if url.startswith("://", scheme_end):
        scheme = url[:scheme_end].translate(_ASCII_LOWER)
        if scheme not in ("http", "https"):
            raise LinkError("Unsupported URL protocol")
        protocol, rest = scheme, url[scheme_end + 3 :]
    authority_end = next((i for i, c in enumerate(rest) if c in "/?#"), len(rest))
    authority, query = rest[:authority_end], rest[authority_end:]

    port = 0
    colon = len(authority) - 1
    while colon > 0 and authority[colon] not in ":]@":
        colon -= 1
    userinfo_host = authority
    if colon > 0 and authority[colon] == ":":
        port = _port(authority[colon + 1 :])
        userinfo_host = authority[:colon]
    if not 0 <= port <= 65535:
        raise LinkError("Wrong port number specified in the URL")

    userinfo, _, host = userinfo_host.rpartition("@")
    is_ipv6 = False
    if host.startswith("[") and host.endswith("]") and len(host) > 1:
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise LinkError("Wrong IPv6 address specified in the URL") from None
        is_ipv6 = True
    if not host:
        raise LinkError("URL host is empty")
    if host == ".":
        raise LinkError("Host is invalid")

    query = query.rstrip(_TD_SPACES) or "/"
    if not query.startswith("/"):
        query = "/" + query
    query = "".join(f"%{ord(c):02X}" if ord(c) <= 0x20 else c for c in query)

    host = host.translate(_ASCII_LOWER)
    if is_ipv6:
        if any(c not in "0123456789abcdef:." for c in host[1:-1]):
            raise LinkError("Wrong IPv6 URL host")
    else:
        _check_url_part(host, "host", allow_colon=False)
        _check_url_part(userinfo, "userinfo", allow_colon=True)
    return HttpUrl(protocol, userinfo, host, is_ipv6, port, query)


def check_link(link: str) -> str:
    """The URL Telegram stores for a link (normalized), or LinkError with its reason.

    http and https links need a host with a dot (or an IPv6 address); tg:, ton: and
    tonsite: links need a plain host. Anything else is refused: a path, a
    fragment, another scheme (`javascript:` reads as a host and a bad port).
    """
    lowered = link.translate(_ASCII_LOWER)
    kind = next((k for k in ("tg", "ton", "tonsite") if lowered.startswith(k + ":")), "")
    rest = link[len(kind) + 1 :] if kind else link
    if kind and rest.startswith("//"):
        rest = rest[2:]
    url = parse_url(rest)
    if kind:
        if (
            rest.translate(_ASCII_LOWER).startswith("http://")
            or url.protocol == "https"
            or url.userinfo
            or url.specified_port
            or url.is_ipv6
        ):
            raise LinkError("Wrong tg URL" if kind == "tg" else "Wrong ton URL")
        query = url.query[1:] if url.query.startswith("/?") else url.query
        allowed = "-_." if kind == "tonsite" else "-_"
        if any(not (c.isascii() and c.isalnum()) and c not in allowed for c in url.host):
            raise LinkError("Unallowed characters in URL host")
        return f"{kind}://{url.host}{query}"
    if "." not in url.host and not url.is_ipv6:
        raise LinkError("Wrong HTTP URL")
    return url.url()


def link_user_id(link: str) -> int | None:
    """The user a tg://user?id=N link names (Telegram makes it a text mention)."""
    url = link.lower()
    if not url.startswith("tg:"):
        return None
    url = url[3:].removeprefix("//")
    if not url.startswith("user") or (len(url) > 4 and url[4] not in "/?#"):
        return None
    url = url[4:].removeprefix("/")
    if not url.startswith("?"):
        return None
    for parameter in url[1:].split("#", 1)[0].split("&"):
        key, _, value = parameter.partition("=")
        if key == "id":
            valid = re.fullmatch(r"[1-9][0-9]{0,12}", value) and int(value) < 2**40
            return int(value) if valid else None
    return None


def parsed_link(url: str) -> JSON | None:
    """What a parse_mode link becomes: Telegram drops a link it refuses and keeps
    the text (no error), and turns tg://user?id=N into a text mention."""
    user_id = link_user_id(url)
    if user_id is not None:
        return {"type": "text_mention", "user": {"id": user_id}}
    try:
        return {"type": "text_link", "url": check_link(url)}
    except LinkError:
        return None


def check_entities(text: str, entities: Any) -> list[JSON]:
    """Validate explicit entities against `text`; returns them normalized."""
    if entities is None:
        return []
    if not isinstance(entities, list):
        raise _bad("can't parse entities JSON object")
    size = utf16_len(text)
    bounds = _utf16_boundaries(text)
    result: list[JSON] = []
    for index, raw in enumerate(entities):
        if not isinstance(raw, dict):
            raise _bad("can't parse entities JSON object")
        kind, offset, length = raw.get("type"), raw.get("offset"), raw.get("length")
        where = f"entity {index} ({kind})"
        if kind not in ENTITY_TYPES:
            raise _bad(f"can't parse entities: unsupported entity type {kind!r} at index {index}")
        if not (isinstance(offset, int) and isinstance(length, int)) or isinstance(offset, bool):
            raise _bad(f"can't parse entities: {where} has no valid offset and length")
        if offset < 0 or length <= 0 or offset + length > size:
            raise _bad(
                f"can't parse entities: {where} with offset {offset} and length {length}"
                f" is out of the text bounds (UTF-16 length {size})"
            )
        if offset not in bounds or offset + length not in bounds:
            raise _bad(
                f"can't parse entities: {where} with offset {offset} and length {length}"
                " splits a UTF-16 surrogate pair"
            )
        if kind == "text_link" and not isinstance(raw.get("url"), str):
            raise _bad(f"can't parse entities: {where} has no url")
        if kind == "text_mention" and not isinstance(raw.get("user"), dict):
            raise _bad(f"can't parse entities: {where} has no user")
        if kind == "custom_emoji" and not raw.get("custom_emoji_id"):
            raise _bad(f"can't parse entities: {where} has no custom_emoji_id")
        entity = {key: raw[key] for key in _ENTITY_KEYS if raw.get(key) is not None}
        if kind == "text_link":
            entity = _explicit_link(entity)
        result.append(entity)
    return _sorted_entities(result)


def _explicit_link(entity: JSON) -> JSON:
    """A text_link entity as Telegram stores it, or its 400 for a URL it refuses."""
    url = str(entity["url"])
    user_id = link_user_id(url)
    if user_id is not None:
        mention = {k: v for k, v in entity.items() if k != "url"}
        return {**mention, "type": "text_mention", "user": {"id": user_id}}
    try:
        return {**entity, "url": check_link(url)}
    except LinkError as error:
        # tdlib: "Entity URL '...' is invalid: ..."; the Bot API lower-cases the first letter.
        raise _bad(f"entity URL '{url}' is invalid: {error}") from None


@dataclass
class _Open:
    """An entity whose end marker the parser has not reached yet."""

    kind: str
    start: int  # UTF-16 offset in the output
    source: int  # index in the source, for error messages
    part: int = 0  # index into the output parts, to recover the entity's text
    tag: str = ""
    extra: JSON = field(default_factory=dict)


class _Builder:
    """The plain text a parser produces, tracking its UTF-16 length."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pos = 0
        self.entities: list[JSON] = []

    def add(self, chunk: str) -> None:
        self.parts.append(chunk)
        self.pos += utf16_len(chunk)

    def close(self, entity: _Open, *, trim_newline: bool = False) -> None:
        end = self.pos
        if trim_newline and self.parts and self.parts[-1] == "\n":
            end -= 1  # the newline before a closing ``` stays in the text, not the block
        # Empty entities are dropped, as Telegram does.
        if end > entity.start:
            self.entities.append(
                {
                    "type": entity.kind,
                    "offset": entity.start,
                    "length": end - entity.start,
                    **entity.extra,
                }
            )

    def text_since(self, entity: _Open) -> str:
        return "".join(self.parts[entity.part :])

    def result(self) -> tuple[str, list[JSON]]:
        return "".join(self.parts), _sorted_entities(self.entities)


def _byte_offset(source: str, index: int) -> int:
    return len(source[:index].encode("utf-8"))


_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MDV2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
}
_CUSTOM_EMOJI_URL = re.compile(r"tg://emoji\?id=(\d+)")


def _mdv2_closing_width(kind: str, source: str, i: int) -> int:
    """How many source characters close `kind` at i (0: none)."""
    char = source[i]
    if kind == "bold" and char == "*":
        return 1
    if kind == "italic" and char == "_" and not source.startswith("__", i):
        return 1
    if kind == "underline" and source.startswith("__", i):
        return 2
    if kind == "strikethrough" and char == "~":
        return 1
    if kind == "spoiler" and source.startswith("||", i):
        return 2
    if kind in ("text_link", "custom_emoji") and char == "]":
        return 1
    return 0


def _mdv2_url(source: str, i: int) -> tuple[str, int]:
    """Read `(url)` starting at i; inside it only `)` and `\\` need escaping."""
    chars: list[str] = []
    j = i + 1
    while j < len(source) and source[j] != ")":
        if source[j] == "\\" and j + 1 < len(source) and 0 < ord(source[j + 1]) < 127:
            chars.append(source[j + 1])
            j += 2
        else:
            chars.append(source[j])
            j += 1
    if j >= len(source):
        raise _ParseError(f"Can't find end of a URL at byte offset {_byte_offset(source, i)}")
    return "".join(chars), j + 1


def parse_markdown_v2(source: str) -> tuple[str, list[JSON]]:
    """MarkdownV2 -> (plain text, entities); an approximation of Telegram's parser."""
    out = _Builder()
    stack: list[_Open] = []
    quote: _Open | None = None
    i, size = 0, len(source)
    while i < size:
        char = source[i]
        in_code = bool(stack) and stack[-1].kind in ("code", "pre")
        if not in_code and (i == 0 or source[i - 1] == "\n"):
            # ">" at a line start opens or continues a quote, "**>" an expandable one.
            if quote is None and source.startswith("**>", i):
                quote = _Open("expandable_blockquote", out.pos, i)
                i += 3
                continue
            if char == ">":
                quote = quote or _Open("blockquote", out.pos, i)
                i += 1
                continue
        if char == "\\" and i + 1 < size and 0 < ord(source[i + 1]) < 127:
            out.add(source[i + 1])
            i += 2
            continue
        if in_code:
            top = stack[-1]
            if top.kind == "pre" and source.startswith("```", i):
                out.close(stack.pop(), trim_newline=True)
                i += 3
            elif top.kind == "code" and char == "`":
                out.close(stack.pop())
                i += 1
            else:
                out.add(char)
                i += 1
            continue
        if char == "\n" and quote is not None and not source.startswith(">", i + 1):
            out.close(quote)  # a line without ">" ends the quote
            quote = None
        if char not in _MDV2_RESERVED:
            out.add(char)
            i += 1
            continue
        if stack and (width := _mdv2_closing_width(stack[-1].kind, source, i)):
            top = stack.pop()
            i += width
            if top.kind in ("text_link", "custom_emoji"):
                if i < size and source[i] == "(":
                    url, i = _mdv2_url(source, i)
                else:
                    url = out.text_since(top)  # "[https://x.y]" links to its own text
                if top.kind == "custom_emoji":
                    match = _CUSTOM_EMOJI_URL.fullmatch(url)
                    if match is None:
                        raise _ParseError("Custom emoji entity must contain a tg://emoji URL")
                    top.extra["custom_emoji_id"] = match.group(1)
                elif (link := parsed_link(url)) is not None:
                    top.kind = link.pop("type")
                    top.extra.update(link)
                else:
                    continue  # a refused link: its text stays, without the entity
            out.close(top)
            continue
        if (
            quote is not None
            and quote.kind == "expandable_blockquote"
            and source.startswith("||", i)
            and (i + 2 == size or source[i + 2] == "\n")
        ):
            out.close(quote)  # "||" at a line end closes an expandable quote
            quote = None
            i += 2
            continue
        if char == "`" and source.startswith("```", i):
            # ```lang\n opens a pre block; the first line names its language.
            line_end = source.find("\n", i + 3)
            language = source[i + 3 : line_end] if line_end != -1 else ""
            block = _Open("pre", out.pos, i, len(out.parts))
            if language and not any(c.isspace() or c == "`" for c in language):
                block.extra["language"] = language
                i = line_end + 1
            else:
                i = i + 4 if line_end == i + 3 else i + 3
            stack.append(block)
            continue
        if char == "_":
            kind, width = ("underline", 2) if source.startswith("__", i) else ("italic", 1)
        elif char == "*":
            kind, width = "bold", 1
        elif char == "~":
            kind, width = "strikethrough", 1
        elif char == "|" and source.startswith("||", i):
            kind, width = "spoiler", 2
        elif char == "[":
            kind, width = "text_link", 1
        elif char == "!" and source.startswith("![", i):
            kind, width = "custom_emoji", 2
        elif char == "`":
            kind, width = "code", 1
        else:
            raise _ParseError(
                f"Character '{char}' is reserved and must be escaped with the preceding '\\'"
            )
        stack.append(_Open(kind, out.pos, i, len(out.parts)))
        i += width
    if stack:
        top = stack[-1]
        raise _ParseError(
            f"Can't find end of {_MDV2_NAMES[top.kind]} entity at byte offset"
            f" {_byte_offset(source, top.source)}"
        )
    if quote is not None:
        out.close(quote)
    return out.result()


_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_HTML_START = re.compile(
    r"<([a-zA-Z][a-zA-Z0-9-]*)"
    r"((?:\s+[a-zA-Z][a-zA-Z0-9-]*(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s\"'>]+))?)*)\s*>"
)
_HTML_ATTR = re.compile(
    r"([a-zA-Z][a-zA-Z0-9-]*)(?:\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s\"'>]+)))?"
)
_HTML_END = re.compile(r"</([a-zA-Z][a-zA-Z0-9-]*)?\s*>")
_HTML_ENTITY = re.compile(r"&(?:(lt|gt|amp|quot)|#(\d{1,7})|#[xX]([0-9a-fA-F]{1,6}));")
_HTML_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def _html_char(match: re.Match[str]) -> str:
    named, decimal, hexadecimal = match.groups()
    if named:
        return _HTML_NAMED[named]
    return chr(int(decimal) if decimal else int(hexadecimal, 16))


def _html_open(tag: str, attributes: str, start: int, part: int, source_at: int) -> _Open:
    attrs = {
        m.group(1).lower(): next((g for g in m.groups()[1:] if g is not None), "")
        for m in _HTML_ATTR.finditer(attributes)
    }
    entity = _Open(_HTML_TAGS[tag], start, source_at, part, tag)
    where = f"at byte offset {source_at}"
    if tag == "span" and attrs.get("class") != "tg-spoiler":
        raise _ParseError(f'Tag "span" must have class "tg-spoiler" {where}')
    if tag == "a":
        entity.extra["url"] = attrs.get("href", "")  # checked when the tag closes
    if tag == "code" and attrs.get("class", "").startswith("language-"):
        entity.extra["language"] = attrs["class"].removeprefix("language-")
    if tag == "blockquote" and "expandable" in attrs:
        entity.kind = "expandable_blockquote"
    if tag == "tg-emoji":
        if not attrs.get("emoji-id"):
            raise _ParseError(f'Tag "tg-emoji" must have attribute "emoji-id" {where}')
        entity.extra["custom_emoji_id"] = attrs["emoji-id"]
    return entity


def parse_html(source: str) -> tuple[str, list[JSON]]:
    """Telegram's HTML -> (plain text, entities)."""
    out = _Builder()
    stack: list[_Open] = []
    i, size = 0, len(source)
    while i < size:
        char = source[i]
        if char == "&":
            match = _HTML_ENTITY.match(source, i)
            out.add(_html_char(match) if match else "&")
            i = match.end() if match else i + 1
            continue
        if char != "<":
            out.add(char)
            i += 1
            continue
        at = _byte_offset(source, i)
        if source.startswith("</", i):
            end = _HTML_END.match(source, i)
            if end is None:
                raise _ParseError(f"Unclosed end tag at byte offset {at}")
            if not stack:
                raise _ParseError(f"Unexpected end tag at byte offset {at}")
            top = stack.pop()
            name = (end.group(1) or top.tag).lower()
            if name != top.tag:
                raise _ParseError(
                    f'Unmatched end tag at byte offset {at}, expected "</{top.tag}>",'
                    f' found "</{name}>"'
                )
            if top.tag == "code" and stack and stack[-1].tag == "pre":
                # <pre><code class="language-x"> is one pre entity with a language.
                if "language" in top.extra:
                    stack[-1].extra["language"] = top.extra["language"]
            elif top.tag == "a":
                # Without href the text is the URL; a refused link stays plain text.
                link = parsed_link(top.extra.pop("url") or out.text_since(top))
                if link is not None:
                    top.kind = link.pop("type")
                    top.extra.update(link)
                    out.close(top)
            elif top.kind:
                out.close(top)
            i = end.end()
            continue
        start = _HTML_START.match(source, i)
        if start is None:
            raise _ParseError(f"Unclosed start tag at byte offset {at}")
        tag = start.group(1).lower()
        if tag not in _HTML_TAGS:
            raise _ParseError(f'Unsupported start tag "{tag}" at byte offset {at}')
        stack.append(_html_open(tag, start.group(2), out.pos, len(out.parts), at))
        i = start.end()
    if stack:
        raise _ParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].tag}"')
    return out.result()


_MD_LINK = re.compile(r"\[([^\]]*)\]\(([^)]*)\)")


def parse_markdown(source: str) -> tuple[str, list[JSON]]:
    """Legacy Markdown (no nesting, `\\` escapes only `_*`[`) -> (plain text, entities)."""
    out = _Builder()
    i, size = 0, len(source)
    while i < size:
        char = source[i]
        if char == "\\" and i + 1 < size and source[i + 1] in "_*`[":
            out.add(source[i + 1])
            i += 2
            continue
        if char not in "_*`[":
            out.add(char)
            i += 1
            continue
        unclosed = _ParseError(
            f"Can't find end of the entity starting at byte offset {_byte_offset(source, i)}"
        )
        entity = _Open("", out.pos, i)
        if source.startswith("```", i):
            end = source.find("```", i + 3)
            if end == -1:
                raise unclosed
            body = source[i + 3 : end]
            first, newline, rest = body.partition("\n")
            if newline and first and not any(c.isspace() for c in first):
                entity.extra["language"], body = first, rest
            entity.kind, i = "pre", end + 3
            out.add(body)
        elif char == "[":
            link = _MD_LINK.match(source, i)
            if link is None:
                raise unclosed
            resolved = parsed_link(link.group(2))
            if resolved is not None:  # a refused link stays plain text
                entity.kind = resolved.pop("type")
                entity.extra.update(resolved)
            i = link.end()
            out.add(link.group(1))
        else:
            end = source.find(char, i + 1)
            if end == -1:
                raise unclosed
            entity.kind = {"_": "italic", "*": "bold", "`": "code"}[char]
            out.add(source[i + 1 : end])
            i = end + 1
        if entity.kind:
            out.close(entity)
    return out.result()


_PARSERS: dict[str, Callable[[str], tuple[str, list[JSON]]]] = {
    "markdownv2": parse_markdown_v2,
    "html": parse_html,
    "markdown": parse_markdown,
}


def _trim(text: str, entities: list[JSON]) -> tuple[str, list[JSON]]:
    """Drop leading/trailing whitespace as Telegram does, shifting and clipping entities."""
    left = text.lstrip()
    cut = utf16_len(text) - utf16_len(left)
    trimmed = left.rstrip()
    size = utf16_len(trimmed)
    kept = []
    for entity in entities:
        start = max(entity["offset"] - cut, 0)
        end = min(entity["offset"] + entity["length"] - cut, size)
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    return trimmed, _sorted_entities(kept)


def format_text(text: str, parse_mode: Any, entities: Any) -> tuple[str, list[JSON]]:
    """What Telegram stores for text + parse_mode/entities: (plain text, entities)."""
    mode = str(parse_mode or "").lower()
    if not text or mode in ("", "none"):  # otherwise parse_mode wins: entities are ignored
        return _trim(text, check_entities(text, entities))
    parser = _PARSERS.get(mode)
    if parser is None:
        raise _bad("unsupported parse_mode")
    try:
        return _trim(*parser(text))
    except _ParseError as error:
        raise _bad(f"can't parse entities: {error}") from None


_AUTO_ENTITY = re.compile(
    r"(?P<bot_command>(?<![\w/])/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?)"
    r"|(?P<mention>(?<![\w@])@[A-Za-z0-9_]{4,32})"
    r"|(?P<url>https?://[^\s]+)"
    r"|(?P<hashtag>(?<![\w#])#\w+)"
)


def detect_entities(text: str) -> list[JSON]:
    """The entities Telegram's server finds in a user's plain text."""
    return [
        {
            "type": match.lastgroup,
            "offset": utf16_len(text[: match.start()]),
            "length": utf16_len(match.group()),
        }
        for match in _AUTO_ENTITY.finditer(text)
    ]


def _drop_nones(value: Any) -> Any:
    # Clients differ in sending `null` for absent fields; compare without them.
    if isinstance(value, dict):
        return {k: _drop_nones(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nones(v) for v in value]
    return value


_BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)


def check_markup(raw: Any) -> tuple[JSON | None, JSON | None]:
    """Split reply_markup into (inline keyboard kept on the message, other keyboard)."""
    if raw is None:
        return None, None
    if not isinstance(raw, dict):
        raise _bad("can't parse reply keyboard markup JSON object")
    markup: JSON = _drop_nones(raw)
    if "inline_keyboard" not in markup:
        if not any(key in markup for key in ("keyboard", "remove_keyboard", "force_reply")):
            raise _bad("can't parse reply keyboard markup JSON object")
        return None, markup
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise _bad("can't parse inline keyboard markup JSON object")
    for button in itertools.chain.from_iterable(rows):
        if not isinstance(button, dict) or not button.get("text"):
            raise _bad("can't parse inline keyboard button: Text must be non-empty")
        if not any(key in button for key in _BUTTON_ACTIONS):
            raise _bad("text buttons are unallowed in the inline keyboard")
        data = button.get("callback_data")
        if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA:
            raise _bad("BUTTON_DATA_INVALID")
    # An empty inline keyboard is no keyboard at all.
    return (markup if any(rows) else None), None


def _png(width: int = 1, height: int = 1) -> bytes:
    """A valid (red) PNG, the default photo a fake user sends."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    row = b"\x00" + b"\xff\x00\x00" * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


TINY_PNG = _png()


def _image_size(data: bytes) -> tuple[int, int]:
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    return 512, 512


# -- records ------------------------------------------------------------------


@dataclass
class Upload:
    """A file part of a multipart request."""

    filename: str
    data: bytes
    content_type: str


@dataclass
class Call:
    """One request the fake answered."""

    method: str  # canonical spelling, e.g. "sendMessage"
    params: JSON  # decoded: ints, dicts, lists; uploads as `Upload`
    time: float  # time.monotonic() when the request arrived
    status: int
    response: JSON
    via_webhook: bool = False  # a method returned in a webhook reply

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def result(self) -> Any:
        return self.response.get("result")

    @property
    def error(self) -> str | None:
        description = self.response.get("description")
        return None if self.ok else str(description)

    @property
    def chat_id(self) -> int | None:
        return _as_int(self.params.get("chat_id"))


@dataclass
class Flood:
    """A 429 the fake answered."""

    method: str
    chat_id: int | None
    retry_after: int
    reason: str  # "chat", "global" or "storm"
    time: float


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    data: bytes
    file_path: str
    file_name: str | None = None
    mime_type: str | None = None

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")

    def to_json(self) -> JSON:
        body: JSON = {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": len(self.data),
        }
        if self.file_name:
            body["file_name"] = self.file_name
        if self.mime_type:
            body["mime_type"] = self.mime_type
        return body


@dataclass
class FakeUser:
    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = "en"
    is_premium: bool = False

    def to_json(self) -> JSON:
        body: JSON = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        for key in ("last_name", "username", "language_code"):
            if (value := getattr(self, key)) is not None:
                body[key] = value
        if self.is_premium:
            body["is_premium"] = True
        return body


@dataclass
class StoredMessage:
    """A message as it currently is in its chat."""

    chat_id: int
    message_id: int
    from_bot: bool
    sender: JSON  # the "from" user
    date: int
    text: str | None = None
    entities: list[JSON] = field(default_factory=list)
    caption: str | None = None
    caption_entities: list[JSON] = field(default_factory=list)
    reply_markup: JSON | None = None  # the inline keyboard, the only markup a message keeps
    keyboard: JSON | None = None  # a reply keyboard / removal / force_reply sent with it
    reply_to: int | None = None
    media: JSON = field(default_factory=dict)  # e.g. {"photo": [...]}, {"invoice": {...}}
    file: StoredFile | None = None
    invoice: JSON | None = None  # the sendInvoice params (payload, prices, ...)
    edit_date: int | None = None
    edits: int = 0
    deleted: bool = False

    @property
    def kind(self) -> str:
        if self.text is not None:
            return "text"
        return next(iter(self.media), "service")

    @property
    def buttons(self) -> list[JSON]:
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return list(itertools.chain.from_iterable(rows))


@dataclass
class FakeChat:
    id: int
    type: str  # "private", "group" or "supergroup"
    title: str | None = None
    user: FakeUser | None = None  # the other side of a private chat
    blocked: bool = False
    messages: dict[int, StoredMessage] = field(default_factory=dict)
    draft: Draft | None = None
    last_message_id: int = 0

    def next_message_id(self) -> int:
        self.last_message_id += 1
        return self.last_message_id

    def to_json(self) -> JSON:
        body: JSON = {"id": self.id, "type": self.type}
        if self.user is not None:
            body.update(
                {
                    k: v
                    for k, v in self.user.to_json().items()
                    if k in ("first_name", "last_name", "username")
                }
            )
        if self.title is not None:
            body["title"] = self.title
        return body


@dataclass
class Draft:
    """The streamed preview a private chat shows (sendMessageDraft)."""

    draft_id: int
    text: str
    entities: list[JSON]
    time: float
    can_stop: bool = False


@dataclass
class CallbackQuery:
    query_id: str
    user_id: int
    chat_id: int
    message_id: int
    data: str
    update_id: int
    delivered_at: float | None = None
    answered: bool = False
    text: str | None = None
    show_alert: bool = False
    url: str | None = None
    answer_delay: float | None = None  # seconds from delivery to answer


@dataclass
class PreCheckout:
    query_id: str
    user_id: int
    payload: str
    currency: str
    total_amount: int
    update_id: int
    delivered_at: float | None = None
    answered: bool = False
    ok: bool | None = None
    error_message: str | None = None
    answer_delay: float | None = None  # seconds from delivery to answer


@dataclass
class Charge:
    """A successful payment the bot was told about (refund / subscription target)."""

    charge_id: str
    user_id: int
    payload: str
    currency: str
    total_amount: int
    is_recurring: bool = False
    subscription_expiration_date: int | None = None
    refunded: bool = False
    subscription_canceled: bool = False


@dataclass
class WebhookResult:
    status: int
    body: str
    call: Call | None = None  # the method the bot answered in its reply, if any


@dataclass
class _Storm:
    remaining: int
    retry_after: int


class _Params:
    """Decoded request params with Telegram-style complaints when one is missing."""

    def __init__(self, values: JSON) -> None:
        self.values = values

    def get(self, name: str, default: Any = None) -> Any:
        value = self.values.get(name)
        return default if value is None else value

    def require(self, name: str) -> Any:
        value = self.values.get(name)
        if value is None or value == "":
            raise _bad(f"{name} is empty")
        return value

    def integer(self, name: str) -> int:
        value = _as_int(self.require(name))
        if value is None:
            raise _bad(f"{name} is invalid")
        return value

    def optional_integer(self, name: str) -> int | None:
        return None if self.values.get(name) is None else self.integer(name)

    def string(self, name: str, default: str = "") -> str:
        value = self.values.get(name)
        return default if value is None else str(value)

    def flag(self, name: str) -> bool:
        return self.values.get(name) is True


def _as_int(value: Any) -> int | None:
    """An integer param; Telegram also takes integers sent as strings."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    return None


def _decode_form_value(name: str, raw: str) -> Any:
    if name in _STRING_FIELDS:
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw  # e.g. chat_id="@channel"


def _decode_form(strings: dict[str, str], uploads: dict[str, Upload]) -> JSON:
    """Form fields -> typed params, with `attach://name` replaced by the upload."""
    values: JSON = {}
    for name, raw in strings.items():
        value = _decode_form_value(name, raw)
        if isinstance(value, str) and value.startswith("attach://"):
            upload = uploads.pop(value.removeprefix("attach://"), None)
            if upload is None:
                raise _bad("wrong file identifier/HTTP URL specified")
            value = upload
        values[name] = value
    values.update(uploads)  # files sent directly under their param name
    return values


# -- the server ----------------------------------------------------------------


class FakeTelegram(LocalServer):
    """The fake Bot API for one bot (see the module docstring)."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        bot_first_name: str = "OneAI",
        bot_username: str = "oneai_test_bot",
        per_chat_interval: float | None = 1.0,
        global_per_second: float | None = 30.0,
        pre_checkout_timeout: float = 10.0,
    ) -> None:
        # handler_cancellation: a poll whose client went away (polling stopped)
        # must not linger and grab updates meant for the next poller.
        super().__init__(host, port, handler_cancellation=True)
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.bot_user: JSON = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
        }
        self.per_chat_interval = per_chat_interval
        self.global_per_second = global_per_second
        self.pre_checkout_timeout = pre_checkout_timeout
        self.rate_limited_methods: set[str] = set(RATE_LIMITED_METHODS)

        self.calls: list[Call] = []
        self.floods: list[Flood] = []
        self.users: dict[int, FakeUser] = {}
        self.chats: dict[int, FakeChat] = {}
        self.files: dict[str, StoredFile] = {}
        self.callback_queries: dict[str, CallbackQuery] = {}
        self.pre_checkouts: dict[str, PreCheckout] = {}
        self.charges: dict[str, Charge] = {}
        self.invoice_links: dict[str, JSON] = {}
        # (scope as canonical JSON, language_code) -> commands
        self.commands: dict[tuple[str, str], list[JSON]] = {}
        self.webhook_url = ""
        self.webhook_secret: str | None = None
        self.updates: list[JSON] = []  # every update ever injected
        self.pending_updates: list[JSON] = []  # not confirmed yet
        self.dropped_updates: list[JSON] = []  # left out by allowed_updates
        self.allowed_updates: list[str] | None = None  # None: Telegram's default
        self.waiting_pollers = 0

        self._closing = False
        self._change = asyncio.Event()
        self._poll_generation = 0
        self._update_ids = itertools.count(700_000_001)
        self._query_ids = itertools.count(4_000_000_000_000_000_001)
        self._file_ids = itertools.count(1)
        self._link_ids = itertools.count(1)
        self._last_send: dict[int, float] = {}
        self._recent_sends: deque[float] = deque()
        self._storms: dict[str, _Storm] = {}
        self._entity_refusals: deque[str] = deque()
        self._methods: dict[str, Callable[[_Params], Any]] = {
            "getMe": self._get_me,
            "logOut": lambda p: True,
            "close": lambda p: True,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "sendChatAction": self._send_chat_action,
            "sendDocument": lambda p: self._send_file(p, "document"),
            "sendPhoto": lambda p: self._send_file(p, "photo"),
            "sendMessageDraft": self._send_message_draft,
            "answerCallbackQuery": self._answer_callback_query,
            "sendInvoice": self._send_invoice,
            "createInvoiceLink": self._create_invoice_link,
            "answerPreCheckoutQuery": self._answer_pre_checkout_query,
            "refundStarPayment": self._refund_star_payment,
            "editUserStarSubscription": self._edit_user_star_subscription,
            "getFile": self._get_file,
        }
        self._canonical = {name.lower(): name for name in [*self._methods, "getUpdates"]}

    # -- lifecycle -------------------------------------------------------------

    def application(self) -> web.Application:
        return web.Application(client_max_size=64 * 1024 * 1024)

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/bot{token}/{method}", self._on_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._on_file)

    async def start(self) -> None:
        await super().start()
        self._closing = False

    async def stop(self) -> None:
        self._closing = True
        self._changed()  # waiting polls answer [] at once
        await super().stop()

    # -- test controls ---------------------------------------------------------

    def user(
        self,
        user_id: int,
        *,
        first_name: str | None = None,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = None,
        is_premium: bool | None = None,
    ) -> FakeUser:
        """Create or update a user; their private chat (id == user id) exists after."""
        user = self.users.get(user_id) or FakeUser(user_id, f"User{user_id}")
        self.users[user_id] = user
        for key, value in (
            ("first_name", first_name),
            ("last_name", last_name),
            ("username", username),
            ("language_code", language_code),
            ("is_premium", is_premium),
        ):
            if value is not None:
                setattr(user, key, value)
        if user_id not in self.chats:
            self.chats[user_id] = FakeChat(user_id, "private", user=user)
        return user

    def group(
        self, chat_id: int = DEFAULT_GROUP_ID, *, title: str = "Test group", type: str = "group"
    ) -> FakeChat:
        """Create (or get) a group chat the bot is in."""
        if chat_id not in self.chats:
            self.chats[chat_id] = FakeChat(chat_id, type, title=title)
        return self.chats[chat_id]

    def block(self, chat_id: int, *, notify: bool = True) -> None:
        """The user blocks the bot: sends to the chat get 403 from now on."""
        self._set_blocked(chat_id, blocked=True, notify=notify)

    def unblock(self, chat_id: int, *, notify: bool = True) -> None:
        self._set_blocked(chat_id, blocked=False, notify=notify)

    def flood_storm(self, method: str, count: int = 1, *, retry_after: int = 1) -> None:
        """Answer the next `count` calls of `method` with 429, whatever the limits say."""
        self._storms[self._canonical.get(method.lower(), method)] = _Storm(count, retry_after)

    def refuse_entities_once(self, description: str = ENTITIES_REFUSED) -> None:
        """Answer the next text (send, edit, draft or caption) that carries entities with
        400 `description`: Telegram refusing formatting for a reason the bot could not
        foresee. Calls several times to refuse several texts in a row."""
        self._entity_refusals.append(description)

    def register_file(
        self,
        data: bytes,
        *,
        file_name: str | None = None,
        mime_type: str | None = None,
        folder: str = "documents",
    ) -> str:
        """Store a file as if a user had sent it; returns its file_id (for getFile)."""
        return self._store_file(data, file_name, mime_type, folder).file_id

    # -- update injection ------------------------------------------------------

    def inject(self, update: JSON) -> JSON:
        """Queue a raw update (an update_id is assigned when missing)."""
        if "update_id" not in update:
            update = {"update_id": next(self._update_ids), **update}
        self.updates.append(update)
        self.pending_updates.append(update)
        self._changed()
        return update

    def send_text(
        self,
        user_id: int,
        text: str,
        *,
        reply_to: int | None = None,
        language_code: str | None = None,
        first_name: str | None = None,
        username: str | None = None,
        chat_type: str = "private",
        chat_id: int | None = None,
        entities: list[JSON] | None = None,
        deliver: bool = True,
    ) -> int:
        """The user sends a text message; returns its message_id.

        Entities default to what Telegram detects (commands, mentions, URLs,
        hashtags). For groups pass chat_type="group" (chat_id defaults to
        DEFAULT_GROUP_ID); profile fields update the user when given.
        `deliver=False` puts it in the chat without an update for the bot (one
        another process already took).
        """
        user, chat = self._sender(user_id, chat_type, chat_id, language_code, first_name, username)
        found = detect_entities(text) if entities is None else entities
        message = self._incoming(user, chat, reply_to, text=text, entities=found)
        if deliver:
            self._push("message", chat, message)
        return message.message_id

    def edit_text(
        self, user_id: int, message_id: int, new_text: str, *, chat_id: int | None = None
    ) -> None:
        """The user edits their message (an edited_message update)."""
        chat = self.chats[user_id if chat_id is None else chat_id]
        message = chat.messages.get(message_id)
        if message is None or message.from_bot or message.deleted:
            raise ValueError(f"user message {message_id} not found in chat {chat.id}")
        message.text, message.entities = new_text, detect_entities(new_text)
        message.edit_date, message.edits = int(time.time()), message.edits + 1
        self._push("edited_message", chat, message)

    def edit_caption(
        self, user_id: int, message_id: int, caption: str | None, *, chat_id: int | None = None
    ) -> None:
        """The user edits the caption of their photo or document (None removes it)."""
        chat = self.chats[user_id if chat_id is None else chat_id]
        message = chat.messages.get(message_id)
        if message is None or message.from_bot or message.deleted:
            raise ValueError(f"user message {message_id} not found in chat {chat.id}")
        if message.file is None:
            raise ValueError(f"message {message_id} has no media to caption")
        message.caption = caption
        message.caption_entities = detect_entities(caption) if caption else []
        message.edit_date, message.edits = int(time.time()), message.edits + 1
        self._push("edited_message", chat, message)

    def press(
        self,
        user_id: int,
        message_id: int,
        callback_data: str,
        *,
        chat_id: int | None = None,
        forge: bool = False,
    ) -> str:
        """The user presses an inline button of a bot message; returns the query id.

        Raises ValueError when no such button is currently on the message, since
        a real user could not press it, unless `forge`: a modified client can send
        any callback data for any message it sees.
        """
        if forge and chat_id in self.chats:
            # A forged press may name any chat, even one the presser is not in.
            user, chat = self.user(user_id), self.chats[chat_id]
        else:
            user, chat = self._sender(user_id, "private" if chat_id is None else "group", chat_id)
        message = chat.messages.get(message_id)
        if message is None or message.deleted or not message.from_bot:
            raise ValueError(f"bot message {message_id} not found in chat {chat.id}")
        if not forge and not any(b.get("callback_data") == callback_data for b in message.buttons):
            raise ValueError(f"message {message_id} has no button with data {callback_data!r}")
        query_id = str(next(self._query_ids))
        update = self.inject(
            {
                "callback_query": {
                    "id": query_id,
                    "from": user.to_json(),
                    "message": self._message_json(chat, message),
                    "chat_instance": str(abs(chat.id) * 7919 % 10**18),
                    "data": callback_data,
                }
            }
        )
        self.callback_queries[query_id] = CallbackQuery(
            query_id, user_id, chat.id, message_id, callback_data, update["update_id"]
        )
        return query_id

    def send_photo(
        self,
        user_id: int,
        caption: str | None = None,
        *,
        data: bytes = TINY_PNG,
        chat_type: str = "private",
        chat_id: int | None = None,
    ) -> int:
        """The user sends a photo (downloadable via getFile); returns its message_id."""
        user, chat = self._sender(user_id, chat_type, chat_id)
        stored = self._store_file(data, None, "image/png", "photos")
        width, height = _image_size(data)
        size = {**stored.to_json(), "width": width, "height": height}
        size.pop("mime_type", None)
        message = self._incoming(
            user, chat, None, media={"photo": [size]}, file=stored, **self._caption_of(caption)
        )
        self._push("message", chat, message)
        return message.message_id

    def send_document(
        self,
        user_id: int,
        data: bytes = b"hello\n",
        *,
        file_name: str = "notes.txt",
        mime_type: str = "text/plain",
        caption: str | None = None,
        chat_type: str = "private",
        chat_id: int | None = None,
    ) -> int:
        user, chat = self._sender(user_id, chat_type, chat_id)
        stored = self._store_file(data, file_name, mime_type, "documents")
        message = self._incoming(
            user,
            chat,
            None,
            media={"document": stored.to_json()},
            file=stored,
            **self._caption_of(caption),
        )
        self._push("message", chat, message)
        return message.message_id

    def send_voice(
        self,
        user_id: int,
        *,
        duration: int = 2,
        data: bytes = b"OggS\x00fake",
        reply_to: int | None = None,
        caption: str | None = None,
    ) -> int:
        """The user records a voice note (Voice: duration, mime_type, file_size)."""
        user, chat = self._sender(user_id, "private", None)
        stored = self._store_file(data, None, "audio/ogg", "voice")
        voice = {**stored.to_json(), "duration": duration}
        message = self._incoming(
            user, chat, reply_to, media={"voice": voice}, file=stored, **self._caption_of(caption)
        )
        self._push("message", chat, message)
        return message.message_id

    def send_audio(
        self,
        user_id: int,
        *,
        duration: int = 3,
        data: bytes = b"ID3fake-mp3",
        file_name: str = "memo.mp3",
        mime_type: str = "audio/mpeg",
    ) -> int:
        """The user sends a music/audio file (Audio: duration, file_name, mime_type)."""
        user, chat = self._sender(user_id, "private", None)
        stored = self._store_file(data, file_name, mime_type, "music")
        audio = {**stored.to_json(), "duration": duration}
        message = self._incoming(user, chat, None, media={"audio": audio}, file=stored)
        self._push("message", chat, message)
        return message.message_id

    def send_video_note(
        self, user_id: int, *, duration: int = 4, data: bytes = b"\x00\x00\x00\x18ftypmp42"
    ) -> int:
        """The user records a round video (VideoNote: length, duration; no mime_type)."""
        user, chat = self._sender(user_id, "private", None)
        stored = self._store_file(data, None, "video/mp4", "video_notes")
        note = {**stored.to_json(), "length": 240, "duration": duration}
        note.pop("mime_type", None)
        message = self._incoming(user, chat, None, media={"video_note": note}, file=stored)
        self._push("message", chat, message)
        return message.message_id

    def send_sticker(self, user_id: int, *, emoji: str = "👍") -> int:
        user, chat = self._sender(user_id, "private", None)
        stored = self._store_file(b"RIFFfakewebp", None, "image/webp", "stickers")
        sticker = {
            **stored.to_json(),
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
        }
        sticker.pop("mime_type", None)
        message = self._incoming(user, chat, None, media={"sticker": sticker}, file=stored)
        self._push("message", chat, message)
        return message.message_id

    def stop_generation(self, user_id: int) -> None:
        """The user presses "stop" on the current draft (stopped_message_generation)."""
        chat = self.chats[user_id]
        draft = self.draft(user_id)
        if draft is None:
            raise ValueError(f"no draft in chat {user_id}")
        chat.draft = None
        self.inject(
            {"stopped_message_generation": {"chat": chat.to_json(), "draft_id": draft.draft_id}}
        )

    def pre_checkout(
        self, user_id: int, payload: str, currency: str = "XTR", total_amount: int = 1
    ) -> str:
        """The user confirms a payment; returns the pre_checkout_query id."""
        user, _ = self._sender(user_id, "private", None)
        query_id = str(next(self._query_ids))
        update = self.inject(
            {
                "pre_checkout_query": {
                    "id": query_id,
                    "from": user.to_json(),
                    "currency": currency,
                    "total_amount": total_amount,
                    "invoice_payload": payload,
                }
            }
        )
        self.pre_checkouts[query_id] = PreCheckout(
            query_id, user_id, payload, currency, total_amount, update["update_id"]
        )
        return query_id

    def successful_payment(
        self,
        user_id: int,
        payload: str,
        currency: str,
        total_amount: int,
        charge_id: str,
        *,
        is_recurring: bool = False,
        subscription_expiration_date: int | None = None,
        is_first_recurring: bool = False,
        provider_charge_id: str = "",
    ) -> int:
        """The service message of a completed payment; returns its message_id."""
        user, chat = self._sender(user_id, "private", None)
        payment: JSON = {
            "currency": currency,
            "total_amount": total_amount,
            "invoice_payload": payload,
            "telegram_payment_charge_id": charge_id,
            "provider_payment_charge_id": provider_charge_id,
        }
        if is_recurring:
            payment["is_recurring"] = True
        if is_first_recurring:
            payment["is_first_recurring"] = True
        if subscription_expiration_date is not None:
            payment["subscription_expiration_date"] = subscription_expiration_date
        self.charges[charge_id] = Charge(
            charge_id,
            user_id,
            payload,
            currency,
            total_amount,
            is_recurring,
            subscription_expiration_date,
        )
        message = self._incoming(user, chat, None, media={"successful_payment": payment})
        self._push("message", chat, message)
        return message.message_id

    def refunded_payment(
        self,
        user_id: int,
        payload: str,
        currency: str,
        total_amount: int,
        charge_id: str,
        *,
        provider_charge_id: str = "",
    ) -> int:
        """The service message of a refund; returns its message_id."""
        user, chat = self._sender(user_id, "private", None)
        if charge_id in self.charges:
            self.charges[charge_id].refunded = True
        refund = {
            "currency": currency,
            "total_amount": total_amount,
            "invoice_payload": payload,
            "telegram_payment_charge_id": charge_id,
            "provider_payment_charge_id": provider_charge_id,
        }
        message = self._incoming(user, chat, None, media={"refunded_payment": refund})
        self._push("message", chat, message)
        return message.message_id

    async def deliver_webhook(
        self,
        url: str,
        update: JSON | int | None = None,
        *,
        secret_token: str | None = None,
        timeout: float = WAIT_LIMIT,  # noqa: ASYNC109 -- also the HTTP client's timeout
    ) -> WebhookResult:
        """POST one update to the bot's webhook, as Telegram would.

        `update`: None -> the oldest pending update; an int -> the pending
        update with that id; a dict -> that update. A 2xx answer confirms it
        (drops it from `pending_updates`), and a method in the reply body
        (JSON or multipart, as aiogram sends) is executed and recorded with
        `via_webhook=True`.
        """
        if update is None or isinstance(update, int):
            matching = [
                u for u in self.pending_updates if update is None or u["update_id"] == update
            ]
            if not matching:
                raise ValueError(f"no pending update to deliver (wanted {update})")
            payload = matching[0]
        else:
            payload = update if "update_id" in update else self.inject(update)
        headers = {"Content-Type": "application/json"}
        if secret_token is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret_token
        self._mark_delivered(payload, time.monotonic())
        client_timeout = aiohttp.ClientTimeout(total=timeout)
        async with (
            aiohttp.ClientSession(timeout=client_timeout) as session,
            session.post(url, data=json.dumps(payload), headers=headers) as response,
        ):
            if not 200 <= response.status < 300:
                return WebhookResult(response.status, await response.text())
            with contextlib.suppress(ValueError):
                self.pending_updates.remove(payload)
            body, values = await self._webhook_reply(response)
        call = None
        if values and "method" in values:
            method = str(values.pop("method"))
            call = await self._execute(self.token, method, values, via_webhook=True)
        return WebhookResult(response.status, body, call)

    # -- inspection ------------------------------------------------------------

    def calls_of(
        self, method: str, chat_id: int | None = None, *, ok: bool | None = None
    ) -> list[Call]:
        name = self._canonical.get(method.lower(), method)
        return [
            call
            for call in self.calls
            if call.method == name
            and (chat_id is None or call.chat_id == chat_id)
            and (ok is None or call.ok == ok)
        ]

    def busiest_second(self, since: float = 0.0) -> int:
        """The most successful rate-limited calls (sends and edits) in any 1 s
        window since `since` (time.monotonic): what the global budget is measured on."""
        times = sorted(
            call.time
            for call in self.calls
            if call.ok and call.method in self.rate_limited_methods and call.time >= since
        )
        most, start = 0, 0
        for end, moment in enumerate(times):
            while times[start] <= moment - 1.0:
                start += 1
            most = max(most, end - start + 1)
        return most

    def messages(self, chat_id: int, *, from_bot: bool | None = None) -> list[StoredMessage]:
        """What the chat shows now, oldest first (deleted messages left out)."""
        chat = self.chats.get(chat_id)
        if chat is None:
            return []
        return [
            m
            for _, m in sorted(chat.messages.items())
            if not m.deleted and (from_bot is None or m.from_bot == from_bot)
        ]

    def last_message(self, chat_id: int, *, from_bot: bool | None = True) -> StoredMessage | None:
        found = self.messages(chat_id, from_bot=from_bot)
        return found[-1] if found else None

    def message(self, chat_id: int, message_id: int) -> StoredMessage:
        """A message, deleted or not (KeyError when it never existed)."""
        return self.chats[chat_id].messages[message_id]

    def draft(self, chat_id: int) -> Draft | None:
        """The draft the chat shows now (gone after DRAFT_LIFETIME or a sent message)."""
        chat = self.chats.get(chat_id)
        if chat is None or chat.draft is None:
            return None
        if time.monotonic() - chat.draft.time > DRAFT_LIFETIME:
            return None
        return chat.draft

    def file(self, file_id: str) -> StoredFile:
        return self.files[file_id]

    def my_commands(self, *, language_code: str = "", scope: JSON | None = None) -> list[JSON]:
        return self.commands.get((self._scope_key(scope), language_code), [])

    # The wait helpers take a timeout (ASYNC109) so a failing wait reports what it
    # waited for, instead of a bare cancellation.
    async def wait_for(
        self,
        predicate: Callable[[], _T | None],
        timeout: float = WAIT_LIMIT,  # noqa: ASYNC109
    ) -> _T:
        """Wait until `predicate()` is truthy (re-checked on every call or update)."""
        deadline = time.monotonic() + timeout
        while True:
            change = self._change
            result = predicate()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(change.wait(), remaining)

    async def wait_for_call(
        self,
        method: str,
        *,
        chat_id: int | None = None,
        ok: bool | None = None,
        since: int = 0,
        where: Callable[[Call], bool] | None = None,
        timeout: float = WAIT_LIMIT,  # noqa: ASYNC109
    ) -> Call:
        """The first matching call at index >= `since` in `calls` (use
        `since=len(tg.calls)` to wait for a new one)."""

        name = self._canonical.get(method.lower(), method)

        def find() -> Call | None:
            return next(
                (
                    call
                    for call in self.calls[since:]
                    if call.method == name
                    and (chat_id is None or call.chat_id == chat_id)
                    and (ok is None or call.ok == ok)
                    and (where is None or where(call))
                ),
                None,
            )

        try:
            return await self.wait_for(find, timeout)
        except TimeoutError:
            seen = [c.method for c in self.calls[since:] if c.method != "getUpdates"]
            raise TimeoutError(f"no {method} call within {timeout} s; saw {seen}") from None

    # -- HTTP plumbing ---------------------------------------------------------

    def _changed(self) -> None:
        # Wake everything waiting (pollers, wait_for); they re-check their condition.
        self._change.set()
        self._change = asyncio.Event()

    async def _on_api(self, request: web.Request) -> web.Response:
        token, method = request.match_info["token"], request.match_info["method"]
        values: JSON = {}
        parse_error = None
        try:
            values = await self._read_params(request)
        except ApiError as error:
            parse_error = error
        call = await self._execute(token, method, values, parse_error=parse_error)
        return web.json_response(call.response, status=call.status)

    async def _on_file(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        stored = next((f for f in self.files.values() if f.file_path == path), None)
        if request.match_info["token"] != self.token or stored is None:
            body = {"ok": False, "error_code": 404, "description": "Not Found"}
            return web.json_response(body, status=404)
        return web.Response(
            body=stored.data, content_type=stored.mime_type or "application/octet-stream"
        )

    async def _read_params(self, request: web.Request) -> JSON:
        strings: dict[str, str] = dict(request.query)
        uploads: dict[str, Upload] = {}
        typed: JSON = {}
        if request.body_exists:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    raise _bad("can't parse JSON body") from None
                if not isinstance(body, dict):
                    raise _bad("can't parse JSON body")
                for name, value in body.items():
                    if name in _JSON_FIELDS and isinstance(value, str):
                        try:
                            value = json.loads(value)
                        except ValueError:
                            raise _bad(f"can't parse {name} JSON object") from None
                    typed[name] = value
            elif request.content_type in (
                "application/x-www-form-urlencoded",
                "multipart/form-data",
            ):
                form = await request.post()
                for name, value in form.items():
                    if isinstance(value, web.FileField):
                        data = value.file.read()
                        uploads[name] = Upload(value.filename, data, value.content_type)
                    elif isinstance(value, bytes | bytearray):
                        strings[name] = value.decode()
                    else:
                        strings[name] = value
        return {**_decode_form(strings, uploads), **typed}

    async def _webhook_reply(self, response: aiohttp.ClientResponse) -> tuple[str, JSON]:
        """The webhook answer's body text and, when it carries a method, its params."""
        if response.content_type.startswith("multipart/"):
            strings: dict[str, str] = {}
            uploads: dict[str, Upload] = {}
            reader = aiohttp.MultipartReader.from_response(response)
            async for part in reader:
                if not isinstance(part, aiohttp.BodyPartReader) or part.name is None:
                    continue
                if part.filename:
                    data = bytes(await part.read(decode=True))
                    content_type = part.headers.get("Content-Type", "application/octet-stream")
                    uploads[part.name] = Upload(part.filename, data, content_type)
                else:
                    strings[part.name] = await part.text()
            return "<multipart>", _decode_form(strings, uploads)
        text = await response.text()
        try:
            body = json.loads(text) if text.strip() else {}
        except ValueError:
            return text, {}
        return text, body if isinstance(body, dict) else {}

    async def _execute(
        self,
        token: str,
        method: str,
        values: JSON,
        *,
        parse_error: ApiError | None = None,
        via_webhook: bool = False,
    ) -> Call:
        arrived = time.monotonic()
        name = self._canonical.get(method.lower(), method)
        try:
            if token != self.token:
                raise ApiError(401, "Unauthorized")
            if name not in self._canonical.values():
                raise ApiError(404, "Not Found")
            if parse_error is not None:
                raise parse_error
            params = _Params(values)
            self._check_flood(name, params)
            if name == "getUpdates":
                result = await self._get_updates(params)
            else:
                result = self._methods[name](params)
                self._note_send(name, params)
            status, response = 200, {"ok": True, "result": result}
        except ApiError as error:
            status, response = error.code, error.body()
        call = Call(name, values, arrived, status, response, via_webhook)
        self.calls.append(call)
        self._changed()
        return call

    # -- flood control ---------------------------------------------------------

    def _check_flood(self, method: str, params: _Params) -> None:
        chat = _as_int(params.values.get("chat_id"))
        storm = self._storms.get(method)
        if storm is not None and storm.remaining > 0:
            storm.remaining -= 1
            raise self._flood(method, chat, storm.retry_after, "storm")
        if method not in self.rate_limited_methods:
            return
        now = time.monotonic()
        if self.per_chat_interval and chat is not None and chat in self._last_send:
            wait = self._last_send[chat] + self.per_chat_interval - now
            if wait > 0:
                raise self._flood(method, chat, wait, "chat")
        if self.global_per_second:
            window = self._recent_sends
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) >= max(1, int(self.global_per_second)):
                raise self._flood(method, chat, window[0] + 1.0 - now, "global")

    def _flood(self, method: str, chat_id: int | None, wait: float, reason: str) -> ApiError:
        retry_after = max(1, math.ceil(wait))  # whole seconds, as aiogram parses it
        self.floods.append(Flood(method, chat_id, retry_after, reason, time.monotonic()))
        return ApiError(
            429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after
        )

    def _note_send(self, method: str, params: _Params) -> None:
        if method not in self.rate_limited_methods:
            return
        now = time.monotonic()
        chat_id = _as_int(params.values.get("chat_id"))
        if chat_id is not None:
            self._last_send[chat_id] = now
        self._recent_sends.append(now)

    # -- updates ---------------------------------------------------------------

    async def _get_updates(self, params: _Params) -> list[JSON]:
        if self.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active;"
                " use deleteWebhook to delete the webhook first",
            )
        offset = params.optional_integer("offset")
        limit = min(max(params.optional_integer("limit") or 100, 1), 100)
        timeout = max(0, params.optional_integer("timeout") or 0)
        if params.get("allowed_updates") is not None:
            self._set_allowed_updates(params.get("allowed_updates"))
        if offset is not None:
            self._confirm(offset)
        # Only one poller at a time: a newer request ends an older waiting one.
        self._poll_generation += 1
        generation = self._poll_generation
        self._changed()
        deadline = time.monotonic() + timeout
        self.waiting_pollers += 1
        try:
            while True:
                change = self._change
                if generation != self._poll_generation:
                    raise ApiError(
                        409,
                        "Conflict: terminated by other getUpdates request;"
                        " make sure that only one bot instance is running",
                    )
                ready = self._deliverable(limit)
                remaining = deadline - time.monotonic()
                if ready or remaining <= 0 or self._closing:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(change.wait(), remaining)
        finally:
            self.waiting_pollers -= 1
        now = time.monotonic()
        for update in ready:
            self._mark_delivered(update, now)
        return ready

    def _set_allowed_updates(self, allowed: Any) -> None:
        if not isinstance(allowed, list):
            raise _bad("can't parse allowed updates")
        self.allowed_updates = [str(kind) for kind in allowed] or None

    def _allowed(self, update: JSON) -> bool:
        kind = next((key for key in update if key != "update_id"), "")
        if self.allowed_updates is None:
            return kind not in _OPT_IN_UPDATES
        return kind in self.allowed_updates

    def _confirm(self, offset: int) -> None:
        if offset < 0:  # keep only the last -offset updates
            self.pending_updates = self.pending_updates[offset:]
        else:
            self.pending_updates = [u for u in self.pending_updates if u["update_id"] >= offset]

    def _deliverable(self, limit: int) -> list[JSON]:
        # Updates of types the bot did not ask for are dropped, as Telegram does.
        for update in [u for u in self.pending_updates if not self._allowed(u)]:
            self.pending_updates.remove(update)
            self.dropped_updates.append(update)
        return self.pending_updates[:limit]

    def _mark_delivered(self, update: JSON, now: float) -> None:
        # The latest delivery counts: that is the one the bot had to answer.
        if "pre_checkout_query" in update:
            query = self.pre_checkouts.get(update["pre_checkout_query"]["id"])
            if query is not None:
                query.delivered_at = now
        if "callback_query" in update:
            callback = self.callback_queries.get(update["callback_query"]["id"])
            if callback is not None:
                callback.delivered_at = now

    def _sender(
        self,
        user_id: int,
        chat_type: str,
        chat_id: int | None,
        language_code: str | None = None,
        first_name: str | None = None,
        username: str | None = None,
    ) -> tuple[FakeUser, FakeChat]:
        user = self.user(
            user_id, language_code=language_code, first_name=first_name, username=username
        )
        if chat_type == "private":
            return user, self.chats[user_id]
        return user, self.group(DEFAULT_GROUP_ID if chat_id is None else chat_id, type=chat_type)

    def _incoming(
        self, user: FakeUser, chat: FakeChat, reply_to: int | None, **content: Any
    ) -> StoredMessage:
        if reply_to is not None and reply_to not in chat.messages:
            raise ValueError(f"message {reply_to} not found in chat {chat.id}")
        message = StoredMessage(
            chat.id,
            chat.next_message_id(),
            from_bot=False,
            sender=user.to_json(),
            date=int(time.time()),
            reply_to=reply_to,
            **content,
        )
        chat.messages[message.message_id] = message
        return message

    def _push(self, kind: str, chat: FakeChat, message: StoredMessage) -> None:
        self.inject({kind: self._message_json(chat, message)})

    @staticmethod
    def _caption_of(caption: str | None) -> JSON:
        if caption is None:
            return {}
        return {"caption": caption, "caption_entities": detect_entities(caption)}

    def _set_blocked(self, chat_id: int, *, blocked: bool, notify: bool) -> None:
        if chat_id not in self.chats and chat_id > 0:
            self.user(chat_id)  # a user can block a bot before writing to it
        chat = self.chats[chat_id]
        chat.blocked = blocked
        if notify and chat.user is not None:
            member = {"status": "member", "user": self.bot_user}
            kicked = {"status": "kicked", "user": self.bot_user, "until_date": 0}
            old, new = (member, kicked) if blocked else (kicked, member)
            self.inject(
                {
                    "my_chat_member": {
                        "chat": chat.to_json(),
                        "from": chat.user.to_json(),
                        "date": int(time.time()),
                        "old_chat_member": old,
                        "new_chat_member": new,
                    }
                }
            )

    # -- messages ---------------------------------------------------------------

    def _message_json(self, chat: FakeChat, message: StoredMessage, *, nested: bool = True) -> JSON:
        body: JSON = {
            "message_id": message.message_id,
            "date": message.date,
            "chat": chat.to_json(),
            "from": message.sender,
        }
        if message.text is not None:
            body["text"] = message.text
            if message.entities:
                body["entities"] = message.entities
        if message.caption is not None:
            body["caption"] = message.caption
            if message.caption_entities:
                body["caption_entities"] = message.caption_entities
        body.update(message.media)
        if message.reply_markup is not None:
            body["reply_markup"] = message.reply_markup
        if message.edit_date is not None:
            body["edit_date"] = message.edit_date
        target = chat.messages.get(message.reply_to) if message.reply_to else None
        if nested and target is not None and not target.deleted:
            body["reply_to_message"] = self._message_json(chat, target, nested=False)
        return body

    def _chat(self, params: _Params) -> FakeChat:
        chat_id = _as_int(params.require("chat_id"))  # "@channel" names are not modelled
        chat = None if chat_id is None else self.chats.get(chat_id)
        if chat is None:
            raise _bad("chat not found")
        if chat.blocked:
            if chat.type == "private":
                raise ApiError(403, "Forbidden: bot was blocked by the user")
            raise ApiError(403, "Forbidden: bot was kicked from the group chat")
        return chat

    def _formatted(
        self, params: _Params, key: str, entities_key: str, *, caption: bool = False
    ) -> tuple[str, list[JSON]]:
        """Text (or a caption, which may be empty) after parse_mode, with its limits."""
        raw = params.string(key)
        if not raw.strip() and not caption:
            raise _bad("message text is empty")
        text, entities = self._checked_format(raw, params, entities_key)
        if not text.strip() and not caption:
            raise _bad("message text is empty")  # e.g. "<b></b>"
        if caption and utf16_len(text) > MAX_CAPTION:
            raise _bad("message caption is too long")
        if utf16_len(text) > MAX_TEXT:
            raise _bad("message is too long")
        return text, entities

    def _checked_format(
        self, raw: str, params: _Params, entities_key: str
    ) -> tuple[str, list[JSON]]:
        """format_text, then a refusal the test asked for, then text mentions filled in."""
        text, entities = format_text(raw, params.get("parse_mode"), params.get(entities_key))
        if entities and self._entity_refusals:
            raise ApiError(400, self._entity_refusals.popleft())
        for entity in entities:
            if entity["type"] == "text_mention" and set(entity["user"]) == {"id"}:
                user_id = entity["user"]["id"]
                known = self.users.get(user_id)
                # Telegram answers the whole user; one it has never seen gets a name.
                entity["user"] = (
                    known.to_json()
                    if known
                    else {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"}
                )
        return text, entities

    def _post(self, chat: FakeChat, params: _Params, **content: Any) -> JSON:
        """Store a bot message (after its content was validated); returns its JSON."""
        inline, keyboard = check_markup(params.get("reply_markup"))
        reply_to = params.optional_integer("reply_to_message_id")
        allow_missing = params.flag("allow_sending_without_reply")
        reply = params.get("reply_parameters")
        if isinstance(reply, dict):
            reply_to = reply.get("message_id")
            allow_missing = reply.get("allow_sending_without_reply") is True
        if reply_to is not None:
            target = chat.messages.get(reply_to)
            if target is None or target.deleted:
                if not allow_missing:
                    raise _bad("message to be replied not found")
                reply_to = None
        message = StoredMessage(
            chat.id,
            chat.next_message_id(),
            from_bot=True,
            sender=self.bot_user,
            date=int(time.time()),
            reply_markup=inline,
            keyboard=keyboard,
            reply_to=reply_to,
            **content,
        )
        chat.messages[message.message_id] = message
        chat.draft = None  # a sent message replaces the draft
        return self._message_json(chat, message)

    def _bot_message(self, chat: FakeChat, params: _Params, missing: str) -> StoredMessage:
        if params.get("inline_message_id") is not None:
            raise _bad("inline messages are not supported by the fake")
        message = chat.messages.get(params.integer("message_id"))
        if message is None or message.deleted:
            raise _bad(missing)
        if not message.from_bot:
            raise _bad("message can't be edited")
        return message

    def _send_message(self, params: _Params) -> JSON:
        chat = self._chat(params)
        text, entities = self._formatted(params, "text", "entities")
        return self._post(chat, params, text=text, entities=entities)

    def _edit_message_text(self, params: _Params) -> JSON:
        chat = self._chat(params)
        message = self._bot_message(chat, params, "message to edit not found")
        if message.text is None:
            raise _bad("there is no text in the message to edit")
        text, entities = self._formatted(params, "text", "entities")
        inline, _ = check_markup(params.get("reply_markup"))
        if (text, entities, inline) == (message.text, message.entities, message.reply_markup):
            raise ApiError(400, NOT_MODIFIED)
        message.text, message.entities, message.reply_markup = text, entities, inline
        return self._edited(chat, message)

    def _edit_message_reply_markup(self, params: _Params) -> JSON:
        chat = self._chat(params)
        message = self._bot_message(chat, params, "message to edit not found")
        inline, _ = check_markup(params.get("reply_markup"))
        if inline == message.reply_markup:
            raise ApiError(400, NOT_MODIFIED)
        message.reply_markup = inline
        return self._edited(chat, message)

    def _edited(self, chat: FakeChat, message: StoredMessage) -> JSON:
        message.edit_date, message.edits = int(time.time()), message.edits + 1
        return self._message_json(chat, message)

    def _delete_message(self, params: _Params) -> bool:
        chat = self._chat(params)
        message = chat.messages.get(params.integer("message_id"))
        if message is None or message.deleted:
            raise _bad("message to delete not found")
        message.deleted = True
        return True

    def _send_chat_action(self, params: _Params) -> bool:
        self._chat(params)
        if params.string("action") not in CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        return True

    def _send_file(self, params: _Params, kind: str) -> JSON:
        chat = self._chat(params)
        caption, caption_entities = self._formatted(
            params, "caption", "caption_entities", caption=True
        )
        value = params.require(kind)
        if isinstance(value, Upload):
            if not value.data:
                raise _bad("file must be non-empty")
            mime = value.content_type
            if kind == "document" and mime in ("", "application/octet-stream"):
                mime = mimetypes.guess_type(value.filename)[0] or mime  # as Telegram does
            stored = self._store_file(value.data, value.filename, mime, f"{kind}s")
        elif isinstance(value, str) and value in self.files:
            stored = self.files[value]
        else:
            raise _bad("wrong file identifier/HTTP URL specified")
        if kind == "photo":
            width, height = _image_size(stored.data)
            size = {**stored.to_json(), "width": width, "height": height}
            size.pop("file_name", None)
            size.pop("mime_type", None)
            media: JSON = {"photo": [size]}
        else:
            media = {"document": stored.to_json()}
        content: JSON = {"media": media, "file": stored}
        if caption:
            content.update(caption=caption, caption_entities=caption_entities)
        return self._post(chat, params, **content)

    def _send_message_draft(self, params: _Params) -> bool:
        chat = self._chat(params)
        if chat.type != "private":
            raise _bad("TEXTDRAFT_PEER_INVALID")
        draft_id = params.integer("draft_id")
        if draft_id == 0:
            raise _bad("DRAFT_ID_INVALID")
        # An empty draft is allowed (it shows a "Thinking…" placeholder); 4096 still applies.
        raw = params.string("text")
        text, entities = self._checked_format(raw, params, "entities")
        if utf16_len(text) > MAX_TEXT:
            raise _bad("message is too long")
        chat.draft = Draft(draft_id, text, entities, time.monotonic(), params.flag("can_stop"))
        return True

    def _answer_callback_query(self, params: _Params) -> bool:
        query = self.callback_queries.get(params.string("callback_query_id"))
        if query is None or query.answered:
            raise ApiError(400, QUERY_TOO_OLD)
        text = params.get("text")
        if text is not None and len(str(text)) > 200:
            raise _bad("MESSAGE_TOO_LONG")
        query.answered, query.text = True, text
        query.show_alert, query.url = params.flag("show_alert"), params.get("url")
        if query.delivered_at is not None:
            query.answer_delay = time.monotonic() - query.delivered_at
        return True

    def _get_file(self, params: _Params) -> JSON:
        stored = self.files.get(params.string("file_id"))
        if stored is None:
            raise _bad("wrong file_id or the file is temporarily unavailable")
        if len(stored.data) > 20 * 1024 * 1024:
            raise _bad("file is too big")
        body = stored.to_json()
        body.pop("file_name", None)
        body.pop("mime_type", None)
        return {**body, "file_path": stored.file_path}

    def _store_file(
        self, data: bytes, file_name: str | None, mime_type: str | None, folder: str
    ) -> StoredFile:
        number = next(self._file_ids)
        suffix = ""
        if file_name and "." in file_name:
            suffix = "." + file_name.rsplit(".", 1)[1]
        elif mime_type:
            suffix = mimetypes.guess_extension(mime_type) or ""
        stored = StoredFile(
            file_id=f"FAKE{folder.upper()}{number:06d}",
            file_unique_id=f"U{number:06d}",
            data=data,
            file_path=f"{folder}/file_{number}{suffix}",
            file_name=file_name,
            mime_type=mime_type,
        )
        self.files[stored.file_id] = stored
        return stored

    # -- bot settings ----------------------------------------------------------

    def _get_me(self, params: _Params) -> JSON:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _set_webhook(self, params: _Params) -> bool:
        url = params.string("url")
        if url and not url.startswith("https://"):
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise _bad("secret token contains unallowed characters")
        if params.get("allowed_updates") is not None:
            self._set_allowed_updates(params.get("allowed_updates"))
        if params.flag("drop_pending_updates"):
            self.pending_updates.clear()
        self.webhook_url = url
        self.webhook_secret = None if secret is None else str(secret)
        return True

    def _delete_webhook(self, params: _Params) -> bool:
        if params.flag("drop_pending_updates"):
            self.pending_updates.clear()
        self.webhook_url, self.webhook_secret = "", None
        return True

    def _get_webhook_info(self, params: _Params) -> JSON:
        info: JSON = {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self.pending_updates),
        }
        if self.webhook_url:
            info["max_connections"] = 40
        if self.allowed_updates is not None:
            info["allowed_updates"] = self.allowed_updates
        return info

    @staticmethod
    def _scope_key(scope: Any) -> str:
        if scope is None:
            scope = {"type": "default"}
        if not isinstance(scope, dict) or "type" not in scope:
            raise _bad("can't parse BotCommandScope JSON object")
        return json.dumps(_drop_nones(scope), sort_keys=True)

    def _set_my_commands(self, params: _Params) -> bool:
        commands = params.require("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad("can't parse commands JSON object")
        for command in commands:
            if not isinstance(command, dict):
                raise _bad("can't parse commands JSON object")
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
        key = (self._scope_key(params.get("scope")), params.string("language_code"))
        self.commands[key] = [
            {"command": c["command"], "description": c["description"]} for c in commands
        ]
        return True

    def _get_my_commands(self, params: _Params) -> list[JSON]:
        key = (self._scope_key(params.get("scope")), params.string("language_code"))
        return self.commands.get(key, [])

    def _delete_my_commands(self, params: _Params) -> bool:
        key = (self._scope_key(params.get("scope")), params.string("language_code"))
        self.commands.pop(key, None)
        return True

    # -- payments --------------------------------------------------------------

    def _invoice(self, params: _Params, *, link: bool) -> JSON:
        """Validate invoice params the way Telegram does for Stars and cards."""
        for name in ("title", "description", "payload", "currency"):
            params.require(name)
        if not 1 <= len(params.string("title")) <= 32:
            raise _bad("INVOICE_TITLE_INVALID")
        if not 1 <= len(params.string("description")) <= 255:
            raise _bad("INVOICE_DESCRIPTION_INVALID")
        if not 1 <= len(params.string("payload").encode()) <= 128:
            raise _bad("INVOICE_PAYLOAD_INVALID")
        currency = params.string("currency")
        stars = currency == "XTR"
        if stars and params.string("provider_token"):
            raise _bad("PROVIDER_TOKEN_INVALID")  # Stars invoices take an empty token
        if not stars and not params.string("provider_token"):
            raise _bad("PAYMENT_PROVIDER_INVALID")
        prices = params.require("prices")
        if not isinstance(prices, list) or not prices:
            raise _bad("CURRENCY_TOTAL_AMOUNT_INVALID")
        for price in prices:
            amount = price.get("amount") if isinstance(price, dict) else None
            if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
                raise _bad("CURRENCY_TOTAL_AMOUNT_INVALID")
        if stars and len(prices) != 1:
            raise _bad("STARS_INVOICE_INVALID")  # Stars take exactly one price
        period = params.get("subscription_period")
        if period is not None and (not link or not stars or period != STARS_SUBSCRIPTION_PERIOD):
            raise _bad("SUBSCRIPTION_PERIOD_INVALID")
        return {**params.values, "total_amount": sum(p["amount"] for p in prices)}

    def _send_invoice(self, params: _Params) -> JSON:
        chat = self._chat(params)
        invoice = self._invoice(params, link=False)
        media = {
            "invoice": {
                "title": invoice["title"],
                "description": invoice["description"],
                "start_parameter": params.string("start_parameter"),
                "currency": invoice["currency"],
                "total_amount": invoice["total_amount"],
            }
        }
        return self._post(chat, params, media=media, invoice=invoice)

    def _create_invoice_link(self, params: _Params) -> str:
        invoice = self._invoice(params, link=True)
        url = f"https://t.me/$fakeInvoice{next(self._link_ids)}"
        self.invoice_links[url] = invoice
        return url

    def _answer_pre_checkout_query(self, params: _Params) -> bool:
        query = self.pre_checkouts.get(params.string("pre_checkout_query_id"))
        if query is None or query.answered:
            raise ApiError(400, QUERY_TOO_OLD)
        now = time.monotonic()
        delay = None if query.delivered_at is None else now - query.delivered_at
        if delay is not None and delay > self.pre_checkout_timeout:
            raise ApiError(400, QUERY_TOO_OLD)
        ok = params.flag("ok")
        error_message = params.get("error_message")
        if not ok and not error_message:
            raise _bad("error_message is empty")
        query.answered, query.ok, query.error_message = True, ok, error_message
        query.answer_delay = delay
        return True

    def _charge(self, params: _Params) -> Charge:
        charge = self.charges.get(params.string("telegram_payment_charge_id"))
        if charge is None or charge.user_id != params.integer("user_id"):
            raise _bad("CHARGE_NOT_FOUND")
        return charge

    def _refund_star_payment(self, params: _Params) -> bool:
        charge = self._charge(params)
        if charge.refunded:
            raise _bad("CHARGE_ALREADY_REFUNDED")
        # The buyer's chat shows the refund, and the bot gets it as a message.
        self.refunded_payment(
            charge.user_id, charge.payload, charge.currency, charge.total_amount, charge.charge_id
        )
        return True

    def _edit_user_star_subscription(self, params: _Params) -> bool:
        charge = self._charge(params)
        if not charge.is_recurring:
            raise _bad("SUBSCRIPTION_NOT_FOUND")
        if params.get("is_canceled") is None:
            raise _bad("is_canceled is empty")
        charge.subscription_canceled = params.flag("is_canceled")
        return True
