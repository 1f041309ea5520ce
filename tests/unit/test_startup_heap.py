"""Every service leaves what its startup built out of the garbage collector's full passes, and
collects the young less often."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import FastAPI

from infra.http.app import GC_THRESHOLDS, create_service_app


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    gc.unfreeze()
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()  # the other tests' objects go back to the collector
    gc.set_threshold(*thresholds)


async def test_what_startup_built_is_frozen_once_started() -> None:
    built: list[object] = []
    frozen_when_started: list[int] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        built.append({"pool": [object() for _ in range(1000)]})
        frozen_when_started.append(gc.get_freeze_count())
        yield

    async def health() -> tuple[bool, dict[str, Any]]:
        return True, {}

    app = create_service_app(service="test", lifespan=lifespan, health=health, jwt_secret="s")
    async with app.router.lifespan_context(app):
        assert frozen_when_started == [0]  # the service's own startup ran first...
        assert gc.get_freeze_count() >= 1000  # ...then what it built was frozen
        assert not any(item is built[0] for item in gc.get_objects())
        assert gc.get_threshold() == GC_THRESHOLDS  # and the young are collected less often
