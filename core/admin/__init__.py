"""Administration, for every platform: who is an admin (access), the stats screen
(stats), finding a person and their card (people), what admins change (actions,
models) and the record of it (audit).

Telegram, Discord and `oneai admin` on the command line draw the same dataclasses
(texts already in the admin's language, plus the data behind them) and call the
same functions; none of them repeats a rule. Every change writes its `audit_log`
row in the transaction that makes it.

Nothing here is imported by `core.services` at module level: it imports the
services, not the other way round.
"""
