"""Where the API keeps responses to replay for a repeated Idempotency-Key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class StoredResponse:
    fingerprint: str
    status_code: int | None
    headers: list[tuple[str, str]]
    body: bytes


class IdempotencyStore(Protocol):
    async def reserve(self, scope: str, key: str) -> StoredResponse | None:
        """Claim the key; return the existing record when it was claimed before."""
        ...

    async def complete(
        self, scope: str, key: str, fingerprint: str, status: int, headers: list[tuple[str, str]], body: bytes
    ) -> None: ...

    async def release(self, scope: str, key: str) -> None: ...

    async def sweep(self, created_before: datetime) -> int:
        """Remove the records created before `created_before`; how many were removed."""
        ...
