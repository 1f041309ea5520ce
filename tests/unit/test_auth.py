"""Bearer tokens: what is let in and what is refused, pure (no HTTP)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from infra.auth import TokenVerifier, issue_token, verify_token
from infra.problems import Forbidden, NotAuthenticated

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "sub": "alice",
        "tenant": "acme",
        "scope": "cloud:read",
        "aud": "cloudnet",
        "exp": now + 60,
    }
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


def bearer(token: str) -> str:
    return f"Bearer {token}"


def test_an_issued_token_verifies_to_its_principal() -> None:
    token = issue_token(secret=SECRET, tenant="acme", scopes=["cloud:read", "cloud:write"])
    principal = verify_token(bearer(token), secret=SECRET, audience="cloudnet")
    assert principal.tenant == "acme"
    assert principal.scopes == {"cloud:read", "cloud:write"}


@pytest.mark.parametrize(
    "token",
    [
        jwt.encode(claims(), "another-secret-that-is-long-enough-for-hs256", algorithm="HS256"),
        jwt.encode(claims(exp=int(time.time()) - 10), SECRET, algorithm="HS256"),
        jwt.encode(claims(aud="someone-else"), SECRET, algorithm="HS256"),
        jwt.encode(claims(nbf=int(time.time()) + 600), SECRET, algorithm="HS256"),
        jwt.encode(claims(exp=None), SECRET, algorithm="HS256"),
        jwt.encode(claims(tenant="Not_A_Tenant"), SECRET, algorithm="HS256"),
        jwt.encode(claims(), None, algorithm="none"),
        "not-a-jwt",
    ],
    ids=[
        "wrong-key",
        "expired",
        "wrong-audience",
        "not-yet-valid",
        "no-exp",
        "bad-tenant",
        "alg-none",
        "garbage",
    ],
)
def test_bad_tokens_are_not_authenticated(token: str) -> None:
    with pytest.raises(NotAuthenticated):
        verify_token(bearer(token), secret=SECRET, audience="cloudnet")


def test_a_tampered_payload_is_not_authenticated() -> None:
    header, _, signature = jwt.encode(claims(), SECRET, algorithm="HS256").split(".")
    other_payload = jwt.encode(claims(tenant="victim"), SECRET, algorithm="HS256").split(".")[1]
    with pytest.raises(NotAuthenticated):
        verify_token(
            bearer(f"{header}.{other_payload}.{signature}"), secret=SECRET, audience="cloudnet"
        )


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic dXNlcjpwYXNz"])
def test_missing_or_non_bearer_credentials_are_not_authenticated(header: str | None) -> None:
    with pytest.raises(NotAuthenticated):
        verify_token(header, secret=SECRET, audience="cloudnet")


def test_a_missing_scope_is_forbidden() -> None:
    principal = verify_token(
        bearer(jwt.encode(claims(), SECRET, algorithm="HS256")),
        secret=SECRET,
        audience="cloudnet",
    )
    with pytest.raises(Forbidden):
        principal.require("cloud:write")


def test_the_verifier_remembers_an_accepted_token_until_it_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verifier = TokenVerifier(secret=SECRET, audience="cloudnet")
    now = time.time()
    token = bearer(jwt.encode(claims(exp=int(now) + 60), SECRET, algorithm="HS256"))
    first = verifier(token)
    decoded: list[bool] = []
    real_decode = jwt.decode

    def counting_decode(*args: Any, **kwargs: Any) -> Any:
        decoded.append(True)
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting_decode)

    assert verifier(token) is first
    assert decoded == []
    # Past its exp the token is verified again (PyJWT's own clock then decides).
    monkeypatch.setattr(time, "time", lambda: now + 61)
    verifier(token)
    assert decoded == [True]


@pytest.mark.parametrize(
    "token",
    [
        jwt.encode(claims(), "another-secret-that-is-long-enough-for-hs256", algorithm="HS256"),
        jwt.encode(claims(exp=int(time.time()) - 10), SECRET, algorithm="HS256"),
        jwt.encode(claims(), None, algorithm="none"),
    ],
    ids=["wrong-key", "expired", "alg-none"],
)
def test_the_verifier_never_remembers_a_refusal(token: str) -> None:
    verifier = TokenVerifier(secret=SECRET, audience="cloudnet")
    for _ in range(2):
        with pytest.raises(NotAuthenticated):
            verifier(bearer(token))
