"""The `oneai` command: run, migrate, chat, models, grant, admin.

A problem the operator can fix (configuration, a file, a port, a token, the database)
stops it with exit code 2 and one line on stderr naming the variable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable, Coroutine
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.startup import check_llm_key, check_run, load_catalog, load_modes
from core.config import ConfigError, Settings, load_settings
from core.db.migrate import prepare_database, upgrade_head_async
from core.errors import OneAIError
from core.logs import secret_values, setup_logging

if TYPE_CHECKING:
    from core.services import Services

log = logging.getLogger("oneai")

# Where an interactive `oneai chat` logs, so log lines do not break into the answers.
CHAT_LOG = Path("oneai-chat.log")

NO_PLATFORM = (
    "Nothing to run: set TELEGRAM_BOT_TOKEN and/or DISCORD_BOT_TOKEN "
    "(in the environment or in .env; see .env.example). "
    "To try the models without a bot, run `oneai chat`."
)


def _fail(message: str, code: int = 2) -> int:
    print(f"oneai: {message}", file=sys.stderr)
    return code


def _setup_logging(settings: Settings, log_file: Path | None = None) -> Path | None:
    """Logs go to stderr, or to `log_file` when given. Returns the file in use: None when
    there is none, or it cannot be written (then only warnings reach stderr)."""
    level: str = settings.app.log_level
    handler: logging.Handler = logging.StreamHandler()
    if log_file is not None:
        try:
            handler = logging.FileHandler(log_file, encoding="utf-8")
        except OSError:
            log_file = None
            if logging.getLevelName(level) < logging.WARNING:
                level = "WARNING"
    setup_logging(level, settings.app.log_format, _secrets(settings), handler)
    return log_file


def _secrets(settings: Settings) -> list[str]:
    """Every secret the settings hold, for the log redactor. A section that does not
    validate holds none we could know."""
    sections = []
    for name in ("db", "redis", "llm", "telegram", "discord", "payments", "yookassa", "razorpay"):
        with contextlib.suppress(Exception):
            sections.append(getattr(settings, name))
    return secret_values(sections)


async def _cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    await upgrade_head_async(settings.db.database_url)
    print("database is up to date")
    return 0


async def _cmd_models(settings: Settings, _args: argparse.Namespace) -> int:
    from core.tiers import TIERS

    catalog = await load_catalog(settings)
    # A server's own model list says nothing of prices: no "$0" that looks like free.
    priced = settings.llm.is_openrouter or settings.llm.catalog_file is not None
    for key, models in catalog.grouped().items():
        print(key.value)
        for model in models:
            mark = "*" if model.id == catalog.default.id else " "
            price = f"${model.prompt_price}/${model.completion_price} per 1M  " if priced else ""
            print(
                f" {mark} {model.id:<46} {model.name:<28} "
                f"{model.context_length:>8,} ctx  {price}{TIERS[model.min_tier].name}+"
            )
    return 0


async def _cmd_chat(settings: Settings, args: argparse.Namespace) -> int:
    from bot.console.app import ConsoleChat
    from core.services import Services, check_redis

    check_llm_key(settings.llm)
    catalog = await load_catalog(settings)
    modes = load_modes(settings)
    await check_redis(settings.redis.redis_url)
    await prepare_database(settings.db.database_url)
    # A worker like the bot's: it proves it is alive, so a bot running beside it
    # never takes its answers for a dead worker's.
    services = Services.build(settings, catalog=catalog, role="cli", modes=modes)
    chat = ConsoleChat(
        services,
        user_name=args.user,
        model=args.model,
        interactive=args.interactive,
        log_file=args.log_file,
    )
    try:
        await services.go_live()
        return await chat.run()
    finally:
        await services.close()


async def _cmd_run(settings: Settings, _args: argparse.Namespace) -> int:
    from bot.runner import run_bot

    if settings.telegram.bot_token is None and settings.discord.bot_token is None:
        return _fail(NO_PLATFORM)
    catalog = await check_run(settings)
    return await run_bot(settings, catalog=catalog)


async def _cmd_grant(settings: Settings, args: argparse.Namespace) -> int:
    from core.grants import GrantError, grant
    from core.services import Services

    catalog = await load_catalog(settings)
    await prepare_database(settings.db.database_url)
    services = Services.build(settings, catalog=catalog)
    try:
        change = await grant(services, args.user, args.tier, args.days)
    except GrantError as exc:
        return _fail(str(exc))
    finally:
        await services.close()
    print(
        f"user {change.user_id}: {change.old_tier.value} -> {change.new_tier.value} "
        f"until {change.period_end:%Y-%m-%d %H:%M} UTC ({change.reason.value})"
    )
    return 0


async def _cmd_admin(settings: Settings, args: argparse.Namespace) -> int:
    """`oneai admin …`: the admin commands of the bots, for an operator at a shell
    (named "cli" in the audit log)."""
    from core.llm.catalog import ModelChoiceError
    from core.services import Services

    catalog = await load_catalog(settings)
    await prepare_database(settings.db.database_url)
    services = Services.build(settings, catalog=catalog, role="cli")
    try:
        lines = await _run_admin(services, args)
    except ModelChoiceError as exc:
        return _fail(exc.pointing_to("`oneai admin models`"))
    except OneAIError as exc:  # AdminError, a refund refused, a usage line
        return _fail(exc.user_message)
    finally:
        await services.close()
    print("\n".join(lines))
    return 0


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "run": _cmd_run,
    "migrate": _cmd_migrate,
    "chat": _cmd_chat,
    "models": _cmd_models,
    "grant": _cmd_grant,
    "admin": _cmd_admin,
}


async def _run_admin(services: Services, args: argparse.Namespace) -> list[str]:
    """The lines `oneai admin COMMAND` prints."""
    from core.admin import actions, audit, models, people, stats
    from core.admin.access import CLI_ACTOR

    # What the bots see: the models turned off as the database says now.
    await services.admin_sync.refresh_models()
    command = args.admin_command
    if command == "refund":
        return [await _refund(services, args.payment, " ".join(args.reason) or None)]
    if command == "broadcasts":
        return await _broadcasts(services, args.action, args.broadcast)
    if command == "access":
        return await _access(services, args.action, args.values)
    if command == "stats":
        return [(await stats.stats_screen(services, "en")).text]
    if command == "audit":
        return [(await audit.audit_page(services, args.page)).text]
    if command == "models":
        if args.action == "refresh":
            return [(await models.refresh_catalog(services, CLI_ACTOR)).text]
        if args.action in ("enable", "disable"):
            if not args.model:
                raise _Usage(f"oneai admin models {args.action} MODEL")
            # A number is the model's place in `oneai admin models` (from 1).
            model: str | int = int(args.model) - 1 if args.model.isdigit() else args.model
            if args.action == "enable":
                done = await models.enable_model(services, CLI_ACTOR, model)
            else:
                reason = " ".join(args.reason) or None
                done = await models.disable_model(services, CLI_ACTOR, model, reason)
            return [done.text]
        return [(await models.models_page(services)).text]
    user_id = await people.find_person(services, args.user)
    if command == "person":
        return [(await people.person_card(services, user_id)).text]
    if command == "grant":
        result = await actions.grant(services, CLI_ACTOR, user_id, args.tier, args.days)
    elif command == "revoke":
        result = await actions.revoke(services, CLI_ACTOR, user_id)
    elif command == "reset":
        result = await actions.reset_quota(services, CLI_ACTOR, user_id, args.quota)
    elif command == "ban":
        result = await actions.ban(services, CLI_ACTOR, user_id, " ".join(args.reason) or None)
    else:
        result = await actions.unban(services, CLI_ACTOR, user_id)
    return [result.text, *result.notes]


async def _broadcasts(services: Services, action: str | None, broadcast: int | None) -> list[str]:
    """The latest broadcasts and where each is; or pause / cancel one. The process
    that sends it stops within a second; a paused one is resumed from the bot."""
    from core.admin.access import CLI_ACTOR

    engine = services.broadcasts
    if action is not None:
        if broadcast is None:
            raise _Usage(f"oneai admin broadcasts {action} ID")
        step = engine.pause if action == "pause" else engine.cancel
        return [(await step(broadcast, actor=CLI_ACTOR)).line()]
    lines = []
    for info in await engine.recent(BROADCASTS_LISTED):
        progress = await engine.progress(info.id)
        first = info.text.strip().splitlines()[0] if info.text.strip() else "(a photo)"
        if len(first) > BROADCAST_LINE:
            first = first[: BROADCAST_LINE - 1] + "…"
        lines.append(
            f"#{info.id} {info.created_at:%Y-%m-%d %H:%M} · {info.audience.describe()}"
            f" · {progress.line()} · {first}"
        )
    return lines or ["No broadcasts yet."]


async def _access(services: Services, action: str | None, values: list[str]) -> list[str]:
    """A private deployment's list (ACCESS_MODE), an entry on or off it, or an invite."""
    from core.admin import allowlist
    from core.admin.access import CLI_ACTOR

    if action in ("allow", "deny"):
        if len(values) != 1:
            raise _Usage(f"oneai admin access {action} ENTRY")
        run = allowlist.allow if action == "allow" else allowlist.deny
        result = await run(services, CLI_ACTOR, values[0])
        return [result.text, *result.notes]
    if action == "invite":
        wanted = allowlist.parse_invite_args(values)
        if wanted is None:
            raise _Usage("oneai admin access invite [USES] [DAYS]")
        made = await allowlist.invite(services, CLI_ACTOR, *wanted)
        code = made.invite.code
        return [
            f"invite for {made.invite.uses} use(s), valid until {made.until}: {code}",
            f"Telegram: https://t.me/<your bot>?start={code}",
            f"Discord: /start {code}",
        ]
    return [(await allowlist.allowlist(services)).text]


async def _refund(services: Services, payment: str, reason: str | None) -> str:
    """Refund one payment; Stars go through the Telegram bot when its token is set."""
    from payments.service import Payments

    payments = Payments.build(services)
    bot = None
    if services.settings.telegram.bot_token is not None:
        from bot.telegram.factory import build_bot, star_stopper

        bot = build_bot(services.settings.telegram)
        payments.refunds.use_telegram(bot.refund_star_payment, star_stopper(bot))
    try:
        result = await payments.refunds.refund(payment, admin_user_id=None, reason=reason)
        return result.text("en")
    finally:
        if bot is not None:
            await bot.session.close()
        await payments.close()


BROADCASTS_LISTED = 10
BROADCAST_LINE = 60  # characters of a broadcast's first line in the list


class _Usage(OneAIError):
    code = "usage"

    def __init__(self, usage: str) -> None:
        super().__init__(f"usage: {usage}")


def _admin_parser(sub: Any) -> None:
    """`oneai admin …`: the admin operations, at a shell."""
    admin = sub.add_parser(
        "admin",
        help="admin operations: stats, people, plans, bans, refunds, models, broadcasts, audit log",
        description=(
            "Admin operations for an operator at a shell: every change is written to "
            'the audit log as done by "cli".'
        ),
    )
    commands = admin.add_subparsers(dest="admin_command", required=True, metavar="COMMAND")
    commands.add_parser(
        "stats",
        help="people, answers and tokens per day, top models, failures, plans, revenue",
        description=(
            "The stats screen: people and how many were active in 24 hours, 7 and 30 "
            "days; answers and tokens per day for 14 days; the top models; failures by "
            "kind; plans per tier; revenue per provider this month and last."
        ),
    )
    refund = commands.add_parser(
        "refund",
        help="refund a payment in full through the provider that took it",
        description=(
            "Refund one payment (its ledger id or the provider's charge id, as the "
            "person card lists them) through Stars, YooKassa or Razorpay, once however "
            "often asked; the plan it bought ends as the refund rules say."
        ),
    )
    refund.add_argument("payment", metavar="PAYMENT")
    refund.add_argument("reason", nargs="*", metavar="REASON")
    user_help = "our user id, telegram:ID, discord:ID or @username"
    person = commands.add_parser(
        "person",
        help="a person's card: accounts, plan, quotas, activity, payments",
        description=(
            "Find a person by our id, a platform account (telegram:ID, discord:ID) or "
            "@username, and show their accounts, plan and its end, quotas and their "
            "resets, last activity, conversations and payments."
        ),
    )
    person.add_argument("user", metavar="QUERY", help=user_help)
    grant = commands.add_parser(
        "grant",
        help="give a plan for some days",
        description=(
            "Give a person a plan (pro or enterprise) for DAYS days, added to the current "
            "end when they have it already. The person is told; the audit log keeps it."
        ),
    )
    grant.add_argument("user", metavar="USER", help=user_help)
    grant.add_argument("tier", metavar="TIER", help="pro or enterprise")
    grant.add_argument("days", metavar="DAYS", type=int, help="how many days")
    revoke = commands.add_parser(
        "revoke",
        help="take a person's plan away now",
        description=(
            "End a person's plan now: they are back on Free, with Free's limits. A plan "
            "that renews at a payment provider must be cancelled there too."
        ),
    )
    revoke.add_argument("user", metavar="USER", help=user_help)
    reset = commands.add_parser(
        "reset",
        help="reset a person's quotas to 0",
        description=(
            "Set what a person used in the current quota windows back to 0, for every "
            "quota or the one named; the windows keep their reset times."
        ),
    )
    reset.add_argument("user", metavar="USER", help=user_help)
    reset.add_argument(
        "quota",
        metavar="QUOTA",
        nargs="?",
        help="small_messages, large_messages or image_generation (default: all)",
    )
    ban = commands.add_parser(
        "ban",
        help="ban a person, with a reason",
        description=(
            "Ban a person: their answers that are streaming stop, and the bots answer "
            "them with one short note an hour at most, never with a model."
        ),
    )
    ban.add_argument("user", metavar="USER", help=user_help)
    ban.add_argument("reason", metavar="REASON", nargs="*", help="kept in the audit log")
    unban = commands.add_parser(
        "unban",
        help="lift a ban",
        description="Lift a person's ban: the bots answer them again as before.",
    )
    unban.add_argument("user", metavar="USER", help=user_help)
    models = commands.add_parser(
        "models",
        help="list the models, turn one off or on for everyone, refresh the catalog",
        description=(
            "List every model with whether it is on; `disable MODEL [REASON]` turns one "
            "off for everyone (the bots refuse it and leave it out of their menus), "
            "`enable MODEL` turns it on again, `refresh` fetches prices and limits now."
        ),
    )
    models.add_argument(
        "action", metavar="ACTION", nargs="?", choices=("enable", "disable", "refresh")
    )
    models.add_argument("model", metavar="MODEL", nargs="?", help="a model id or its number")
    models.add_argument("reason", metavar="REASON", nargs="*", help="why it is turned off")
    audit = commands.add_parser(
        "audit",
        help="the latest audit log entries",
        description=(
            "The audit log, newest first, ten entries a page: who did what to whom, with "
            "what it was before and after."
        ),
    )
    audit.add_argument("page", metavar="PAGE", type=int, nargs="?", default=1)
    broadcasts = commands.add_parser(
        "broadcasts",
        help="the latest broadcasts and their progress; pause or cancel one",
        description=(
            "List the latest broadcasts with their audience and progress; `pause ID` or "
            "`cancel ID` stops one (the process sending it stops within a second). "
            "Broadcasts are written, sent and resumed from the bots' /admin menu."
        ),
    )
    broadcasts.add_argument("action", metavar="ACTION", nargs="?", choices=("pause", "cancel"))
    broadcasts.add_argument("broadcast", metavar="ID", type=int, nargs="?")
    access = commands.add_parser(
        "access",
        help="a private deployment: the allowlist, an entry on or off it, an invite",
        description=(
            "With ACCESS_MODE=allowlist or invite: list who is on the allowlist; "
            "`allow ENTRY` or `deny ENTRY` (telegram:ID, discord:ID or @username) "
            "changes it at once for every process; `invite [USES] [DAYS]` (1 use, 7 days "
            "by default) prints a new invite code."
        ),
    )
    access.add_argument("action", metavar="ACTION", nargs="?", choices=("allow", "deny", "invite"))
    access.add_argument("values", metavar="VALUE", nargs="*")


def _version() -> str:
    try:
        return metadata.version("oneai")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oneai", description="OneAI: chat with 20+ LLMs in Telegram and Discord."
    )
    parser.add_argument("--version", action="version", version=f"oneai {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "run",
        help="start every platform that has a token configured",
        description=(
            "Start the Telegram and/or Discord bot (whichever has a token) and the HTTP "
            "server for health, metrics and webhooks. The embedded SQLite database "
            "migrates itself; PostgreSQL needs `oneai migrate` first."
        ),
    )
    sub.add_parser(
        "migrate",
        help="bring the database schema up to date",
        description=(
            "Bring the schema of the database at DATABASE_URL to the latest version. "
            "Run it once per deploy on PostgreSQL."
        ),
    )
    chat = sub.add_parser(
        "chat",
        help="chat in the terminal (needs only an LLM endpoint)",
        description=(
            "Chat with the models in the terminal, on the same services the bots use. "
            "Reads lines from stdin, so it can be piped; /help lists the commands. "
            f"In a terminal, logs go to {CHAT_LOG}."
        ),
    )
    chat.add_argument("--model", help="model id to use (see `oneai models`)")
    chat.add_argument("--user", help="local user name (default: your login)")
    sub.add_parser(
        "models",
        help="list the model catalog",
        description=(
            "List the models by quota, with context size, price per million tokens and "
            "the lowest plan that may use each; * marks the default."
        ),
    )
    grant = sub.add_parser(
        "grant",
        help="give a person a plan for some days (Enterprise is granted, not sold)",
        description=(
            "Give a person a plan for DAYS days (added to the current end when they have "
            "it already), or take their plan away with `free`. Recorded in the plan "
            "history and the audit log, and the person is told."
        ),
    )
    grant.add_argument("user", help="our user id, or telegram:ID / discord:ID")
    grant.add_argument("tier", help="free, pro or enterprise")
    grant.add_argument(
        "days",
        type=int,
        nargs="?",
        help="days from today (or from the current end); not needed for free",
    )
    _admin_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # A terminal chat is interactive; a piped one answers line by line.
    args.interactive = args.command == "chat" and sys.stdin.isatty()
    try:
        settings = load_settings()
    except ConfigError as exc:
        return _fail(str(exc))
    args.log_file = _setup_logging(settings, CHAT_LOG if args.interactive else None)
    try:
        return asyncio.run(COMMANDS[args.command](settings, args))
    except KeyboardInterrupt:
        return 130
    except ConfigError as exc:  # the database, a file, a port, a token
        return _fail(str(exc))
    except OneAIError as exc:
        from bot.console.app import terminal_message

        return _fail(terminal_message(exc))
    except OSError as exc:
        return _fail(f"{exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}".rstrip(": "))
