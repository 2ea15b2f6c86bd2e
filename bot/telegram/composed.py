"""What an admin typed, back as Markdown: Telegram apps turn **bold** and the
formatting menu into entities and strip the marks from the text, so a broadcast
written in the app is rebuilt from its entities (aiogram's own unparser, with a
CommonMark dialect) before it is stored and rendered for each person."""

from __future__ import annotations

from datetime import datetime

from aiogram.types import Message
from aiogram.utils.text_decorations import TextDecoration


class CommonMarkDecoration(TextDecoration):
    def link(self, value: str, link: str) -> str:
        return f"[{value}]({link})"

    def bold(self, value: str) -> str:
        return f"**{value}**"

    def italic(self, value: str) -> str:
        return f"_{value}_"

    def code(self, value: str) -> str:
        return f"`{value}`"

    def pre(self, value: str) -> str:
        return f"```\n{value}\n```"

    def pre_language(self, value: str, language: str) -> str:
        return f"```{language}\n{value}\n```"

    def underline(self, value: str) -> str:
        return value  # CommonMark has no underline

    def strikethrough(self, value: str) -> str:
        return f"~~{value}~~"

    def spoiler(self, value: str) -> str:
        return f"||{value}||"

    def quote(self, value: str) -> str:
        return value  # the text is Markdown already: nothing to escape

    def custom_emoji(self, value: str, custom_emoji_id: str) -> str:
        return value

    def blockquote(self, value: str) -> str:
        return "\n".join(f"> {line}" for line in value.split("\n"))

    def expandable_blockquote(self, value: str) -> str:
        return self.blockquote(value)

    def date_time(
        self, value: str, unix_time: int | datetime, date_time_format: str | None = None
    ) -> str:
        return value


COMMONMARK = CommonMarkDecoration()


def markdown_of(message: Message) -> str:
    """The text (or a photo's caption) of `message` as Markdown."""
    if message.text is not None:
        return COMMONMARK.unparse(message.text, message.entities)
    if message.caption is not None:
        return COMMONMARK.unparse(message.caption, message.caption_entities)
    return ""
