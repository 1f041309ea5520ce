"""Where the command service's errors become HTTP problems (the one place)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.responses import Response

from command_api.domain.errors import DomainError, InvalidInput, NotFound, RuleViolation
from command_api.handlers import RetriesExhausted
from infra import problems


def to_problem(error: DomainError | RetriesExhausted) -> problems.Problem:
    if isinstance(error, RetriesExhausted):
        return problems.Conflict(str(error), kind="concurrency-conflict")
    if isinstance(error, InvalidInput):
        errors = [{"field": error.field or "body", "message": error.detail}]
        return problems.ValidationFailed(error.detail, kind=error.rule, errors=errors)
    if isinstance(error, RuleViolation):
        return problems.Conflict(error.detail, kind=error.rule)
    if isinstance(error, NotFound):
        return problems.NotFound(error.detail)
    return problems.Conflict(error.detail, kind=error.rule)


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def on_domain_error(request: Request, error: DomainError) -> Response:
        return problems.render(to_problem(error), instance=request.url.path)

    @app.exception_handler(RetriesExhausted)
    async def on_retries_exhausted(request: Request, error: RetriesExhausted) -> Response:
        return problems.render(to_problem(error), instance=request.url.path)
