"""Bearer-token auth (DESIGN §4): HS256 JWTs with tenant and scopes, audience `cloudnet`.

See https://pyjwt.readthedocs.io/en/stable/api.html for the checks PyJWT performs.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass

import jwt

from infra.problems import Forbidden, NotAuthenticated

READ_SCOPE = "cloud:read"
WRITE_SCOPE = "cloud:write"
TENANT_PATTERN = re.compile(r"[a-z0-9-]{1,63}")
_REQUIRED_CLAIMS = ["exp", "sub", "aud"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's subject, tenant and granted scopes."""

    subject: str
    tenant: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"this token lacks the {scope!r} scope")


def verify_token(authorization: str | None, *, secret: str, audience: str) -> Principal:
    """The principal of an `Authorization: Bearer <jwt>` header, or `NotAuthenticated`."""
    return _verify(authorization, secret=secret, audience=audience)[0]


class TokenVerifier:
    """`verify_token` that remembers the tokens it accepted until they expire.

    A client sends the same token on every request, and decoding and checking it again costs
    about 8 % of a command's CPU (docs/BENCHMARKS.md). An HS256 token is immutable and signed
    with this process's secret: a header string accepted once stays valid until its `exp`.
    Only acceptances are remembered, at most `max_entries` (the cache starts over when full)."""

    def __init__(self, *, secret: str, audience: str, max_entries: int = 10_000) -> None:
        self.secret, self.audience, self.max_entries = secret, audience, max_entries
        self._accepted: dict[str, tuple[Principal, float]] = {}

    def __call__(self, authorization: str) -> Principal:
        known = self._accepted.get(authorization)
        if known is not None and known[1] > time.time():
            return known[0]
        principal, expires = _verify(authorization, secret=self.secret, audience=self.audience)
        if len(self._accepted) >= self.max_entries:
            self._accepted.clear()
        self._accepted[authorization] = (principal, expires)
        return principal


def _verify(authorization: str | None, *, secret: str, audience: str) -> tuple[Principal, float]:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("send Authorization: Bearer <token>")
    try:
        claims = jwt.decode(
            token.strip(),
            secret,
            algorithms=["HS256"],  # pinned: never trust the token's own `alg` (e.g. `none`)
            audience=audience,
            options={"require": _REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError as error:
        raise NotAuthenticated("the token has expired") from error
    except jwt.InvalidTokenError as error:
        raise NotAuthenticated(f"invalid token: {error}") from error
    tenant, subject, scope = claims.get("tenant"), claims.get("sub"), claims.get("scope", "")
    if not isinstance(tenant, str) or not TENANT_PATTERN.fullmatch(tenant):
        raise NotAuthenticated("the token's tenant claim is missing or malformed")
    if not isinstance(subject, str) or not isinstance(scope, str):
        raise NotAuthenticated("the token's sub or scope claim is malformed")
    principal = Principal(subject=subject, tenant=tenant, scopes=frozenset(scope.split()))
    return principal, float(claims["exp"])


def issue_token(
    *,
    secret: str,
    tenant: str,
    scopes: list[str],
    subject: str = "cli",
    ttl_seconds: int = 3600,
    audience: str = "cloudnet",
) -> str:
    """A signed token for `tenant` with `scopes` (what `cloudnet token` prints)."""
    if not TENANT_PATTERN.fullmatch(tenant):
        raise ValueError("tenant must be 1-63 characters of a-z, 0-9 and '-'")
    now = int(time.time())
    claims = {
        "sub": subject,
        "tenant": tenant,
        "scope": " ".join(scopes),
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, secret, algorithm="HS256")
