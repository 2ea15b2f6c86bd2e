"""The Telegram webhook route: aiogram's handler with the update parsed in bounds.

aiogram's SimpleRequestHandler parses the body with `request.json()`: a correctly
signed body nested 100,000 deep or holding a 100,000-digit number raises inside the
parser, and the answer is a 500 (Telegram then retries the same update). Here the
secret is checked first, exactly as aiogram does, then the body is parsed by
`loads_bounded` and validated as an Update; what fails either answers 400.

The 200 goes out once the update is taken (`core/intake.py`): a process killed
before that never answered, and Telegram delivers the update again elsewhere.

Once the process is stopping (`closed`), updates are refused with 503, so Telegram
delivers them again, to a process that stays; payment updates are still taken:
Telegram gives a pre-checkout query 10 seconds.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiogram.methods import TelegramMethod
from aiogram.types import Update
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web
from pydantic import ValidationError

from bot.telegram.middlewares import is_payment
from core import intake
from core.json_bounded import BadJSON, loads_bounded

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# The longest a webhook answer waits for its update to be taken: well within
# Telegram's patience, and the update is answered 200 anyway then.
TAKEN_WITHIN = 5.0


class BoundedRequestHandler(SimpleRequestHandler):
    closed = False  # set when the process stops taking updates

    async def handle(self, request: web.Request) -> web.Response:
        bot = await self.resolve_bot(request)
        if not self.verify_secret(request.headers.get(SECRET_HEADER, ""), bot):
            return web.Response(body="Unauthorized", status=401)
        try:
            payload = loads_bounded(await request.read())
            update = Update.model_validate(payload, context={"bot": bot})
        except BadJSON as exc:
            log.warning("telegram webhook: refused a body: %s", exc)
            return web.json_response({"error": str(exc)}, status=400)
        except ValidationError as exc:
            log.warning("telegram webhook: not an update (%d errors)", exc.error_count())
            return web.json_response({"error": "not an update"}, status=400)
        if self.closed and not is_payment(update):
            return web.json_response({"error": "stopping"}, status=503)
        if self.handle_in_background:
            # aiogram's own background path, fed the update already parsed; the
            # answer waits until the update cannot be lost (core/intake.py).
            with intake.receipt() as taken:
                task = asyncio.create_task(self._background_feed_update(bot, payload))
            self._background_feed_update_tasks.add(task)
            task.add_done_callback(self._background_feed_update_tasks.discard)
            await intake.wait_taken(taken, task, TAKEN_WITHIN)
            return web.json_response({}, dumps=bot.session.json_dumps)
        result: TelegramMethod[Any] | None = await self.dispatcher.feed_webhook_update(
            bot, update, **self.data
        )
        return web.Response(body=self._build_response_writer(bot=bot, result=result))

    __call__ = handle
