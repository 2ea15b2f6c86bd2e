"""Filters run on the event loop: aiogram would run each synchronous one (`F.text`,
a `State`) in a worker thread, about a dozen hops per text message."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from aiogram import F, Router
from aiogram.dispatcher.event.handler import FilterObject
from aiogram.fsm.state import State, StatesGroup

from bot.telegram.inline_filters import inline_filters
from tests.fakes.llm_server import Reply
from tests.telegram.conftest import USER, Harness


class Steps(StatesGroup):
    asking = State()


def _filters(router: Router) -> list[FilterObject]:
    found: list[FilterObject] = []
    for each in router.chain_tail:
        for observer in each.observers.values():
            handlers = [*getattr(observer, "handlers", ()), getattr(observer, "_handler", None)]
            for handler in handlers:
                if handler is not None:
                    found.extend(handler.filters or ())
    return found


async def test_filters_keep_their_meaning_and_run_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    router = Router()
    child = Router()
    router.include_router(child)

    async def handler() -> None: ...

    child.message.register(
        handler, F.text.startswith("hi"), lambda _message, event_chat: event_chat == 1
    )
    router.message.filter(F.text)
    assert inline_filters(router) == 3
    assert inline_filters(router) == 0  # already inline
    assert all(f.awaitable for f in _filters(router))

    def no_threads(*_: Any, **__: Any) -> None:
        raise AssertionError("a filter went to a worker thread")

    monkeypatch.setattr(asyncio, "to_thread", no_threads)

    class Message:
        def __init__(self, text: str | None) -> None:
            self.text = text

    (handler_object,) = child.message.handlers
    assert (await handler_object.check(Message("hi there"), event_chat=1))[0]
    assert not (await handler_object.check(Message("hi there"), event_chat=2))[0]
    assert not (await handler_object.check(Message("bye"), event_chat=1))[0]


async def test_an_answer_and_a_command_take_no_thread_for_their_filters(
    app: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert all(f.awaitable for f in _filters(app.dispatcher))
    hops: Counter[str] = Counter()
    original: Callable[..., Any] = asyncio.to_thread

    async def counting(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        inner = getattr(func, "func", func)
        hops[getattr(inner, "__qualname__", repr(inner))] += 1
        return await original(func, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", counting)
    app.llm.script(Reply(chunks=["Hello ", "there"]))
    app.tg.send_text(USER, "hi")
    await app.answered()
    app.tg.send_text(USER, "/help")
    await app.tg.wait_for(lambda: len(app.bot_messages()) >= 2)
    assert not hops, hops
