"""/image: pictures from an image-output model, paid from the image_generation quota.

The unit is reserved in a short transaction before the call and given back if no
image comes out; no transaction stays open while the model works.
"""

from __future__ import annotations

import base64
import binascii

import httpx

from core.db.engine import Database
from core.errors import OneAIError
from core.llm.catalog import ModelCatalog, ModelInfo
from core.llm.client import LLMClient
from core.quotas import QuotaService
from core.tiers import QuotaKey, Tier

MAX_PROMPT_CHARS = 2000
MAX_IMAGE_BYTES = 10 * 1024 * 1024


class NoImageModel(OneAIError):
    code = "no_image_model"
    user_message = "No image model is available on your plan."


class NoImageReturned(OneAIError):
    code = "no_image"
    user_message = "The model did not return an image. Try another prompt."


class ImageService:
    def __init__(
        self, db: Database, quotas: QuotaService, catalog: ModelCatalog, llm: LLMClient
    ) -> None:
        self.db = db
        self.quotas = quotas
        self.catalog = catalog
        self.llm = llm

    def model_for(self, tier: Tier) -> ModelInfo:
        for model in self.catalog.grouped().get(QuotaKey.IMAGE, []):
            if model.image_output and model.available_to(tier):
                return model
        raise NoImageModel()

    async def generate(self, user_id: int, tier: Tier, prompt: str) -> list[bytes]:
        prompt = prompt.strip()[:MAX_PROMPT_CHARS]
        model = self.model_for(tier)
        async with self.db.write() as session:
            reservation = await self.quotas.reserve(session, user_id, tier, QuotaKey.IMAGE)
        try:
            urls = await self.llm.generate_images(model.id, prompt)
            images = [data for url in urls if (data := await _fetch(url)) is not None]
            if not images:
                raise NoImageReturned()
        except BaseException:
            async with self.db.write() as session:
                await self.quotas.release(
                    session, user_id, QuotaKey.IMAGE.value, reservation.window_start
                )
            raise
        return images


async def _fetch(url: str) -> bytes | None:
    """The bytes of a data: URL, or of an https URL the provider hosts."""
    if url.startswith("data:"):
        _, _, encoded = url.partition(",")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return None
        return data if 0 < len(data) <= MAX_IMAGE_BYTES else None
    if url.startswith("https://"):
        async with httpx.AsyncClient(timeout=30, follow_redirects=True) as client:
            response = await client.get(url)
            if response.status_code == 200 and len(response.content) <= MAX_IMAGE_BYTES:
                return response.content
    return None
