"""HTTP entrypoints of the command service: parse → command → handler → answer.

Every answer is `{id, position, stream_version}` (+ details) with `X-Event-Position`. With an
`Idempotency-Key`, the same key and body answer the first answer again and write nothing; the
same key with another body is refused (422).
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Request
from opentelemetry.trace import SpanKind
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from command_api import commands
from command_api.domain.errors import DomainError
from command_api.errors import to_problem
from command_api.handlers import (
    CommandContext,
    CommandResult,
    Repository,
    RetriesExhausted,
    replay,
)
from events import EventStore
from infra.dependencies import DATABASE_DOWN
from infra.http.fast_lane import FastRoute, LaneRequest, NotForTheLane
from infra.http.json import JsonAnswer
from infra.http.openapi import WRITE_PROBLEMS, problem_responses
from infra.http.principal import principal_of
from infra.problems import PROBLEM_TYPE_BASE, NotFound, ValidationFailed
from infra.telemetry import context_of, span

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


#: The most boots one call of the provisioner may carry.
MAX_BOOTS = 100


class Boot(Body):
    id: uuid.UUID
    #: The trace of the launch this boot follows; its events continue that trace.
    traceparent: Annotated[StrictStr, Field(max_length=128)] | None = None


class BootsBody(Body):
    instances: Annotated[list[Boot], Field(min_length=1, max_length=MAX_BOOTS)]


#: FastAPI's limits of an `Idempotency-Key`, which the fast lane reads alike.
MIN_KEY_LENGTH, MAX_KEY_LENGTH = 1, 255

IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=MIN_KEY_LENGTH, max_length=MAX_KEY_LENGTH),
]


def _idempotency_key(text: str) -> str:
    """The key as `IdempotencyKey` takes it; FastAPI refuses any other (its 422)."""
    if not MIN_KEY_LENGTH <= len(text) <= MAX_KEY_LENGTH:
        raise NotForTheLane(text)
    return text


#: The headers a command reads: FastAPI's `IdempotencyKey` parameter and the caller's trace.
COMMAND_HEADERS: dict[str, Callable[[str], Any]] = {
    "idempotency-key": _idempotency_key,
    "traceparent": str,
}

#: The headers the boots' call reads: no `Idempotency-Key` (a boot repeated changes nothing).
BOOT_HEADERS: dict[str, Callable[[str], Any]] = {"traceparent": str}


# The caller and the context come in a `LaneRequest` (the fast lane's, or `_lane`'s from FastAPI's
# request), not as FastAPI dependencies: solving them cost a command more CPU than its own
# decision (docs/BENCHMARKS.md).
def _context(lane: LaneRequest) -> CommandContext:
    key = lane.headers.get("idempotency-key")
    idempotency = None
    if key is not None:
        # Same key + same method, path and body = the same request (Stripe semantics).
        request = f"{lane.method} {lane.url_path}\n".encode() + _canonical_body(lane.raw_body)
        idempotency = (key, hashlib.sha256(request).hexdigest())
    return CommandContext(
        tenant_id=lane.principal.tenant,
        actor=lane.principal.subject,
        correlation_id=lane.request_id,
        traceparent=lane.headers.get("traceparent"),
        idempotency=idempotency,
    )


def _canonical_body(raw: bytes) -> bytes:
    try:
        return orjson.dumps(orjson.loads(raw), option=orjson.OPT_SORT_KEYS) if raw else b""
    except orjson.JSONDecodeError:
        return raw


#: A function of `command_api.commands`: the repository, the caller's context, then its own
#: arguments.
Command = Callable[..., Awaitable[CommandResult]]


async def _run(
    lane: LaneRequest, command: Command, *arguments: Any, location: str | None = None
) -> JsonAnswer:
    context = _context(lane)
    state = lane.state
    repository: Repository = state.repository
    # A dead event store opens the breaker: later requests get 503 at once instead of waiting.
    async with state.breakers.guard("event_store", failures=DATABASE_DOWN):
        result = await _idempotent(
            repository.store, context, lambda: command(repository, context, *arguments)
        )
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


# Each command is one handler of a `LaneRequest`, called by its FastAPI endpoint below and, for
# plain requests, straight from the fast lane (`FAST_ROUTES`, infra/http/fast_lane.py).
Handler = Callable[[LaneRequest], Awaitable[JsonAnswer]]


async def network_create(lane: LaneRequest) -> JsonAnswer:
    body: NetworkBody = lane.body
    return await _run(lane, commands.create_network, body.name, body.cidr, location="/v1/networks")


async def network_rename(lane: LaneRequest) -> JsonAnswer:
    body: RenameBody = lane.body
    nid = _id(lane.path["network_id"], "network")
    return await _run(lane, commands.rename_network, nid, body.name)


async def subnet_create(lane: LaneRequest) -> JsonAnswer:
    body: SubnetBody = lane.body
    nid = _id(lane.path["network_id"], "network")
    return await _run(
        lane, commands.create_subnet, nid, body.name, body.cidr, location="/v1/subnets"
    )


async def instance_launch(lane: LaneRequest) -> JsonAnswer:
    body: LaunchBody = lane.body
    return await _run(
        lane,
        commands.launch_instance,
        body.name,
        body.subnet_id,
        body.size,
        location="/v1/instances",
    )


def _on_id(kind: str, command: Command) -> Handler:
    """A command on the `<kind>_id` of the path, without a body."""

    async def handle(lane: LaneRequest) -> JsonAnswer:
        return await _run(lane, command, _id(lane.path[f"{kind}_id"], kind))

    return handle


network_delete = _on_id("network", commands.delete_network)
subnet_delete = _on_id("subnet", commands.delete_subnet)
instance_start = _on_id("instance", commands.start_instance)
instance_stop = _on_id("instance", commands.stop_instance)
instance_terminate = _on_id("instance", commands.terminate_instance)
instance_running = _on_id("instance", commands.mark_running)


async def _lane(
    request: Request, key: str | None, body: Body | None = None, **path: str
) -> LaneRequest:
    """What the fast lane reads from a request, read from FastAPI's."""
    traceparent = request.headers.get("traceparent")
    headers = {"idempotency-key": key, "traceparent": traceparent}
    return LaneRequest(
        request.app.state,
        principal_of(request),
        path,
        {},
        None,
        headers={name: value for name, value in headers.items() if value is not None},
        body=body,
        raw_body=await request.body() if key is not None else b"",
        request_id=request.state.request_id,
        method=request.method,
        url_path=request.url.path,
    )


@router.post("/networks", status_code=201, response_model=CommandAnswer)
async def create_network(
    request: Request, body: NetworkBody, key: IdempotencyKey = None
) -> JsonAnswer:
    return await network_create(await _lane(request, key, body))


@router.patch("/networks/{network_id}", response_model=CommandAnswer)
async def rename_network(
    request: Request, network_id: str, body: RenameBody, key: IdempotencyKey = None
) -> JsonAnswer:
    return await network_rename(await _lane(request, key, body, network_id=network_id))


@router.delete("/networks/{network_id}", response_model=CommandAnswer)
async def delete_network(
    request: Request, network_id: str, key: IdempotencyKey = None
) -> JsonAnswer:
    return await network_delete(await _lane(request, key, network_id=network_id))


@router.post("/networks/{network_id}/subnets", status_code=201, response_model=CommandAnswer)
async def create_subnet(
    request: Request, network_id: str, body: SubnetBody, key: IdempotencyKey = None
) -> JsonAnswer:
    return await subnet_create(await _lane(request, key, body, network_id=network_id))


@router.delete("/subnets/{subnet_id}", response_model=CommandAnswer)
async def delete_subnet(request: Request, subnet_id: str, key: IdempotencyKey = None) -> JsonAnswer:
    return await subnet_delete(await _lane(request, key, subnet_id=subnet_id))


@router.post("/instances", status_code=201, response_model=InstanceAnswer)
async def launch_instance(
    request: Request, body: LaunchBody, key: IdempotencyKey = None
) -> JsonAnswer:
    return await instance_launch(await _lane(request, key, body))


@router.post("/instances/{instance_id}/start", response_model=InstanceAnswer)
async def start_instance(
    request: Request, instance_id: str, key: IdempotencyKey = None
) -> JsonAnswer:
    return await instance_start(await _lane(request, key, instance_id=instance_id))


@router.post("/instances/{instance_id}/stop", response_model=InstanceAnswer)
async def stop_instance(
    request: Request, instance_id: str, key: IdempotencyKey = None
) -> JsonAnswer:
    return await instance_stop(await _lane(request, key, instance_id=instance_id))


@router.delete("/instances/{instance_id}", response_model=InstanceAnswer)
async def terminate_instance(
    request: Request, instance_id: str, key: IdempotencyKey = None
) -> JsonAnswer:
    return await instance_terminate(await _lane(request, key, instance_id=instance_id))


@internal.post("/instances/{instance_id}/running", response_model=InstanceAnswer)
async def mark_running(
    request: Request, instance_id: str, key: IdempotencyKey = None
) -> JsonAnswer:
    """The provisioner finished booting the instance (never reachable through the gateway)."""
    return await instance_running(await _lane(request, key, instance_id=instance_id))


async def instances_running(lane: LaneRequest) -> JsonAnswer:
    """Mark a tenant's booted instances running, each as a command of its own: one refused (say,
    terminated meanwhile) or missing answers its own status and leaves the others to commit.
    The instances this process has not cached are read in one round trip first, and the
    concurrent commands share the store's append groups, so a call of 50 boots costs about one
    request, one read and one append instead of 50 of each (docs/BENCHMARKS.md, eleventh
    session).
    A failure of the event store itself fails the whole call, and the provisioner calls again:
    marking a running instance running changes nothing."""
    body: BootsBody = lane.body
    context = _context(lane)
    repository: Repository = lane.state.repository
    async with lane.state.breakers.guard("event_store", failures=DATABASE_DOWN):
        await commands.read_instances(repository, context, [boot.id for boot in body.instances])
        answers = await asyncio.gather(*(_boot(repository, context, b) for b in body.instances))
    return JsonAnswer({"instances": answers})


async def _boot(repository: Repository, context: CommandContext, boot: Boot) -> dict[str, Any]:
    with span("mark running", context_of(boot.traceparent), kind=SpanKind.INTERNAL):
        try:
            result = await commands.mark_running(repository, context, boot.id)
        except (DomainError, RetriesExhausted) as error:
            problem = to_problem(error)
        else:
            return {"status": result.status, **result.body}
    return {
        "id": str(boot.id),
        "status": problem.status,
        "type": PROBLEM_TYPE_BASE + problem.kind,
        "detail": problem.detail,
    }


@internal.post("/instances/running")
async def mark_many_running(request: Request, body: BootsBody) -> JsonAnswer:
    """The provisioner finished booting these instances of the caller's tenant, each with its
    own answer (never reachable through the gateway; no `Idempotency-Key`: a repeated call
    changes nothing)."""
    return await instances_running(await _lane(request, None, body))


def _write(method: str, path: str, handler: Handler, body: type[Body] | None = None) -> FastRoute:
    return FastRoute(path, handler, method=method, body=body, headers=COMMAND_HEADERS)


#: The commands the fast lane answers when their requests are plain (infra/http/fast_lane.py).
FAST_ROUTES = (
    _write("POST", "/v1/instances", instance_launch, LaunchBody),
    _write("POST", "/v1/networks", network_create, NetworkBody),
    _write("POST", "/v1/networks/{network_id}/subnets", subnet_create, SubnetBody),
    _write("PATCH", "/v1/networks/{network_id}", network_rename, RenameBody),
    _write("DELETE", "/v1/networks/{network_id}", network_delete),
    _write("DELETE", "/v1/subnets/{subnet_id}", subnet_delete),
    _write("POST", "/v1/instances/{instance_id}/start", instance_start),
    _write("POST", "/v1/instances/{instance_id}/stop", instance_stop),
    _write("DELETE", "/v1/instances/{instance_id}", instance_terminate),
    _write("POST", "/internal/instances/{instance_id}/running", instance_running),
    # The provisioner's call, once per tenant's boots due together.
    FastRoute(
        "/internal/instances/running",
        instances_running,
        method="POST",
        body=BootsBody,
        headers=BOOT_HEADERS,
    ),
)
