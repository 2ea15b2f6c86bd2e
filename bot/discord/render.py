"""Discord shows the model's Markdown as is; what needs care is the 2,000-character
limit: an answer past it goes on in a new message, and a code block cut there is
closed at the end of one message and opened again, with its language, at the
start of the next."""

from __future__ import annotations

import re

DISCORD_LIMIT = 2000

_FENCE = re.compile(r"^ {0,3}(`{3,})([^`\n]*)$", re.MULTILINE)
_CLOSE = "\n```"
_MAX_LANG = 20


def _fence_after(text: str, state: str | None) -> str | None:
    """The code block open at the end of `text` (its opening line, as "```lang"),
    given the one open at its start; None outside a block."""
    for match in _FENCE.finditer(text):
        if state is None:
            state = "```" + match.group(2).strip()[:_MAX_LANG]
        elif not match.group(2).strip():
            state = None
    return state


def split_message(text: str, max_len: int = DISCORD_LIMIT) -> list[str]:
    """Cut `text` into messages of at most `max_len` characters that show all of it.

    A cut goes after a newline, else after a space, in the second half of the
    window, else at the limit. A block open at a cut is closed there and opened
    again in the next message. A message's cut depends only on the text before
    and inside its window, so messages stay the same once the text has grown
    past them (the streaming driver then leaves them alone)."""
    parts: list[str] = []
    start = 0
    fence: str | None = None  # the block open at `start`
    while start < len(text):
        prefix = fence + "\n" if fence else ""
        room = max_len - len(prefix) - len(_CLOSE)
        if len(text) - start <= max_len - len(prefix):
            tail = text[start:]
            parts.append(prefix + tail)
            break
        end = start + room
        floor = start + room // 2
        cut = text.rfind("\n", floor, end) + 1
        if cut <= start:
            cut = text.rfind(" ", floor, end) + 1
        if cut <= start:
            cut = end
        chunk = text[start:cut]
        fence = _fence_after(chunk, fence)
        if fence:
            parts.append(prefix + chunk.rstrip("\n") + _CLOSE)
        else:
            parts.append(prefix + chunk)
        start = cut
    return [part for part in parts if part.strip()]  # Discord refuses a blank message
