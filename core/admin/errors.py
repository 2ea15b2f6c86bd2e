"""Admin requests that are refused, each with a message for the admin."""

from __future__ import annotations

from core.errors import OneAIError
from core.i18n import t


class AdminError(OneAIError):
    """A refused admin request; `user_message` is the English text of `error.<code>`
    (`core.i18n.error_text` gives it in the admin's language)."""

    code = "admin_error"

    def __init__(self, **details: object) -> None:
        super().__init__(t("en", f"error.{self.code}", **details), **details)


class PersonNotFound(AdminError):
    code = "admin_person_not_found"

    def __init__(self, query: str) -> None:
        super().__init__(query=query)


class PersonAmbiguous(AdminError):
    """Several people match (one username used by two people on two platforms)."""

    code = "admin_person_ambiguous"

    def __init__(self, query: str, user_ids: list[int]) -> None:
        super().__init__(query=query, users=", ".join(f"#{i}" for i in user_ids))
        self.user_ids = user_ids


class BadTier(AdminError):
    code = "admin_bad_tier"

    def __init__(self, tier: str) -> None:
        super().__init__(tier=tier)


class BadDays(AdminError):
    code = "admin_bad_days"

    def __init__(self, most: int) -> None:
        super().__init__(most=most)


class NothingToRevoke(AdminError):
    code = "admin_nothing_to_revoke"

    def __init__(self, user_id: int) -> None:
        super().__init__(user=user_id)


class AdminTarget(AdminError):
    """Admins are not banned (a ban would lock them out of undoing it)."""

    code = "admin_target_is_admin"

    def __init__(self, user_id: int) -> None:
        super().__init__(user=user_id)


class BadQuota(AdminError):
    code = "admin_bad_quota"

    def __init__(self, key: str, keys: str) -> None:
        super().__init__(key=key, keys=keys)


class DefaultModel(AdminError):
    """The default model stays on: new conversations start on it."""

    code = "admin_default_model"

    def __init__(self, model: str) -> None:
        super().__init__(model=model)


class InvitesOff(AdminError):
    """Invites are used only in ACCESS_MODE=invite: one made otherwise would not work."""

    code = "admin_invites_off"

    def __init__(self, mode: str) -> None:
        super().__init__(mode=mode)


class BadUses(AdminError):
    code = "admin_bad_uses"

    def __init__(self, most: int) -> None:
        super().__init__(most=most)
