"""`oneai run` at DEBUG, with every secret set to a value found nowhere else: a person
chats, buys a plan with Stars, opens a YooKassa link that is then paid, and payment
webhooks arrive (one forged). Not one line of the whole output holds a secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import aiohttp

from bot.telegram.callbacks import Buy, PayMethod
from tests.fakes.llm_server import FakeLLM, Reply
from tests.fakes.razorpay_server import FakeRazorpay
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.yookassa_server import FakeYooKassa
from tests.support.bot_process import BotProcess, bot_process, bot_variables
from tests.support.wait import until

USER = 4242
TOKEN = "7350000001:AAsecretTelegramTokenPartQwErTy_12345"
SECRETS = {
    "TELEGRAM_BOT_TOKEN": TOKEN,
    "LLM_API_KEY": "sk-or-v1-llmKeySecretValue9d8c7b6a",
    "TELEGRAM_WEBHOOK_SECRET": "webhookSecretValue_5e4d3c",
    "TELEGRAM_PAYMENT_PROVIDER_TOKEN": "381764678:TEST:providerTokenSecret77",
    "YOOKASSA_SECRET_KEY": "test_yookassaSecretKeyValue_Ab12Cd34",
    "RAZORPAY_KEY_SECRET": "razorpayKeySecretValue_Zy98Xw",
    "RAZORPAY_WEBHOOK_SECRET": "razorpayWebhookSecretValue_Q1w2",
}
SHOP_ID = "505050"
KEY_ID = "rzp_test_keyid4242"
STARS = Buy(method=PayMethod.STARS, tier="pro").pack()
YOOKASSA = Buy(method=PayMethod.YOOKASSA, tier="pro").pack()


async def test_no_secret_in_any_log_line(tmp_path: Path) -> None:
    async with (
        FakeTelegram(token=TOKEN) as tg,
        FakeLLM(default=Reply(text=None)) as llm,
        FakeYooKassa(shop_id=SHOP_ID, secret_key=SECRETS["YOOKASSA_SECRET_KEY"]) as yk,
        FakeRazorpay(key_id=KEY_ID, key_secret=SECRETS["RAZORPAY_KEY_SECRET"]) as rzp,
    ):
        tg.user(USER, first_name="Pay")
        variables = {
            **bot_variables(tg, llm, f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"),
            **SECRETS,
            "LOG_LEVEL": "DEBUG",
            "TELEGRAM_WEBHOOK_URL": "https://bot.example.test",
            "PAYMENTS_LINKS_IN_TELEGRAM": "true",
            "YOOKASSA_SHOP_ID": SHOP_ID,
            "YOOKASSA_API_URL": yk.api_url,
            "YOOKASSA_ALLOWED_IPS": "127.0.0.1",
            "RAZORPAY_KEY_ID": KEY_ID,
            "RAZORPAY_API_URL": rzp.url,
        }
        async with bot_process(tmp_path, variables) as bot:
            await tg.wait_for_call("setWebhook", timeout=30)
            hook = f"http://127.0.0.1:{bot.port}/telegram/webhook"

            async def deliver() -> None:
                while tg.pending_updates:
                    result = await tg.deliver_webhook(
                        hook, secret_token=SECRETS["TELEGRAM_WEBHOOK_SECRET"]
                    )
                    assert result.status == 200, result.body

            def said(fragment: str) -> bool:
                return any(fragment in (m.text or "") for m in tg.messages(USER, from_bot=True))

            # A chat, and a forged webhook delivery.
            tg.send_text(USER, "Hello, secret-free logs")
            forged = await tg.deliver_webhook(hook, secret_token="wrong")
            assert forged.status == 401
            await deliver()
            await until(lambda: said("Echo: Hello, secret-free logs"), 30)

            # Buying pro with Stars.
            tg.send_text(USER, "/plan")
            await deliver()
            await until(lambda: said("Your plan:"), 30)
            menu = [m for m in tg.messages(USER, from_bot=True) if "Your plan:" in (m.text or "")]
            tg.press(USER, menu[-1].message_id, STARS)
            await deliver()
            await until(lambda: any(c.ok for c in tg.calls_of("sendInvoice")), 30)
            invoice = next(c for c in tg.calls_of("sendInvoice") if c.ok)
            payload, amount = (
                str(invoice.params["payload"]),
                int(invoice.params["prices"][0]["amount"]),
            )
            query = tg.pre_checkout(USER, payload, "XTR", amount)
            await deliver()
            await until(lambda: tg.pre_checkouts[query].answered, 30)
            tg.successful_payment(USER, payload, "XTR", amount, "charge-secret-test")
            await deliver()

            # A YooKassa link, paid, and its notification.
            tg.press(USER, menu[-1].message_id, YOOKASSA)
            await deliver()
            await until(lambda: bool(yk.payments), 30)
            (payment_id,) = yk.payments
            yk.succeed(payment_id)
            await post(bot, "/webhooks/yookassa", yk.notification("payment.succeeded", payment_id))

            # Razorpay webhooks: one signed with the secret, one forged.
            body = {"event": "payment.captured", "payload": {}, "created_at": 1}
            raw = json.dumps(body).encode()
            signature = hmac.new(
                SECRETS["RAZORPAY_WEBHOOK_SECRET"].encode(), raw, hashlib.sha256
            ).hexdigest()
            await post(bot, "/webhooks/razorpay", raw, {"X-Razorpay-Signature": signature})
            await post(bot, "/webhooks/razorpay", raw, {"X-Razorpay-Signature": "0" * 64})

            # The metrics page, while we are here: the payment and webhooks were counted.
            async def counted() -> bool:
                status, metrics = await get(bot, "/metrics")
                assert status == 200
                return any(
                    line.startswith("oneai_payments_total{")
                    and 'provider="yookassa"' in line
                    and 'result="applied"' in line
                    for line in metrics.splitlines()
                )

            await until(counted, 30)
            _, metrics = await get(bot, "/metrics")
            for provider, answered in (
                ("razorpay", "400"),
                ("razorpay", "200"),
                ("yookassa", "200"),
            ):
                labels = f'provider="{provider}",status="{answered}"'
                assert "oneai_webhook_events_total{" + labels + "} 1.0" in metrics
            status, ready = await get(bot, "/readyz")
            assert (status, json.loads(ready)) == (200, {"status": "ok"})

            bot.terminate()
            assert await bot.wait() == 0, bot.output[-3000:]
        output = bot.output
    assert "DEBUG" in output  # the level really was DEBUG
    assert "platforms: telegram (webhook)" in output
    leaks = {name: output.count(value) for name, value in SECRETS.items() if value in output}
    # The secret parts alone, and the Basic-auth headers built from them.
    for name, part in (
        ("TELEGRAM_BOT_TOKEN (secret part)", TOKEN.split(":", 1)[1]),
        ("YooKassa basic auth", _basic(SHOP_ID, SECRETS["YOOKASSA_SECRET_KEY"])),
        ("Razorpay basic auth", _basic(KEY_ID, SECRETS["RAZORPAY_KEY_SECRET"])),
    ):
        if part in output:
            leaks[name] = output.count(part)
    assert leaks == {}, leaks
    # The whole scenario ran: the Stars purchase and the YooKassa renewal.
    assert "free -> pro" in output
    assert "pro -> pro (renewal)" in output


def _basic(user: str, secret: str) -> str:
    return base64.b64encode(f"{user}:{secret}".encode()).decode()


async def post(
    bot: BotProcess,
    path: str,
    body: dict[str, object] | bytes,
    headers: dict[str, str] | None = None,
) -> int:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{bot.port}{path}",
            data=data,
            headers={"Content-Type": "application/json", **(headers or {})},
        ) as response,
    ):
        return response.status


async def get(bot: BotProcess, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{bot.port}{path}") as response,
    ):
        return response.status, await response.text()
