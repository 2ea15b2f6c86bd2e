"""Why a voice note was not transcribed. STT failures are typed like the LLM's
(timeout, refused request, server fault); none of them costs the person anything."""

from __future__ import annotations

from datetime import datetime

from core.errors import OneAIError

TIME_FORMAT = "%Y-%m-%d %H:%M UTC"


class VoiceDisabled(OneAIError):
    code = "voice_disabled"
    user_message = "Voice notes are not enabled here. Please type your message."


class ModelDoesNotListen(OneAIError):
    """VOICE_MODE=model, the conversation's model takes no audio and no
    transcription server is configured: nothing is downloaded or charged."""

    code = "voice_model_deaf"

    def __init__(self, model: str) -> None:
        super().__init__(
            f"{model} can't listen to voice notes. Pick a model marked 🎧 in /model "
            "to send them, or type your message.",
            model=model,
        )


class NotAudio(OneAIError):
    """VOICE_MODE=model without a transcription server, and a recording that is
    not plain audio (a round video)."""

    code = "voice_not_audio"
    user_message = (
        "Only sound recordings can go to the model as audio. "
        "Please send a voice note or an audio file, or type your message."
    )


class NoteTooLong(OneAIError):
    code = "voice_too_long"

    def __init__(self, seconds: int, limit: int) -> None:
        super().__init__(
            f"This voice note is {seconds} s long; your plan takes notes of up to "
            f"{limit} s. Please send a shorter one, or type your message.",
            seconds=seconds,
            limit=limit,
        )


class NoteTooBig(OneAIError):
    code = "voice_too_big"

    def __init__(self, megabytes: int) -> None:
        super().__init__(
            f"This recording is too large to download (the limit is {megabytes} MB). "
            "Please send a shorter one.",
            megabytes=megabytes,
        )


class VoiceDayLimit(OneAIError):
    code = "voice_day_limit"

    def __init__(self, seconds: int, left: int, limit: int, resets_at: datetime | None) -> None:
        when = resets_at.strftime(TIME_FORMAT) if resets_at else "—"
        minutes = limit // 60
        super().__init__(
            f"This {seconds} s voice note is more than you have left today ({left} s of "
            f"{minutes} min). Voice minutes reset at {when}.",
            seconds=seconds,
            left=left,
            minutes=minutes,
            when=when,
        )


class NoteUnavailable(OneAIError):
    code = "voice_unavailable"
    user_message = "I could not download that recording. Please send it again."


class NothingHeard(OneAIError):
    code = "voice_empty"
    user_message = "I could not hear any words in this voice note. Please try again."


class STTError(OneAIError):
    """Base for a failed call to the transcription server."""

    code = "stt_error"
    user_message = "The voice note could not be transcribed. Please try again."

    def __init__(self, user_message: str | None = None, *, status: int | None = None) -> None:
        super().__init__(user_message, status=status)
        self.status = status


class STTTimeout(STTError):
    code = "stt_timeout"
    user_message = "Transcribing the voice note took too long. Please try again."


class STTRejected(STTError):
    """4xx: the server refused this request (a format it does not take, a bad key)."""

    code = "stt_rejected"
    user_message = (
        "The transcription service refused this voice note. Please try again, or type your message."
    )


class STTUnavailable(STTError):
    """5xx, or the server could not be reached."""

    code = "stt_unavailable"
    user_message = (
        "The transcription service is unavailable right now. Please try again in a moment."
    )
