"""Named domain errors. The edges turn them into JSON errors or member-friendly replies."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base class. `field` names the input at fault, when there is one."""

    status = 422
    retry_after: int | None = None
    """Seconds after which the same request may succeed (a rate limit), when known."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field

    def details(self) -> dict[str, Any]:
        """More facts for the answer, beside the message and the field (none here)."""
        return {}


class InvalidInput(DomainError):
    status = 422


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    """The request is well-formed but clashes with the current state (e.g. an illegal step)."""

    status = 409


class InsufficientPoints(Conflict):
    def __init__(self, balance: int, cost: int):
        super().__init__(f"balance {balance} does not cover {cost} points", "points")
        self.balance = balance
        self.cost = cost
