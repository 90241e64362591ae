"""Helpers of the Telephony API tests: RSA keys, tokens shaped like the vendor's clients', a
call center with its queues, and an in-memory `WorkRouter` (our own port) recording its calls."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from afterbeep.domain.ids import new_id
from afterbeep.services.contact_center import WorkPlacement, WorkRequest
from tests.conftest import TestAccount as Acct

ORG_ID = "00DXX0000000001"
API_NAME = "MyContactCenter"
DIALED = "+14155550100"
PROVIDER = {"Telephony-Provider-Name": "Amazon Connect"}


@cache
def private_key(n: int = 0) -> rsa.RSAPrivateKey:
    """Key `n` (made once per test process: 2048-bit keys take a moment)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(n: int = 0) -> str:
    return (
        private_key(n)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def token(
    *,
    key: int = 0,
    iss: str = ORG_ID,
    sub: str = API_NAME,
    lifetime: float = 300,
    iat: float | None = None,
    with_iat: bool = True,
    **claims: Any,
) -> str:
    """An RS256 token; `exp` is `iat + lifetime` (now when no `iat`)."""
    now = time.time() if iat is None else iat
    body: dict[str, Any] = {"iss": iss, "sub": sub, "exp": int(now + lifetime)}
    if with_iat:
        body["iat"] = int(now)
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, private_key(key), algorithm="RS256")


def demo_connector_token() -> str:
    """As the vendor's demo connector signs: no aud, no jti, a 4-hour expiry."""
    return token(lifetime=4 * 3600)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}", **PROVIDER}


@dataclass
class FakeWorkRouter:
    """One work item per voice call (as the port says `place` is idempotent)."""

    agent_for_queue: dict[str, str] = field(default_factory=dict)
    placed: list[WorkRequest] = field(default_factory=list)
    items: dict[str, WorkPlacement] = field(default_factory=dict)
    cleared: list[tuple[str, str, str]] = field(default_factory=list)
    changed: list[tuple[str, str]] = field(default_factory=list)

    async def place(self, request: WorkRequest) -> WorkPlacement:
        self.placed.append(request)
        known = self.items.get(request.voice_call_id)
        if known is not None:
            return WorkPlacement(known.work_item_id, known.queue_id, known.agent_id, created=False)
        placement = WorkPlacement(
            new_id("wi"), request.queue_id, self.agent_for_queue.get(request.queue_id), created=True
        )
        self.items[request.voice_call_id] = placement
        return placement

    async def clear(self, account_id: str, voice_call_id: str, reason: str) -> bool:
        self.cleared.append((account_id, voice_call_id, reason))
        return self.items.pop(voice_call_id, None) is not None

    async def voice_call_changed(self, account_id: str, voice_call_id: str) -> None:
        self.changed.append((account_id, voice_call_id))


async def make_queue(client: httpx.AsyncClient, account: Acct, name: str) -> str:
    r = await client.post("/v1/queues", json={"name": name}, headers=account.headers)
    assert r.status_code == 201, r.text
    queue_id: str = r.json()["id"]
    return queue_id


async def make_call_center(
    client: httpx.AsyncClient, account: Acct, key: int = 0, **body: Any
) -> dict[str, Any]:
    r = await client.post(
        "/v1/call-centers",
        json={
            "call_center_api_name": API_NAME,
            "org_id": ORG_ID,
            "public_key_pem": public_pem(key),
            **body,
        },
        headers=account.headers,
    )
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


def new_key() -> str:
    return str(uuid.uuid4())
