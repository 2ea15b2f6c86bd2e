"""What the commands show, built once for every platform.

Each module computes a plain dataclass (texts already in the person's language,
plus the data behind them) and does the changes its buttons make. Telegram, Discord
and the terminal chat only draw these: buttons, embeds or lines of text. The plans
and payment methods on offer live with the payment providers: payments/offers.py.
"""

from typing import Literal

Platform = Literal["telegram", "discord", "console"]
