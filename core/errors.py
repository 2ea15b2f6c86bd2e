"""Errors a person can cause or meet, each with a message fit to show them."""

from __future__ import annotations


class OneAIError(Exception):
    """Base for expected failures. `user_message` is safe to show to the user."""

    code = "error"
    user_message = "Something went wrong. Please try again."

    def __init__(self, user_message: str | None = None, **details: object) -> None:
        if user_message is not None:
            self.user_message = user_message
        self.details = details
        super().__init__(self.user_message)
