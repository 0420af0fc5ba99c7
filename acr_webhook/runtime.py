"""Process-wide objects, built once on first use and shared by every request."""

from __future__ import annotations

import functools

from acr_webhook.config import load_settings
from acr_webhook.repository import CosmosEventRepository, EventRepository


@functools.cache
def event_repository() -> EventRepository:
    # Not cached when load_settings raises, so fixing the settings needs no restart logic here.
    return CosmosEventRepository(load_settings())
