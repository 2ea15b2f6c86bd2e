"""FSM states (stored in Redis when REDIS_URL is set, in memory otherwise)."""

from aiogram.fsm.state import State, StatesGroup


class SettingsStates(StatesGroup):
    prompt = State()  # waiting for the system prompt text


class AdminStates(StatesGroup):
    person = State()  # waiting for whom to find
    ban_reason = State()  # waiting for why (data: user)
    broadcast = State()  # waiting for the text (data: broadcast, when changing one)


class VoiceStates(StatesGroup):
    correction = State()  # waiting for a transcript's corrected text (data: row, chat, message)
