"""The domain's exception tree. Services raise these; only `api/` turns them into HTTP problems.

DomainError
 ├── NotFound            an object does not exist in the caller's account
 ├── Conflict            the object exists but its state refuses the change
 ├── InvalidInput        a value breaks a rule (field, message)
 │    ├── InvalidPhoneNumber
 │    ├── InvalidFlow     every error of a flow graph, each naming its node
 │    └── WeakPin
 ├── InvalidAudio        an upload that is not acceptable audio
 ├── PayloadTooLarge     an upload over its size limit
 ├── QuotaExceeded       a mailbox or account limit is reached
 ├── Unavailable         something the request needs cannot run here now (speech engine)
 └── TooManyAttempts     sign-in attempts past their rate limit
"""

from __future__ import annotations


class DomainError(Exception):
    error_id = "domain-error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    error_id = "not-found"

    def __init__(self, resource: str, object_id: str) -> None:
        super().__init__(f"{resource} {object_id!r} was not found")
        self.resource = resource
        self.object_id = object_id


class Conflict(DomainError):
    error_id = "conflict"

    def __init__(self, message: str, error_id: str | None = None) -> None:
        super().__init__(message)
        if error_id:
            self.error_id = error_id


class InvalidInput(DomainError):
    error_id = "invalid-input"

    def __init__(self, field: str, message: str, error_id: str | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.detail = message
        if error_id:
            self.error_id = error_id


class InvalidPhoneNumber(InvalidInput):
    error_id = "invalid-phone-number"


class WeakPin(InvalidInput):
    error_id = "weak-pin"


class InvalidAudio(DomainError):
    error_id = "invalid-audio"

    def __init__(self, message: str, error_id: str | None = None) -> None:
        super().__init__(message)
        if error_id:
            self.error_id = error_id


class PayloadTooLarge(DomainError):
    error_id = "payload-too-large"

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"the upload is larger than {limit_bytes} bytes")
        self.limit_bytes = limit_bytes


class QuotaExceeded(DomainError):
    error_id = "quota-exceeded"


class InvalidFlow(InvalidInput):
    """A flow that cannot be saved: every problem found, each naming its node (and edge)."""

    error_id = "invalid-flow"

    def __init__(self, errors: list[dict[str, str | None]]) -> None:
        first = errors[0] if errors else {"field": "flow", "message": "is not valid"}
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(str(first["field"]), f"{first['message']}{more}")
        self.errors = errors


class Unavailable(DomainError):
    """What the request needs cannot run here now (a program not installed, say); retrying
    later, or on a node that has it, may succeed."""

    error_id = "unavailable"

    def __init__(self, message: str, error_id: str | None = None) -> None:
        super().__init__(message)
        if error_id:
            self.error_id = error_id


class TooManyAttempts(DomainError):
    """Too many sign-in attempts for an address or from a source: wait `retry_after` seconds."""

    error_id = "too-many-attempts"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many attempts; try again in {retry_after} seconds")
        self.retry_after = retry_after
