"""Speech to text through an OpenAI-compatible `POST {base}/audio/transcriptions`."""

from __future__ import annotations

import logging

import httpx

from core.voice.errors import STTError, STTRejected, STTTimeout, STTUnavailable

log = logging.getLogger(__name__)

# A transcript longer than this is not a voice note's (a misbehaving server).
MAX_TRANSCRIPT_CHARS = 20_000


class STTClient:
    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model: str,
        *,
        timeout: float = 60.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + "/audio/transcriptions"
        self.model = model
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=10.0))

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def transcribe(self, data: bytes, filename: str, mime_type: str) -> str:
        """The text spoken in `data`; raises an STTError subclass."""
        try:
            response = await self._http.post(
                self.url,
                headers=self._headers,
                files={"file": (filename, data, mime_type)},
                data={"model": self.model, "response_format": "json"},
            )
        except httpx.TimeoutException:
            raise STTTimeout() from None
        except httpx.HTTPError as exc:
            log.warning("transcription request failed: %s", exc)
            raise STTUnavailable() from None
        status = response.status_code
        if status == 408 or status == 504:
            raise STTTimeout(status=status)
        if 400 <= status < 500 and status != 429:  # 429: busy, as a 5xx
            log.warning("transcription refused (%s): %s", status, response.text[:300])
            raise STTRejected(status=status)
        if status >= 300:
            log.warning("transcription server error (%s): %s", status, response.text[:300])
            raise STTUnavailable(status=status)
        try:
            body = response.json()
        except ValueError:
            raise STTError(status=status) from None
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str):
            raise STTError(status=status)
        return text.strip()[:MAX_TRANSCRIPT_CHARS]
