"""The provider SDKs are synchronous and set no HTTP timeout: each call runs in a
small thread pool of its own under `asyncio.timeout`, so a hung provider costs a
bounded number of threads and never blocks the event loop."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class ProviderTimeout(Exception):
    pass


class SdkRunner:
    def __init__(self, name: str, timeout: float, workers: int = 4) -> None:
        self.name = name
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"sdk-{name}")

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                return await loop.run_in_executor(
                    self._pool, functools.partial(fn, *args, **kwargs)
                )
        except TimeoutError:
            raise ProviderTimeout(f"{self.name} did not answer in {self.timeout:g} s") from None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
