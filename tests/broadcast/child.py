"""A process that sends one broadcast on Telegram until it is killed:

    python -m tests.broadcast.child DATABASE_URL API_URL TOKEN BROADCAST_ID

It starts the broadcast (a draft) and prints "sending" once it does; the test
SIGKILLs it halfway, as a crash or an OOM kill would."""

from __future__ import annotations

import asyncio
import sys

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

from bot.telegram.broadcast import TelegramBroadcastSender
from core.accounts import AccountService
from core.broadcast import BroadcastEngine
from core.db.engine import Database


async def main(database_url: str, api_url: str, token: str, broadcast_id: int) -> None:
    db = Database(database_url)
    bot = Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(api_url)))
    engine = BroadcastEngine(db, AccountService(db), worker_id="child")
    engine.add_sender(TelegramBroadcastSender(bot))
    await engine.start(broadcast_id)
    print("sending", flush=True)
    await engine.wait(broadcast_id)
    print("done", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    url, api, bot_token, broadcast = sys.argv[1:5]
    asyncio.run(main(url, api, bot_token, int(broadcast)))
