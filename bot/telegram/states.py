"""FSM states (stored in Redis when REDIS_URL is set, in memory otherwise)."""

from aiogram.fsm.state import State, StatesGroup


class SettingsStates(StatesGroup):
    prompt = State()  # waiting for the system prompt text
