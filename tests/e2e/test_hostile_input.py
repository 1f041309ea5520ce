"""Hostile clients against the whole mesh, through the real nginx gateway: forged and
under-scoped tokens, one tenant reaching for another's resources, malformed and malicious
requests, and slow clients. Every refusal is a clean 4xx (problem+json), the store gains no
event, and no log line carries a token or the JWT secret. docs/RELIABILITY.md has the figures."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import asyncpg
import httpx
import jwt
import pytest

from tests.e2e.conftest import Mesh

pytestmark = pytest.mark.e2e

PROBLEM_JSON = "application/problem+json"
#: Every token this module sends: none may ever appear in a log of the mesh.
SENT_TOKENS: set[str] = set()


# --- helpers ----------------------------------------------------------------------------------


async def events_written(mesh: Mesh) -> int:
    """Events in the store, less those of the provisioner, which boots launched instances in
    the background whatever the test does."""
    connection = await asyncpg.connect(mesh.database_url)
    try:
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM events WHERE metadata->>'actor' IS DISTINCT FROM $1",
                "provisioner",
            )
        )
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def nothing_written(mesh: Mesh) -> AsyncIterator[None]:
    before = await events_written(mesh)
    yield
    assert await events_written(mesh) == before, "a refused request wrote to the event store"


def bearer(token: str) -> dict[str, str]:
    SENT_TOKENS.add(token)
    return {"Authorization": f"Bearer {token}"}


def assert_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, f"{response.request.url}: {response.text}"
    assert response.headers["content-type"] == PROBLEM_JSON, response.text
    assert response.json()["status"] == status


def encoded_cursor(key: list[Any]) -> str:
    """A cursor the way the query service encodes one, around any key an attacker chooses."""
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


@dataclass
class Tenant:
    """A tenant with a read-write token, and the highest position its writes reached."""

    mesh: Mesh
    name: str = field(default_factory=lambda: f"hostile-{uuid.uuid4().hex[:10]}")
    position: int = 0

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.mesh.token(self.name, "cloud:read cloud:write"))

    def fresh(self, position: int | None = None) -> dict[str, str]:
        return {**self.headers, "X-Min-Position": str(position or self.position)}

    async def write(
        self, client: httpx.AsyncClient, method: str, path: str, body: Any = None, status: int = 201
    ) -> dict[str, Any]:
        response = await client.request(method, path, json=body, headers=self.headers)
        assert response.status_code == status, response.text
        self.position = max(self.position, int(response.headers["X-Event-Position"]))
        answer: dict[str, Any] = response.json()
        return answer


@dataclass
class Resources:
    """One tenant's network, subnet and running instance."""

    tenant: Tenant
    network: str
    subnet: str
    instance: str

    @property
    def streams(self) -> list[str]:
        return [f"network-{self.network}", f"subnet-{self.subnet}", f"instance-{self.instance}"]

    def writes(self) -> list[tuple[str, str, Any]]:
        """Every write endpoint of DESIGN §4, aimed at these resources."""
        return [
            ("POST", "/v1/networks", {"name": "pwned", "cidr": "10.99.0.0/16"}),
            ("PATCH", f"/v1/networks/{self.network}", {"name": "pwned"}),
            ("DELETE", f"/v1/networks/{self.network}", None),
            ("POST", f"/v1/networks/{self.network}/subnets", {"name": "x", "cidr": "10.0.99.0/24"}),
            ("DELETE", f"/v1/subnets/{self.subnet}", None),
            ("POST", "/v1/instances", {"name": "x", "subnet_id": self.subnet, "size": "small"}),
            ("POST", f"/v1/instances/{self.instance}/start", None),
            ("POST", f"/v1/instances/{self.instance}/stop", None),
            ("DELETE", f"/v1/instances/{self.instance}", None),
        ]

    def reads(self) -> list[str]:
        return [
            f"/v1/networks/{self.network}",
            f"/v1/networks/{self.network}?as_of={self.tenant.position}",
            f"/v1/subnets/{self.subnet}",
            f"/v1/instances/{self.instance}",
            *(f"/v1/streams/{stream}/events" for stream in self.streams),
        ]


async def provision(client: httpx.AsyncClient, tenant: Tenant, octet: int) -> Resources:
    """A network 10.<octet>.0.0/16 with a subnet and an instance, once the instance runs."""
    network = await tenant.write(
        client, "POST", "/v1/networks", {"name": "net", "cidr": f"10.{octet}.0.0/16"}
    )
    subnet = await tenant.write(
        client,
        "POST",
        f"/v1/networks/{network['id']}/subnets",
        {"name": "sub", "cidr": f"10.{octet}.1.0/24"},
    )
    instance = await tenant.write(
        client, "POST", "/v1/instances", {"name": "vm", "subnet_id": subnet["id"], "size": "small"}
    )
    deadline = time.monotonic() + 30
    while True:  # the provisioner's boot is a write of its own: let it land before counting
        current = await client.get(f"/v1/instances/{instance['id']}", headers=tenant.fresh())
        assert current.status_code == 200, current.text
        if current.json()["state"] == "running":
            break
        assert time.monotonic() < deadline, "the provisioner did not boot the instance"
        await asyncio.sleep(0.1)
    return Resources(tenant, network["id"], subnet["id"], instance["id"])


@pytest.fixture(scope="module")
async def gateway(mesh: Mesh) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=mesh.gateway_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
async def victim(mesh: Mesh, gateway: httpx.AsyncClient) -> Resources:
    return await provision(gateway, Tenant(mesh), octet=20)


# --- 1. forged and under-scoped tokens ---------------------------------------------------------


def forged_token(mesh: Mesh, tenant: str, attack: str) -> str:
    """A token for `tenant` broken in the way `attack` names (see TOKEN_ATTACKS)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "attacker",
        "tenant": tenant,
        "scope": "cloud:read cloud:write",
        "aud": "cloudnet",
        "iat": now,
        "exp": now + 300,
    }

    def signed(secret: str = mesh.jwt_secret, algorithm: str = "HS256", **overrides: Any) -> str:
        merged = {key: value for key, value in {**claims, **overrides}.items() if value is not None}
        return jwt.encode(merged, secret, algorithm=algorithm)

    def b64(part: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")

    read_only = signed(scope="cloud:read")
    header, _, signature = read_only.split(".")
    builders: dict[str, Callable[[], str]] = {
        "alg-none": lambda: jwt.encode(claims, None, algorithm="none"),
        # `alg: none` in the header, yet the real signature: the verifier must pin HS256.
        "alg-none-with-signature": lambda: (
            f"{b64({'alg': 'none', 'typ': 'JWT'})}.{read_only.split('.')[1]}.{signature}"
        ),
        "alg-hs512": lambda: signed(algorithm="HS512"),
        "wrong-key": lambda: signed(secret="not-the-mesh-secret-but-long-enough-for-hs256"),
        "expired": lambda: signed(exp=now - 60, iat=now - 600),
        "not-yet-valid": lambda: signed(nbf=now + 600),
        "wrong-audience": lambda: signed(aud="another-service"),
        "no-audience": lambda: signed(aud=None),
        "no-expiry": lambda: signed(exp=None),
        # The read-only token's signature over a payload that grants cloud:write.
        "tampered-payload": lambda: f"{header}.{b64(claims)}.{signature}",
        "missing-tenant": lambda: signed(tenant=None),
        "malformed-tenant": lambda: signed(tenant="Victim' OR '1'='1"),
        "garbage": lambda: "not.a.jwt",
        "scope-as-list": lambda: signed(scope=["cloud:read", "cloud:write"]),
        "read-only": lambda: read_only,
        "scope-superstring": lambda: signed(scope="cloud:read cloud:writer"),
        "scope-prefixed": lambda: signed(scope="cloud:read xcloud:write cloud:write:all"),
        "scope-upper-case": lambda: signed(scope="cloud:read CLOUD:WRITE"),
        "scope-comma-separated": lambda: signed(scope="cloud:read,cloud:write"),
        "no-scope": lambda: signed(scope=None),
        "scp-claim-instead-of-scope": lambda: signed(scope=None, scp="cloud:read cloud:write"),
    }
    return builders[attack]()


# attack -> (status of every write, status of every read)
TOKEN_ATTACKS: dict[str, tuple[int, int]] = {
    "alg-none": (401, 401),
    "alg-none-with-signature": (401, 401),
    "alg-hs512": (401, 401),
    "wrong-key": (401, 401),
    "expired": (401, 401),
    "not-yet-valid": (401, 401),
    "wrong-audience": (401, 401),
    "no-audience": (401, 401),
    "no-expiry": (401, 401),
    "tampered-payload": (401, 401),
    "missing-tenant": (401, 401),
    "malformed-tenant": (401, 401),
    "garbage": (401, 401),
    "scope-as-list": (401, 401),
    "read-only": (403, 200),
    "scope-superstring": (403, 200),
    "scope-prefixed": (403, 200),
    "scope-upper-case": (403, 200),
    "scope-comma-separated": (403, 403),
    "no-scope": (403, 403),
    "scp-claim-instead-of-scope": (403, 403),
}


@pytest.mark.filterwarnings("ignore:The HMAC key is .* bytes long")  # alg-hs512, on purpose
@pytest.mark.parametrize(("attack", "statuses"), TOKEN_ATTACKS.items(), ids=list(TOKEN_ATTACKS))
async def test_a_forged_or_under_scoped_token_writes_nothing(
    mesh: Mesh,
    gateway: httpx.AsyncClient,
    victim: Resources,
    attack: str,
    statuses: tuple[int, int],
) -> None:
    write_status, read_status = statuses
    headers = bearer(forged_token(mesh, victim.tenant.name, attack))
    async with nothing_written(mesh):
        for method, path, body in victim.writes():
            response = await gateway.request(method, path, json=body, headers=headers)
            assert_problem(response, write_status)
            if write_status == 401:
                assert response.headers["www-authenticate"].startswith("Bearer")
        for path in ["/v1/networks", "/v1/activity", *victim.reads()]:
            response = await gateway.get(path, headers=headers)
            if read_status == 200:
                assert response.status_code == 200, response.text
            else:
                assert_problem(response, read_status)


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer", "Basic dXNlcjpwYXNz", "Token {token}", "{token}"],
    ids=["empty", "bearer-alone", "basic", "other-scheme", "no-scheme"],
)
async def test_credentials_not_sent_as_a_bearer_token_are_refused(
    mesh: Mesh, gateway: httpx.AsyncClient, victim: Resources, authorization: str
) -> None:
    token = mesh.token(victim.tenant.name, "cloud:read cloud:write")
    SENT_TOKENS.add(token)
    headers = {"Authorization": authorization.format(token=token)}
    async with nothing_written(mesh):
        for method, path, body in victim.writes():
            assert_problem(await gateway.request(method, path, json=body, headers=headers), 401)
        assert_problem(await gateway.get(victim.reads()[0], headers=headers), 401)


# --- 2. tenant isolation -------------------------------------------------------------------------


async def test_another_tenant_gets_404_for_every_id_and_never_sees_a_row(
    mesh: Mesh, gateway: httpx.AsyncClient, victim: Resources
) -> None:
    intruder = Tenant(mesh)
    own = await provision(gateway, intruder, octet=21)  # so that the lists are not empty
    position = max(victim.tenant.position, intruder.position)
    async with nothing_written(mesh):
        for method, path, body in victim.writes()[1:]:  # [0] creates a network of its own
            response = await gateway.request(method, path, json=body, headers=intruder.headers)
            assert_problem(response, 404)
        for path in victim.reads():
            assert_problem(await gateway.get(path, headers=intruder.fresh(position)), 404)

        async def listed(path: str) -> list[dict[str, Any]]:
            response = await gateway.get(path, headers=intruder.fresh(position))
            assert response.status_code == 200, response.text
            items: list[dict[str, Any]] = response.json()["items"]
            return items

        assert [n["id"] for n in await listed("/v1/networks")] == [own.network]
        for query in [
            "",
            *(f"?state={state}" for state in ("pending", "running", "stopped", "terminated")),
            f"?network_id={victim.network}",
            f"?subnet_id={victim.subnet}",
            f"?network_id={own.network}&subnet_id={own.subnet}",
        ]:
            instances = {i["id"] for i in await listed(f"/v1/instances{query}")}
            assert instances <= {own.instance}, query
            assert victim.instance not in instances
        activity = await listed("/v1/activity?limit=200")
        assert activity
        assert {event["stream_id"] for event in activity} <= set(own.streams)
        # A cursor the victim was handed pages through the intruder's rows only.
        page = await gateway.get("/v1/activity?limit=1", headers=victim.tenant.fresh(position))
        cursor = page.json()["next_cursor"]
        assert cursor
        paged = await listed(f"/v1/activity?cursor={cursor}")
        assert {event["stream_id"] for event in paged} <= set(own.streams)


async def test_idempotency_keys_are_per_tenant(
    mesh: Mesh, gateway: httpx.AsyncClient, victim: Resources
) -> None:
    intruder = Tenant(mesh)
    key = {"Idempotency-Key": f"shared-{uuid.uuid4().hex}"}
    body = {"name": "same", "cidr": "10.22.0.0/16"}
    first = await gateway.post("/v1/networks", json=body, headers={**victim.tenant.headers, **key})
    assert first.status_code == 201, first.text
    second = await gateway.post("/v1/networks", json=body, headers={**intruder.headers, **key})
    assert second.status_code == 201, second.text
    assert "Idempotent-Replayed" not in second.headers
    assert second.json()["id"] != first.json()["id"]  # its own network, not the victim's answer


# --- 3. malformed and malicious requests ---------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


async def send_raw(mesh: Mesh, request: bytes) -> Answer:
    """One request written byte for byte, as no HTTP client library would send it."""
    address = urlsplit(mesh.gateway_url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        writer.write(request)
        await writer.drain()
        # Up to the end of the answer's body, not EOF: after refusing a body it will not read,
        # nginx keeps the connection a while (lingering_timeout) before it closes it.
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        status_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines)
        }
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 30)
    finally:
        writer.close()
    return Answer(int(status_line.split()[1]), headers, body)


@dataclass(frozen=True)
class Hostile:
    """A request and the refusal it must get. `target` may name {network}, {subnet},
    {instance} and {cursor} (a real cursor of the victim's); `problem` is False only where
    the HTTP parser of the service refuses it before any of our code runs (plain text)."""

    method: str
    target: str
    status: int
    body: bytes | None = None
    headers: tuple[tuple[bytes, bytes], ...] = ()
    content_type: bytes | None = b"application/json"
    problem: bool = True

    def request(self, token: str, ids: dict[str, str]) -> bytes:
        lines = [
            f"{self.method} {self.target.format(**ids)} HTTP/1.1".encode("latin-1"),
            b"Host: 127.0.0.1",
            b"Authorization: Bearer " + token.encode(),
            b"Connection: close",
        ]
        lines += [name + b": " + value for name, value in self.headers]
        if self.body is not None:
            if self.content_type is not None:
                lines.append(b"Content-Type: " + self.content_type)
            if not any(name.lower() == b"transfer-encoding" for name, _ in self.headers):
                lines.append(b"Content-Length: " + str(len(self.body)).encode())
        return b"\r\n".join(lines) + b"\r\n\r\n" + (self.body or b"")


def body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def chunked(payload: bytes, size: int = 8192) -> bytes:
    chunks = [payload[i : i + size] for i in range(0, len(payload), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"


def list_with_header(name: bytes, value: bytes, status: int) -> Hostile:
    return Hostile("GET", "/v1/networks", status, headers=((name, value),))


def create_with_key(key: bytes, status: int, *, problem: bool = True) -> Hostile:
    """A valid network creation, but for its Idempotency-Key."""
    valid = body(name="a", cidr="10.0.0.0/16")
    return Hostile(
        "POST", "/v1/networks", status, valid, ((b"Idempotency-Key", key),), problem=problem
    )


SQL = "x'; DROP TABLE events; --"
BIG = str(2**63)
HOSTILE: dict[str, Hostile] = {
    # bodies
    "body-70-KiB": Hostile("POST", "/v1/networks", 413, body(name="x" * 70 * 1024, cidr="x")),
    "body-80-KiB-chunked": Hostile(
        "POST",
        "/v1/networks",
        413,
        chunked(body(name="x" * 80 * 1024, cidr="x")),
        headers=((b"Transfer-Encoding", b"chunked"),),
    ),
    "content-length-1-GB-announced": Hostile(
        "POST", "/v1/networks", 413, headers=((b"Content-Length", b"1073741824"),)
    ),
    "json-nested-10000-arrays": Hostile("POST", "/v1/networks", 400, b"[" * 10000 + b"]" * 10000),
    "json-nested-10000-objects": Hostile(
        "POST", "/v1/networks", 400, b'{"a":' * 10000 + b"1" + b"}" * 10000
    ),
    "invalid-utf-8": Hostile("POST", "/v1/networks", 400, b'{"name":"\xff\xfe","cidr":"x"}'),
    "raw-nul-byte-in-json": Hostile("POST", "/v1/networks", 400, b'{"name":"a\x00b","cidr":"x"}'),
    "escaped-nul-in-name": Hostile("POST", "/v1/networks", 422, body(name="a\0b", cidr="x")),
    "nul-in-cidr": Hostile("POST", "/v1/networks", 422, body(name="a", cidr="10.0.0.0/16\0")),
    "integer-of-5000-digits": Hostile(
        "POST", "/v1/networks", 400, b'{"name":1' + b"0" * 5000 + b',"cidr":"x"}'
    ),
    "nan": Hostile("POST", "/v1/networks", 422, b'{"name":NaN,"cidr":"10.0.0.0/16"}'),
    "body-is-an-array": Hostile("POST", "/v1/networks", 422, b"[]"),
    "body-is-null": Hostile("POST", "/v1/networks", 422, b"null"),
    "no-content-type": Hostile(
        "POST", "/v1/networks", 415, body(name="a", cidr="10.0.0.0/16"), content_type=None
    ),
    "text-plain": Hostile(
        "POST", "/v1/networks", 415, body(name="a", cidr="10.0.0.0/16"), content_type=b"text/plain"
    ),
    "sql-in-name": Hostile("POST", "/v1/networks", 422, body(name=SQL, cidr="10.0.0.0/16")),
    "sql-in-cidr": Hostile("POST", "/v1/networks", 422, body(name="a", cidr="10.0.0.0/16' OR 1=1")),
    "sql-in-rename": Hostile("PATCH", "/v1/networks/{network}", 422, body(name=SQL)),
    "sql-in-subnet-cidr": Hostile(
        "POST", "/v1/networks/{network}/subnets", 422, body(name="s", cidr=SQL)
    ),
    "sql-in-subnet-id": Hostile(
        "POST", "/v1/instances", 422, body(name="vm", subnet_id=SQL, size="small")
    ),
    "sql-in-size": Hostile(
        "POST", "/v1/instances", 422, body(name="vm", subnet_id=str(uuid.uuid4()), size=SQL)
    ),
    # paths
    "sql-in-network-id": Hostile("DELETE", "/v1/networks/1'%20OR%20'1'='1", 404),
    "sql-in-instance-id": Hostile("POST", "/v1/instances/x';--/start", 404),
    "sql-in-stream-id": Hostile("GET", "/v1/streams/x'%20OR%20'1'='1/events", 404),
    "nul-in-path": Hostile("GET", "/v1/networks/%00", 400),
    "raw-space-in-path": Hostile("GET", "/v1/net works", 400),
    "dot-dot-in-path": Hostile("GET", "/v1/networks/..%2F..%2Fetc%2Fpasswd", 404),
    "internal-via-dot-dot": Hostile("POST", "/v1/../internal/instances/{instance}/running", 404),
    "internal-percent-encoded": Hostile("POST", "/%69nternal/instances/{instance}/running", 404),
    "metrics-not-public": Hostile("GET", "/metrics", 404),
    "openapi-not-public": Hostile("GET", "/openapi.json", 404),
    "uri-of-20-KB": Hostile("GET", "/v1/networks?cursor=" + "A" * 20_000, 414),
    # query parameters
    "sql-in-network-filter": Hostile("GET", f"/v1/instances?network_id={quote(SQL)}", 422),
    "sql-in-state-filter": Hostile("GET", "/v1/instances?state=running'--", 422),
    "sql-in-cursor": Hostile("GET", "/v1/networks?cursor='%20OR%201=1--", 422),
    "truncated-cursor": Hostile("GET", "/v1/activity?cursor={cursor_truncated}", 422),
    "cursor-of-other-list": Hostile("GET", "/v1/networks?cursor={cursor}", 422),
    "forged-cursor-strings": Hostile(
        "GET", f"/v1/networks?cursor={encoded_cursor(['x', 'y'])}", 422
    ),
    "forged-cursor-numbers": Hostile("GET", f"/v1/instances?cursor={encoded_cursor([1, 2])}", 422),
    "forged-cursor-nulls": Hostile(
        "GET", f"/v1/networks?cursor={encoded_cursor([None, None])}", 422
    ),
    "forged-cursor-end-of-time": Hostile(
        "GET",
        "/v1/networks?cursor="
        + encoded_cursor(["9999-12-31T23:59:59-12:00", "00000000-0000-0000-0000-000000000000"]),
        422,
    ),
    "forged-cursor-text-position": Hostile(
        "GET", f"/v1/activity?cursor={encoded_cursor(['x'])}", 422
    ),
    "forged-cursor-position-2-63": Hostile(
        "GET", f"/v1/activity?cursor={encoded_cursor([2**63])}", 422
    ),
    "forged-cursor-version-2-31": Hostile(
        "GET", "/v1/streams/network-{network}/events?cursor=" + encoded_cursor([2**31]), 422
    ),
    "limit-0": Hostile("GET", "/v1/networks?limit=0", 422),
    "limit-negative": Hostile("GET", "/v1/instances?limit=-1", 422),
    "limit-201": Hostile("GET", "/v1/activity?limit=201", 422),
    "limit-huge": Hostile("GET", f"/v1/networks?limit={10**30}", 422),
    "limit-text": Hostile("GET", "/v1/networks?limit=all", 422),
    "as-of-negative": Hostile("GET", "/v1/networks/{network}?as_of=-1", 422),
    "as-of-2-63": Hostile("GET", f"/v1/networks/{{network}}?as_of={BIG}", 422),
    "as-of-text": Hostile("GET", "/v1/networks/{network}?as_of=now", 422),
    # headers
    "min-position-negative": list_with_header(b"X-Min-Position", b"-1", 422),
    "min-position-text": list_with_header(b"X-Min-Position", b"abc", 422),
    "min-position-hex": list_with_header(b"X-Min-Position", b"0x10", 422),
    "min-position-2-63": list_with_header(b"X-Min-Position", BIG.encode(), 422),
    "min-position-10-30": list_with_header(b"X-Min-Position", str(10**30).encode(), 422),
    "idempotency-key-with-cr": create_with_key(b"k\rX-Injected: 1", 400),
    "idempotency-key-with-nul": create_with_key(b"k\x00", 400),
    # nginx passes it; uvicorn's HTTP parser refuses it, in plain text
    "idempotency-key-with-control-byte": create_with_key(b"k\x01\x7f", 400, problem=False),
    "idempotency-key-of-300-bytes": create_with_key(b"k" * 300, 422),
    "request-id-with-cr": list_with_header(b"X-Request-Id", b"id\rSet-Cookie: a=b", 400),
    "authorization-twice": list_with_header(b"Authorization", b"Bearer x", 400),
    "header-of-20-KB": list_with_header(b"X-Pad", b"p" * 20_000, 400),
    # framing
    "content-length-and-chunked": Hostile(
        "POST",
        "/v1/networks",
        400,
        b"0\r\n\r\nPOST /internal/instances/x/running HTTP/1.1\r\nHost: x\r\n\r\n",
        headers=((b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"5")),
    ),
    "unknown-method": Hostile("FROB", "/v1/networks", 400, problem=False),
}


@pytest.fixture(scope="module")
async def victim_ids(gateway: httpx.AsyncClient, victim: Resources) -> dict[str, str]:
    page = await gateway.get("/v1/activity?limit=1", headers=victim.tenant.fresh())
    cursor = page.json()["next_cursor"]
    assert cursor
    return {
        "network": victim.network,
        "subnet": victim.subnet,
        "instance": victim.instance,
        "cursor": cursor,
        "cursor_truncated": cursor[:-3],
    }


@pytest.mark.parametrize("case", HOSTILE.values(), ids=list(HOSTILE))
async def test_a_hostile_request_is_a_clean_4xx_and_writes_nothing(
    mesh: Mesh, victim: Resources, victim_ids: dict[str, str], case: Hostile
) -> None:
    token = mesh.token(victim.tenant.name, "cloud:read cloud:write")
    SENT_TOKENS.add(token)
    async with nothing_written(mesh):
        answer = await send_raw(mesh, case.request(token, victim_ids))
    assert answer.status == case.status, answer.body[:300]
    assert "x-injected" not in answer.headers
    assert "set-cookie" not in answer.headers
    if case.problem:
        assert answer.headers["content-type"] == PROBLEM_JSON, answer.body[:300]
        assert json.loads(answer.body)["status"] == case.status


async def test_unknown_query_parameters_are_ignored(
    gateway: httpx.AsyncClient, victim: Resources
) -> None:
    """DESIGN §4 refuses unknown body fields (422); unknown query parameters are ignored, the
    way most HTTP APIs do: the answer is the same as without them."""
    plain = await gateway.get("/v1/networks", headers=victim.tenant.fresh())
    odd = await gateway.get(
        f"/v1/networks?admin=true&tenant=other&{SQL}=1&limit=5&limit=6",
        headers=victim.tenant.fresh(),
    )
    assert plain.status_code == odd.status_code == 200, odd.text
    assert odd.json()["items"] == plain.json()["items"]


async def test_a_client_chosen_request_id_is_echoed_only_when_it_looks_like_one(
    gateway: httpx.AsyncClient, victim: Resources
) -> None:
    sane = await gateway.get(
        "/v1/networks", headers={**victim.tenant.headers, "X-Request-Id": "a-1"}
    )
    assert sane.headers.get_list("x-request-id") == ["a-1"]
    odd = await gateway.get(
        "/v1/networks", headers={**victim.tenant.headers, "X-Request-Id": b"<script>\xff"}
    )
    [replaced] = odd.headers.get_list("x-request-id")
    assert replaced.isalnum()  # nginx's own $request_id


async def test_min_position_zero_answers_at_once_and_beyond_the_head_waits_bounded(
    gateway: httpx.AsyncClient, victim: Resources
) -> None:
    started = time.monotonic()
    zero = await gateway.get(
        "/v1/networks", headers={**victim.tenant.headers, "X-Min-Position": "0"}
    )
    assert zero.status_code == 200, zero.text
    assert time.monotonic() - started < 2
    started = time.monotonic()
    beyond = await gateway.get(
        "/v1/networks", headers={**victim.tenant.headers, "X-Min-Position": str(2**63 - 1)}
    )
    assert_problem(beyond, 504)  # DESIGN §4: the bounded read-your-writes wait (5 s), then 504
    assert time.monotonic() - started < 10


# --- 4. slow clients -----------------------------------------------------------------------------

SLOW_CLIENTS = 200
#: nginx's client_header_timeout and client_body_timeout (infra/nginx/nginx.conf.template).
NGINX_CLIENT_TIMEOUT = 10.0


async def trickle_headers(mesh: Mesh, opened: list[float], closed_after: list[float]) -> None:
    """Slowloris: a request whose headers never end, one byte every half second, until the
    gateway hangs up; how long that took goes into `closed_after`."""
    address = urlsplit(mesh.gateway_url)
    started = time.monotonic()  # before connecting: nginx's clock starts when it accepts
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        writer.write(b"GET /v1/networks HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        await writer.drain()
        opened.append(started)
        while True:
            for byte in b"X-Slow: y\r\n":
                writer.write(bytes([byte]))
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    if not await asyncio.wait_for(reader.read(1024), 0.5):
                        closed_after.append(time.monotonic() - started)
                        return
    except ConnectionError:
        closed_after.append(time.monotonic() - started)
    finally:
        writer.close()


async def stall_body(mesh: Mesh, token: str) -> tuple[float, bytes]:
    """Announces 100 bytes of body, sends 9, then waits for the gateway to give up."""
    address = urlsplit(mesh.gateway_url)
    started = time.monotonic()  # before connecting: nginx's clock starts when it accepts
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        writer.write(
            b"POST /v1/networks HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
            + token.encode()
            + b'\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"name":'
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 3 * NGINX_CLIENT_TIMEOUT)
        return time.monotonic() - started, answer
    finally:
        writer.close()


async def active_connections(mesh: Mesh) -> int:
    """What nginx's stub_status counts (infra/launcher/layout.py: Ports.nginx_status)."""
    port = int(mesh.env["CLOUDNET_BASE_PORT"]) + 4
    async with httpx.AsyncClient(timeout=5) as client:
        status = await client.get(f"http://127.0.0.1:{port}/stub_status")
    return int(status.text.split("Active connections:")[1].split()[0])


async def test_slow_clients_do_not_starve_the_others_and_are_cut_off(
    mesh: Mesh, gateway: httpx.AsyncClient, victim: Resources
) -> None:
    token = mesh.token(victim.tenant.name, "cloud:read cloud:write")
    SENT_TOKENS.add(token)
    opened: list[float] = []
    closed_after: list[float] = []
    async with nothing_written(mesh):
        slow = [
            asyncio.create_task(trickle_headers(mesh, opened, closed_after))
            for _ in range(SLOW_CLIENTS)
        ]
        stalled = asyncio.create_task(stall_body(mesh, token))
        deadline = time.monotonic() + 5
        while len(opened) < SLOW_CLIENTS:
            assert time.monotonic() < deadline, f"only {len(opened)} slow connections opened"
            await asyncio.sleep(0.05)
        held = await active_connections(mesh)
        latencies = []
        for _ in range(30):
            started = time.monotonic()
            response = await gateway.get("/v1/networks", headers=victim.tenant.headers)
            latencies.append(time.monotonic() - started)
            assert response.status_code == 200, response.text
        still_open = SLOW_CLIENTS - len(closed_after)
        await asyncio.wait_for(asyncio.gather(*slow), 3 * NGINX_CLIENT_TIMEOUT)
        stalled_for, stalled_answer = await stalled
    median = sorted(latencies)[len(latencies) // 2]
    print(
        f"\n{SLOW_CLIENTS} slowloris connections (nginx held {held}): normal requests p50 "
        f"{median * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms; "
        f"slow ones cut after {min(closed_after):.1f}-{max(closed_after):.1f} s; "
        f"stalled body cut after {stalled_for:.1f} s ({stalled_answer[:12]!r})"
    )
    assert held > SLOW_CLIENTS, f"nginx held only {held} connections"
    assert still_open == SLOW_CLIENTS, "slow clients were cut before the normal ones were served"
    assert max(latencies) < 2.0
    assert len(closed_after) == SLOW_CLIENTS
    assert (
        NGINX_CLIENT_TIMEOUT - 1 < min(closed_after) <= max(closed_after) < NGINX_CLIENT_TIMEOUT + 5
    )
    assert NGINX_CLIENT_TIMEOUT - 1 < stalled_for < NGINX_CLIENT_TIMEOUT + 5
    assert b"201" not in stalled_answer.split(b"\r\n", 1)[0]


# --- 5. nothing leaks into the logs (runs last: it reads what the tests above caused) -----------


async def test_no_log_of_the_mesh_holds_a_token_or_the_jwt_secret(
    mesh: Mesh, gateway: httpx.AsyncClient, victim: Resources
) -> None:
    # nginx flushes its access log every second: wait until our marker request is in it.
    marker = f"leak-check-{uuid.uuid4().hex}"
    await gateway.get("/v1/networks", headers={**victim.tenant.headers, "X-Request-Id": marker})
    access_log = mesh.state_dir / "logs" / "nginx-access.log"
    deadline = time.monotonic() + 10
    while marker not in access_log.read_text(errors="replace"):
        assert time.monotonic() < deadline, "nginx did not flush its access log"
        await asyncio.sleep(0.1)
    secrets = {mesh.jwt_secret, *SENT_TOKENS}
    logs = sorted(path for path in (mesh.state_dir / "logs").rglob("*") if path.is_file())
    assert SENT_TOKENS
    assert access_log in logs
    leaks = [
        f"{log.name} holds {'the JWT secret' if secret == mesh.jwt_secret else 'a token'}"
        for log in logs
        for secret in secrets
        if secret and secret.encode() in log.read_bytes()
    ]
    print(f"\n{len(logs)} log files searched for {len(SENT_TOKENS)} tokens and the JWT secret")
    assert not leaks
