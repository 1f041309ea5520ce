"""HTTP entrypoints of the command service: parse → command → handler → answer.

Every answer is `{id, position, stream_version}` (+ details) with `X-Event-Position`. With an
`Idempotency-Key`, the same key and body answer the first answer again and write nothing; the
same key with another body is refused (422).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, ConfigDict, StrictStr

from command_api import commands
from command_api.handlers import CommandContext, CommandResult, replay
from events import EventStore
from infra.dependencies import DATABASE_DOWN
from infra.http.json import JsonAnswer
from infra.http.openapi import WRITE_PROBLEMS, problem_responses
from infra.http.principal import principal_of
from infra.problems import NotFound, ValidationFailed

router = APIRouter(prefix="/v1", responses=problem_responses(*WRITE_PROBLEMS))
internal = APIRouter(prefix="/internal", include_in_schema=False)


class CommandAnswer(BaseModel):
    id: uuid.UUID
    position: int
    stream_version: int


class InstanceAnswer(CommandAnswer):
    state: str
    ip: str | None = None


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NetworkBody(Body):
    name: StrictStr
    cidr: StrictStr


class RenameBody(Body):
    name: StrictStr


class SubnetBody(Body):
    name: StrictStr
    cidr: StrictStr


class LaunchBody(Body):
    name: StrictStr
    subnet_id: uuid.UUID
    size: StrictStr


IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)
]


# The caller, the store and the context are read in `_run`, not as FastAPI dependencies: solving
# them cost a command more CPU than its own decision (docs/BENCHMARKS.md).
async def _context(request: Request, key: str | None) -> CommandContext:
    principal = principal_of(request)
    idempotency = None
    if key is not None:
        # Same key + same method, path and body = the same request (Stripe semantics).
        fingerprint = hashlib.sha256(
            f"{request.method} {request.url.path}\n".encode() + await _canonical_body(request)
        ).hexdigest()
        idempotency = (key, fingerprint)
    return CommandContext(
        tenant_id=principal.tenant,
        actor=principal.subject,
        correlation_id=request.state.request_id,
        traceparent=request.headers.get("traceparent"),
        idempotency=idempotency,
    )


async def _canonical_body(request: Request) -> bytes:
    raw = await request.body()
    try:
        return orjson.dumps(orjson.loads(raw), option=orjson.OPT_SORT_KEYS) if raw else b""
    except orjson.JSONDecodeError:
        return raw


#: A function of `command_api.commands`: the store, the caller's context, then its own arguments.
Command = Callable[..., Awaitable[CommandResult]]


async def _run(
    request: Request,
    key: str | None,
    command: Command,
    *arguments: Any,
    location: str | None = None,
) -> JsonAnswer:
    store: EventStore = request.app.state.store
    context = await _context(request, key)
    # A dead event store opens the breaker: later requests get 503 at once instead of waiting.
    async with request.app.state.breakers.guard("event_store", failures=DATABASE_DOWN):
        result = await _idempotent(store, context, lambda: command(store, context, *arguments))
    headers = {"X-Event-Position": str(result.position)}
    if location and result.status == 201:
        headers["Location"] = f"{location}/{result.body['id']}"
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    return JsonAnswer(result.body, status_code=result.status, headers=headers)


async def _idempotent(
    store: EventStore, context: CommandContext, handle: Callable[[], Awaitable[CommandResult]]
) -> CommandResult:
    """The stored answer for a repeated Idempotency-Key, else the command's own. A request that
    lost the race for a key gets the winner's answer from `execute`, with its fingerprint."""
    if context.idempotency is None:
        return await handle()
    key, fingerprint = context.idempotency
    record = await store.idempotent_answer(context.tenant_id, key)
    result = replay(record) if record is not None else await handle()
    if result.replayed and result.request_hash != fingerprint:
        raise _key_reused()
    return result


def _key_reused() -> ValidationFailed:
    return ValidationFailed(
        "this Idempotency-Key was used with a different request",
        kind="idempotency-key-reused",
        errors=[{"field": "Idempotency-Key", "message": "already used with another body"}],
    )


def _id(value: str, kind: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"{kind} {value} does not exist") from None


@router.post("/networks", status_code=201, response_model=CommandAnswer)
async def create_network(
    request: Request, body: NetworkBody, key: IdempotencyKey = None
) -> JsonAnswer:
    return await _run(
        request,
        key,
        commands.create_network,
        body.name,
        body.cidr,
        location="/v1/networks",
    )


@router.patch("/networks/{network_id}", response_model=CommandAnswer)
async def rename_network(
    request: Request, network_id: str, body: RenameBody, key: IdempotencyKey = None
) -> JsonAnswer:
    nid = _id(network_id, "network")
    return await _run(request, key, commands.rename_network, nid, body.name)


@router.delete("/networks/{network_id}", response_model=CommandAnswer)
async def delete_network(
    request: Request, network_id: str, key: IdempotencyKey = None
) -> JsonAnswer:
    nid = _id(network_id, "network")
    return await _run(request, key, commands.delete_network, nid)


@router.post("/networks/{network_id}/subnets", status_code=201, response_model=CommandAnswer)
async def create_subnet(
    request: Request, network_id: str, body: SubnetBody, key: IdempotencyKey = None
) -> JsonAnswer:
    nid = _id(network_id, "network")
    return await _run(
        request,
        key,
        commands.create_subnet,
        nid,
        body.name,
        body.cidr,
        location="/v1/subnets",
    )


@router.delete("/subnets/{subnet_id}", response_model=CommandAnswer)
async def delete_subnet(request: Request, subnet_id: str, key: IdempotencyKey = None) -> JsonAnswer:
    sid = _id(subnet_id, "subnet")
    return await _run(request, key, commands.delete_subnet, sid)


@router.post("/instances", status_code=201, response_model=InstanceAnswer)
async def launch_instance(
    request: Request, body: LaunchBody, key: IdempotencyKey = None
) -> JsonAnswer:
    return await _run(
        request,
        key,
        commands.launch_instance,
        body.name,
        body.subnet_id,
        body.size,
        location="/v1/instances",
    )


@router.post("/instances/{instance_id}/start", response_model=InstanceAnswer)
async def start_instance(
    request: Request, instance_id: str, key: IdempotencyKey = None
) -> JsonAnswer:
    iid = _id(instance_id, "instance")
    return await _run(request, key, commands.start_instance, iid)


@router.post("/instances/{instance_id}/stop", response_model=InstanceAnswer)
async def stop_instance(
    request: Request, instance_id: str, key: IdempotencyKey = None
) -> JsonAnswer:
    iid = _id(instance_id, "instance")
    return await _run(request, key, commands.stop_instance, iid)


@router.delete("/instances/{instance_id}", response_model=InstanceAnswer)
async def terminate_instance(
    request: Request, instance_id: str, key: IdempotencyKey = None
) -> JsonAnswer:
    iid = _id(instance_id, "instance")
    return await _run(request, key, commands.terminate_instance, iid)


@internal.post("/instances/{instance_id}/running", response_model=InstanceAnswer)
async def mark_running(
    request: Request, instance_id: str, key: IdempotencyKey = None
) -> JsonAnswer:
    """The provisioner finished booting the instance (never reachable through the gateway)."""
    iid = _id(instance_id, "instance")
    return await _run(request, key, commands.mark_running, iid)
