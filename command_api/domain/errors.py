"""Named domain errors. Each says which rule was broken; adapters map them to HTTP problems."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every rule violation; `rule` names it (it becomes the problem `type`)."""

    rule = "domain-rule"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class InvalidInput(DomainError):
    """The command itself is malformed for the domain (answered 422)."""

    rule = "invalid-input"


class InvalidCidr(InvalidInput):
    rule = "invalid-cidr"


class InvalidName(InvalidInput):
    rule = "invalid-name"


class RuleViolation(DomainError):
    """The command is well formed but the current state forbids it (answered 409)."""

    rule = "rule-violation"


class AlreadyExists(RuleViolation):
    rule = "already-exists"


class NotFound(DomainError):
    """The aggregate does not exist (for this tenant)."""

    rule = "not-found"


class CidrOutsideNetwork(InvalidInput):
    rule = "cidr-outside-network"


class InvalidSize(InvalidInput):
    rule = "invalid-size"


class CidrOverlap(RuleViolation):
    rule = "cidr-overlap"


class SubnetExhausted(RuleViolation):
    rule = "subnet-exhausted"


class NetworkNotEmpty(RuleViolation):
    rule = "network-not-empty"


class SubnetNotEmpty(RuleViolation):
    rule = "subnet-not-empty"


class InvalidTransition(RuleViolation):
    rule = "invalid-transition"
