"""The `oneai` command: run, migrate, chat, models, grant.

A problem the operator can fix (configuration, a file, a port, a token, the database)
stops it with exit code 2 and one line on stderr naming the variable.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from importlib import metadata
from pathlib import Path
from typing import Any

from bot.startup import check_run, load_catalog
from core.config import ConfigError, Settings, load_settings
from core.db.migrate import prepare_database, upgrade_head_async
from core.errors import OneAIError

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
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[handler],
        force=True,
    )
    if settings.app.log_level != "DEBUG":
        # Migration chatter on every start says nothing an operator needs.
        logging.getLogger("alembic").setLevel(logging.WARNING)
    return log_file


async def _cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    await upgrade_head_async(settings.db.database_url)
    print("database is up to date")
    return 0


async def _cmd_models(settings: Settings, _args: argparse.Namespace) -> int:
    from core.tiers import TIERS

    catalog = load_catalog(settings)
    for key, models in catalog.grouped().items():
        print(key.value)
        for model in models:
            mark = "*" if model.id == catalog.default.id else " "
            print(
                f" {mark} {model.id:<46} {model.name:<28} "
                f"{model.context_length:>8,} ctx  ${model.prompt_price}/${model.completion_price}"
                f" per 1M  {TIERS[model.min_tier].name}+"
            )
    return 0


async def _cmd_chat(settings: Settings, args: argparse.Namespace) -> int:
    from bot.console.app import ConsoleChat
    from core.services import Services, check_redis

    catalog = load_catalog(settings)
    await check_redis(settings.redis.redis_url)
    await prepare_database(settings.db.database_url)
    # A worker like the bot's: it proves it is alive, so a bot running beside it
    # never takes its answers for a dead worker's.
    services = Services.build(settings, catalog=catalog, role="cli")
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

    catalog = load_catalog(settings)
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


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "run": _cmd_run,
    "migrate": _cmd_migrate,
    "chat": _cmd_chat,
    "models": _cmd_models,
    "grant": _cmd_grant,
}


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
