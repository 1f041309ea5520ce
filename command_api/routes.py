"""HTTP entrypoints of the command service: parse → command → handler → answer."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict

from command_api import handlers
from command_api.domain import network
from events import EventStore
from infra.http.json import JsonAnswer
from infra.http.principal import CurrentPrincipal

router = APIRouter(prefix="/v1")


class CommandAnswer(BaseModel):
    id: uuid.UUID
    position: int
    stream_version: int


class CreateNetworkBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    cidr: str


def _store(request: Request) -> EventStore:
    store: EventStore = request.app.state.store
    return store


Store = Annotated[EventStore, Depends(_store)]


def _context(request: Request, principal: CurrentPrincipal) -> handlers.CommandContext:
    return handlers.CommandContext(
        tenant_id=principal.tenant,
        actor=principal.subject,
        correlation_id=request.state.request_id,
        traceparent=request.headers.get("traceparent"),
    )


Context = Annotated[handlers.CommandContext, Depends(_context)]


def _answer(result: handlers.CommandResult, status: int, location: str) -> JsonAnswer:
    body = CommandAnswer(
        id=result.id, position=result.position, stream_version=result.stream_version
    )
    return JsonAnswer(
        body.model_dump(mode="json"),
        status_code=status,
        headers={"X-Event-Position": str(result.position), "Location": location},
    )


@router.post("/networks", status_code=201, response_model=CommandAnswer)
async def create_network(body: CreateNetworkBody, store: Store, context: Context) -> JsonAnswer:
    command = network.CreateNetwork(network_id=uuid.uuid4(), name=body.name, cidr=body.cidr)
    result = await handlers.create_network(store, command, context)
    return _answer(result, 201, f"/v1/networks/{result.id}")
