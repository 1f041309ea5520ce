"""The FastAPI dependency that hands a route the caller `BearerAuth` authenticated."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from infra.auth import Principal
from infra.problems import NotAuthenticated


def principal_of(request: Request) -> Principal:
    """The caller; a plain call where a dependency would cost more than its work."""
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        raise NotAuthenticated("send Authorization: Bearer <token>")
    return principal


# async: FastAPI runs a sync dependency in a worker thread, which costs more than its work.
async def _principal(request: Request) -> Principal:
    return principal_of(request)


CurrentPrincipal = Annotated[Principal, Depends(_principal)]
