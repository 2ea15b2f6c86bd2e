"""The requests session YooKassa's SDK calls through: the SDK's own retries, with a
timeout. Imported with the SDK, only when a shop is configured."""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry
from yookassa.client import ApiClient


class _TimeoutAdapter(HTTPAdapter):
    """requests with a timeout: the SDK sets none, and a hung connection would hold
    a worker thread for good after asyncio.timeout gave up on it."""

    def __init__(self, timeout: float, **kwargs: Any) -> None:
        self.timeout = timeout
        super().__init__(**kwargs)

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().send(request, **kwargs)


def bound_sdk_requests(timeout: float) -> None:
    """The SDK builds a requests session per call (ApiClient.get_session): build it
    the SDK's way (retries on 202 Accepted, same backoff) with a timeout."""

    def get_session(client: ApiClient) -> requests.Session:
        session = requests.Session()
        # Retried: 202 Accepted (the SDK's intent). Not retried: a timed-out
        # call, so a hung provider holds a worker for one timeout, not several.
        retries = Retry(
            total=client.max_attempts,
            connect=0,
            read=0,
            backoff_factor=client.timeout / 1000,
            allowed_methods=["POST"],
            status_forcelist=[202],
        )
        adapter = _TimeoutAdapter(timeout, max_retries=retries)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    ApiClient.get_session = get_session
