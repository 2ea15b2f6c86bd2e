"""What /link shows, on every platform: the code to enter on the other one, the
accounts already linked, and the outcome of entering a code."""

from __future__ import annotations

from dataclasses import dataclass

from core.i18n import t
from core.linking import CODE_TTL, LinkCode, LinkedIdentity, LinkResult, platform_name
from core.tiers import TIERS


@dataclass(frozen=True)
class LinkPage:
    text: str
    code: str  # shown inside `text`; platforms may mark it up (tap to copy)
    unlinkable: tuple[str, ...]  # the other platforms, each with an Unlink button


def _identity_line(lang: str, identity: LinkedIdentity, here: str) -> str:
    name = f" @{identity.username}" if identity.username else ""
    if identity.platform == here:
        name += t(lang, "link.here")
    return t(lang, "link.identity", platform=platform_name(identity.platform), name=name)


def accounts_text(lang: str, identities: list[LinkedIdentity], here: str) -> str:
    """The linked accounts, or nothing when there is only this one."""
    if len(identities) < 2:
        return ""
    return "\n".join([t(lang, "link.header"), *(_identity_line(lang, i, here) for i in identities)])


def unlinkable(identities: list[LinkedIdentity], here: str) -> tuple[str, ...]:
    if len(identities) < 2:
        return ()
    return tuple(i.platform for i in identities if i.platform != here)


def link_page(lang: str, code: LinkCode, identities: list[LinkedIdentity], here: str) -> LinkPage:
    minutes = int(CODE_TTL.total_seconds() // 60)
    text = t(lang, "link.code", code=code.code, minutes=minutes)
    accounts = accounts_text(lang, identities, here)
    if accounts:
        text = f"{accounts}\n\n{text}"
    return LinkPage(text, code.code, unlinkable(identities, here))


def done_text(lang: str, result: LinkResult) -> str:
    text = t(
        lang,
        "link.done",
        platforms=" + ".join(platform_name(p) for p in result.platforms),
        plan=TIERS[result.tier].name,
        conversations=result.conversations,
    )
    if result.ended_recurring and result.ended_tier is not None:
        text += "\n\n" + t(lang, "link.ended_recurring", plan=TIERS[result.ended_tier].name)
    return text
