"""/usage, /model, /history, /export, /rename, /settings, /plan, /cancel and /help:
the core views (core/views, payments/offers) drawn with Discord's messages,
select menus, buttons and modals. Replies are ephemeral: they are the person's own."""

from __future__ import annotations

import io
import logging
import re
import uuid
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.people import Person, person_of
from core.errors import OneAIError
from core.i18n import error_text, t
from core.views.cancel import cancel
from core.views.history import (
    ExportFile,
    HistoryPage,
    export_conversation,
    export_current,
    history_page,
    open_conversation,
    rename_current,
)
from core.views.models import ModelMenu, ModelScope, menu_for, model_at, switch_model
from core.views.search import toggle_web_search, web_search_state
from core.views.settings import (
    SettingsOp,
    choose_language,
    clear_system_prompt,
    save_system_prompt,
    settings_view,
)
from core.views.usage import usage_report
from payments.offers import OfferKind, find_offer, plan_page, start_checkout

if TYPE_CHECKING:
    from bot.discord.client import OneAIBot

log = logging.getLogger(__name__)

# Discord's limits on components.
SELECT_OPTIONS = 25
LABEL_CHARS = 100
HISTORY_PER_PAGE = 8


def _client(interaction: discord.Interaction[Any]) -> OneAIBot:
    client: Any = interaction.client
    return client  # type: ignore[no-any-return]


async def _owner(interaction: discord.Interaction[Any], owner_id: int) -> Person | None:
    """The presser, if the component was drawn for them; else an ephemeral note."""
    person = await person_of(_client(interaction).services, interaction)
    if person is None:
        return None
    if person.user.id != owner_id:
        await interaction.response.send_message(t(person.lang, "not_yours"), ephemeral=True)
        return None
    return person


def _values(interaction: discord.Interaction[Any]) -> list[str]:
    """What was picked in a select menu."""
    data: Any = interaction.data or {}
    return [str(value) for value in data.get("values", [])]


def _index(values: list[str]) -> bool:
    return bool(values) and values[0].isdigit()


def _file(export: ExportFile) -> discord.File:
    return discord.File(io.BytesIO(export.content.encode()), filename=export.filename)


# -- /model ------------------------------------------------------------------------------


def _choice_label(name: str, required_plan: str | None) -> str:
    label = f"{name} 🔒 {required_plan}" if required_plan else name
    return label[:LABEL_CHARS]


def model_view(menu: ModelMenu, user_id: int) -> discord.ui.View:
    """One select menu per quota class; a locked model names the plan it needs."""
    view = discord.ui.View(timeout=None)
    for number, group in enumerate(menu.groups[:5]):
        options = [
            discord.SelectOption(
                label=(
                    f"{choice.name} 🔒 {choice.required_plan}" if choice.locked else choice.name
                )[:LABEL_CHARS],
                value=str(choice.index),
                default=choice.current,
            )
            for choice in group.models[:SELECT_OPTIONS]
        ]
        if options:
            view.add_item(ModelSelect(menu.scope, user_id, number, group.label, options))
    return view


class ModelSelect(
    discord.ui.DynamicItem[discord.ui.Select[Any]],
    template=r"oneai:m:(?P<scope>[cd]):(?P<user>[0-9]{1,20}):(?P<group>[0-9])",
):
    def __init__(
        self,
        scope: ModelScope,
        user_id: int,
        group: int,
        placeholder: str = "",
        options: list[discord.SelectOption] | None = None,
    ) -> None:
        self.scope = scope
        self.user_id = user_id
        super().__init__(
            discord.ui.Select(
                custom_id=f"oneai:m:{scope.value}:{user_id}:{group}",
                placeholder=placeholder[:LABEL_CHARS] or None,
                options=options or [discord.SelectOption(label="-", value="-1")],
            )
        )

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> ModelSelect:
        return cls(ModelScope(match["scope"]), int(match["user"]), int(match["group"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        person = await _owner(interaction, self.user_id)
        if person is None:
            return
        services = _client(interaction).services
        values = _values(interaction)
        model = model_at(services.catalog, int(values[0])) if _index(values) else None
        if model is None:
            await interaction.response.send_message(t(person.lang, "stale_button"), ephemeral=True)
            return
        try:
            switched = await switch_model(services, person.user, model.id, person.lang, self.scope)
        except OneAIError as exc:
            await interaction.response.send_message(error_text(person.lang, exc), ephemeral=True)
            return
        await interaction.response.send_message(switched.notice, ephemeral=True)


# -- /history ------------------------------------------------------------------------------


def history_view(page: HistoryPage, user_id: int, lang: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    if page.entries:
        options = [
            discord.SelectOption(
                label=(("• " if entry.current else "") + entry.title)[:LABEL_CHARS],
                value=entry.id.hex,
                description=entry.last_active.strftime("%Y-%m-%d %H:%M UTC"),
            )
            for entry in page.entries[:SELECT_OPTIONS]
        ]
        view.add_item(HistorySelect(user_id, "o", t(lang, "history.resume"), options))
        view.add_item(HistorySelect(user_id, "e", t(lang, "history.export"), options))
    if page.previous_page is not None:
        view.add_item(HistoryPager(user_id, page.previous_page, "p", "◀"))
    if page.next_page is not None:
        view.add_item(HistoryPager(user_id, page.next_page, "n", "▶"))
    return view


class HistorySelect(
    discord.ui.DynamicItem[discord.ui.Select[Any]],
    # o: resume the conversation picked; e: export it.
    template=r"oneai:h:(?P<op>[oe]):(?P<user>[0-9]{1,20})",
):
    def __init__(
        self,
        user_id: int,
        op: str,
        placeholder: str = "",
        options: list[discord.SelectOption] | None = None,
    ) -> None:
        self.user_id = user_id
        self.op = op
        super().__init__(
            discord.ui.Select(
                custom_id=f"oneai:h:{op}:{user_id}",
                placeholder=placeholder or None,
                options=options or [discord.SelectOption(label="-", value="-")],
            )
        )

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> HistorySelect:
        return cls(int(match["user"]), match["op"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        person = await _owner(interaction, self.user_id)
        if person is None:
            return
        services = _client(interaction).services
        values = _values(interaction)
        try:
            conversation_id = uuid.UUID(hex=values[0])
        except (IndexError, ValueError):
            await interaction.response.send_message(t(person.lang, "stale_button"), ephemeral=True)
            return
        try:
            if self.op == "e":
                export = await export_conversation(services, person.user.id, conversation_id)
                await interaction.response.send_message(
                    export.caption[:LABEL_CHARS], file=_file(export), ephemeral=True
                )
                return
            conversation = await open_conversation(services, person.user.id, conversation_id)
        except OneAIError as exc:
            await interaction.response.send_message(error_text(person.lang, exc), ephemeral=True)
            return
        await interaction.response.send_message(
            t(person.lang, "history.resumed", title=conversation.title), ephemeral=True
        )


class HistoryPager(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"oneai:hp:(?P<user>[0-9]{1,20}):(?P<page>[0-9]{1,5}):(?P<slot>[pn])",
):
    def __init__(self, user_id: int, page: int, slot: str, label: str = "") -> None:
        self.user_id = user_id
        self.page = page
        super().__init__(
            discord.ui.Button(
                label=label or slot,
                style=discord.ButtonStyle.secondary,
                custom_id=f"oneai:hp:{user_id}:{page}:{slot}",
            )
        )

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> HistoryPager:
        return cls(int(match["user"]), int(match["page"]), match["slot"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        person = await _owner(interaction, self.user_id)
        if person is None:
            return
        services = _client(interaction).services
        page = await history_page(
            services, person.user.id, person.lang, self.page, per_page=HISTORY_PER_PAGE
        )
        await interaction.response.edit_message(
            content=_history_text(page), view=history_view(page, person.user.id, person.lang)
        )


def _history_text(page: HistoryPage) -> str:
    lines = [page.text]
    for entry in page.entries:
        mark = "• " if entry.current else ""
        lines.append(f"{mark}**{entry.title}** — {entry.last_active:%Y-%m-%d}")
    return "\n".join(lines)


# -- /settings ---------------------------------------------------------------------------------


class PromptModal(discord.ui.Modal):
    def __init__(self, lang: str) -> None:
        super().__init__(title=t(lang, "settings.prompt")[:45], timeout=600)
        self.lang = lang
        self.prompt: discord.ui.TextInput[PromptModal] = discord.ui.TextInput(
            label=t(lang, "settings.prompt")[:45],
            style=discord.TextStyle.paragraph,
            max_length=4000,
        )
        self.add_item(self.prompt)

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        services = _client(interaction).services
        person = await person_of(services, interaction)
        if person is None:
            return
        reply = await save_system_prompt(services, person.user.id, self.prompt.value, person.lang)
        await interaction.response.send_message(reply, ephemeral=True)


class SettingsButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"oneai:st:(?P<op>[a-z]):(?P<user>[0-9]{1,20}):(?P<value>[a-z]{0,8})",
):
    def __init__(self, op: SettingsOp, user_id: int, value: str = "", label: str = "") -> None:
        self.op = op
        self.user_id = user_id
        self.value = value
        super().__init__(
            discord.ui.Button(
                label=(label or op.value)[:LABEL_CHARS],
                style=discord.ButtonStyle.secondary,
                custom_id=f"oneai:st:{op.value}:{user_id}:{value}",
            )
        )

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> SettingsButton:
        return cls(SettingsOp(match["op"]), int(match["user"]), match["value"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        person = await _owner(interaction, self.user_id)
        if person is None:
            return
        services = _client(interaction).services
        lang = person.lang
        if self.op is SettingsOp.PROMPT:
            await interaction.response.send_modal(PromptModal(lang))
            return
        if self.op is SettingsOp.CLEAR_PROMPT:
            reply = await clear_system_prompt(services, person.user, lang)
        elif self.op is SettingsOp.WEB_SEARCH:
            reply = await toggle_web_search(services, person.user, lang)
        elif self.op is SettingsOp.MODEL:
            menu = await menu_for(services, person.user, lang, ModelScope.DEFAULT)
            await interaction.response.send_message(
                menu.header, view=model_view(menu, person.user.id), ephemeral=True
            )
            return
        else:
            chosen = await choose_language(services, person.user, self.value)
            reply = chosen if chosen is not None else t(lang, "stale_button")
        await interaction.response.send_message(reply, ephemeral=True)


# -- /plan ------------------------------------------------------------------------------------


class BuyButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"oneai:buy:(?P<method>[a-z]):(?P<tier>[a-z]{1,16}):(?P<user>[0-9]{1,20})",
):
    def __init__(self, method: str, tier: str, user_id: int, label: str = "") -> None:
        self.method = method
        self.tier = tier
        self.user_id = user_id
        super().__init__(
            discord.ui.Button(
                label=(label or tier)[:LABEL_CHARS],
                style=discord.ButtonStyle.primary,
                custom_id=f"oneai:buy:{method}:{tier}:{user_id}",
            )
        )

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> BuyButton:
        return cls(match["method"], match["tier"], int(match["user"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        from payments.offers import PayMethod

        person = await _owner(interaction, self.user_id)
        if person is None:
            return
        bot = _client(interaction)
        lang = person.lang
        try:
            method = PayMethod(self.method)
        except ValueError:
            method = None
        offer = (
            find_offer(bot.services, bot.payments, "discord", self.tier, method, lang)
            if method is not None
            else None
        )
        if offer is None or offer.kind is not OfferKind.LINK:
            await interaction.response.send_message(t(lang, "stale_button"), ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            link = await start_checkout(bot.payments, person.user.id, offer, "discord", lang)
        except Exception:
            log.exception("checkout for user %s failed", person.user.id)
            await interaction.followup.send(t(lang, "error.generic"), ephemeral=True)
            return
        view = discord.ui.View(timeout=None)
        view.add_item(discord.ui.Button(label=link.button[:LABEL_CHARS], url=link.url))
        await interaction.followup.send(link.text, view=view, ephemeral=True)


# -- the cog --------------------------------------------------------------------------------------


ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (
    ModelSelect,
    HistorySelect,
    HistoryPager,
    SettingsButton,
    BuyButton,
)


class AccountCog(commands.Cog):
    def __init__(self, bot: OneAIBot) -> None:
        self.bot = bot
        self.services = bot.services

    async def _person(self, interaction: discord.Interaction[Any]) -> Person | None:
        return await person_of(self.services, interaction)

    @app_commands.command(name="help", description="How to use the bot")
    async def help(self, interaction: discord.Interaction[Any]) -> None:
        person = await self._person(interaction)
        if person is None:
            return
        await interaction.response.send_message(t(person.lang, "help.discord"), ephemeral=True)

    @app_commands.command(name="usage", description="Your quotas and when they reset")
    async def usage(self, interaction: discord.Interaction[Any]) -> None:
        person = await self._person(interaction)
        if person is None:
            return
        report = await usage_report(self.services, person.user.id, person.lang)
        await interaction.response.send_message(report.text, ephemeral=True)

    @app_commands.command(name="model", description="Pick the AI model")
    async def model(self, interaction: discord.Interaction[Any]) -> None:
        person = await self._person(interaction)
        if person is None:
            return
        menu = await menu_for(self.services, person.user, person.lang, ModelScope.CONVERSATION)
        await interaction.response.send_message(
            menu.header, view=model_view(menu, person.user.id), ephemeral=True
        )

    @app_commands.command(name="history", description="Your conversations")
    async def history(self, interaction: discord.Interaction[Any]) -> None:
        person = await self._person(interaction)
        if person is None:
            return
        page = await history_page(
            self.services, person.user.id, person.lang, 1, per_page=HISTORY_PER_PAGE
        )
        await interaction.response.send_message(
            _history_text(page),
            view=history_view(page, person.user.id, person.lang),
            ephemeral=True,
        )

    @app_commands.command(name="export", description="This conversation as a Markdown file")
    async def export(self, interaction: discord.Interaction[Any]) -> None:
        person = await self._person(interaction)
        if person is None:
            return
        export = await export_current(self.services, person.user.id)
        if export is None:
            await interaction.response.send_message(t(person.lang, "nothing"), ephemeral=True)
            return
        await interaction.response.send_message(
            export.caption[:LABEL_CHARS], file=_file(export), ephemeral=True
        )

    @app_commands.command(name="rename", description="Rename this conversation")
    @app_commands.describe(title="The new title")
    async def rename(self, interaction: discord.Interaction[Any], title: str) -> None:
        person = await self._person(interaction)
        if person is None:
            return
        try:
            reply = await rename_current(self.services, person.user.id, title, person.lang)
        except OneAIError as exc:
            reply = error_text(person.lang, exc)
        await interaction.response.send_message(reply, ephemeral=True)

    @app_commands.command(name="settings", description="System prompt, default model, language")
    async def settings(self, interaction: discord.Interaction[Any]) -> None:
        person = await self._person(interaction)
        if person is None:
            return
        state = await web_search_state(self.services, person.user)
        shown = settings_view(self.services, person.user, person.lang, state)
        view = discord.ui.View(timeout=None)
        for button in shown.buttons:
            view.add_item(SettingsButton(button.op, person.user.id, button.value, button.label))
        await interaction.response.send_message(shown.text, view=view, ephemeral=True)

    @app_commands.command(name="plan", description="Plans and upgrades")
    async def plan(self, interaction: discord.Interaction[Any]) -> None:
        person = await self._person(interaction)
        if person is None:
            return
        page = await plan_page(
            self.services, self.bot.payments, person.user.id, "discord", person.lang
        )
        view = discord.ui.View(timeout=None)
        for offer in page.offers:
            if offer.kind is OfferKind.SKU and offer.sku_id is not None:
                view.add_item(
                    discord.ui.Button(style=discord.ButtonStyle.premium, sku_id=offer.sku_id)
                )
            elif offer.kind is OfferKind.LINK:
                view.add_item(
                    BuyButton(offer.method.value, offer.tier.value, person.user.id, offer.label)
                )
        await interaction.response.send_message(page.text[:2000], view=view, ephemeral=True)

    @app_commands.command(name="cancel", description="Stop the answer being written")
    async def cancel(self, interaction: discord.Interaction[Any]) -> None:
        person = await self._person(interaction)
        if person is None:
            return
        result = await cancel(self.services, person.user.id, person.lang, pending=False)
        await interaction.response.send_message(result.text, ephemeral=True)
