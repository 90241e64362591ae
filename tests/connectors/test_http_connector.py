"""HttpTelephonyApi over real HTTP on 127.0.0.1: a far end that checks every request's RS256 JWT
against the connector's public key, behind a proxy that answers chosen requests itself (500,
429 with Retry-After) so each is seen to be tried again, and the network policy refusing the
far end's address before any byte is sent."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from afterbeep.connectors.http import HttpTelephonyApi, http_client, retry_after_seconds
from afterbeep.domain.clock import SystemClock
from afterbeep.domain.connectors import Connector
from afterbeep.domain.netpolicy import NetworkPolicy
from afterbeep.services.contact_center import TelephonyApiError
from afterbeep.services.voicemail_sequence import ApiExchange
from tests.fixtures.http_peers import FaultProxy, served

ORG = "00Dxx0000001gPL"
API_NAME = "MyContactCenter"
PROVIDER = "afterbeep-test"
LOOPBACK = NetworkPolicy.parse("127.0.0.0/8")


def key_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return private, public


@dataclass
class TokenCheckingFarEnd:
    """The four calls of the sequence, each refused 401 unless its JWT verifies."""

    public_pem: str
    claims: list[dict[str, Any]] = field(default_factory=list)
    provider_names: list[str | None] = field(default_factory=list)
    done: list[tuple[str, str, Any]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def create(request: Request) -> JSONResponse:
            return await self._answer(request, "create", lambda b: {"voiceCallId": "0LQ1", "errors": []})

        async def update(request: Request) -> JSONResponse:
            return await self._answer(request, "update", lambda b: {"status": "pending"})

        async def messages(request: Request) -> JSONResponse:
            return await self._answer(request, "messages", lambda b: {"result": "Accepted"})

        async def route(request: Request) -> JSONResponse:
            return await self._answer(request, "route", lambda b: {"agent": None, "queue": "q"})

        return Starlette(
            routes=[
                Route("/telephony/v1/voiceCalls", create, methods=["POST"]),
                Route("/telephony/v1/voiceCalls/{key}", update, methods=["PATCH"]),
                Route("/telephony/v1/voiceCalls/{key}/messages", messages, methods=["POST"]),
                Route("/telephony/v1/voiceCalls/{key}/omniFlow", route, methods=["PATCH"]),
            ]
        )

    async def _answer(self, request: Request, op: str, answer: Any) -> JSONResponse:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        try:
            claims = jwt.decode(
                token,
                self.public_pem,
                algorithms=["RS256"],
                issuer=ORG,
                options={"require": ["exp", "iat", "iss", "sub"]},
            )
        except jwt.PyJWTError as exc:
            return JSONResponse({"title": f"unauthorized: {exc}"}, status_code=401)
        if claims["sub"] != API_NAME:
            return JSONResponse({"title": "unknown call center"}, status_code=401)
        self.claims.append(claims)
        self.provider_names.append(request.headers.get("telephony-provider-name"))
        body = await request.json()
        self.done.append((op, request.url.path, body))
        return JSONResponse(answer(body))


def connector(base_url: str, **fields: Any) -> Connector:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "id": "ccx_01jaaaaaaaaaaaaaaaaaaaaaaa",
        "account_id": "acc_01jaaaaaaaaaaaaaaaaaaaaaaa",
        "name": "Outside",
        "base_url": base_url + "/telephony/v1",
        "call_center_api_name": API_NAME,
        "org_id": ORG,
        "created_at": now,
        "updated_at": now,
        "provider_name": PROVIDER,
        **fields,
    }
    return Connector(**values)


@contextlib.asynccontextmanager
async def far_end_behind_proxy(
    public_pem: str, inject: Any
) -> AsyncIterator[tuple[TokenCheckingFarEnd, FaultProxy]]:
    far = TokenCheckingFarEnd(public_pem)
    async with served(far.app()) as upstream, FaultProxy(upstream, inject) as proxy:
        yield far, proxy


async def test_every_request_is_signed_and_5xx_and_429_are_tried_again() -> None:
    private, public = key_pair()
    gaps: list[float] = []

    def inject(method: str, path: str, seen: int) -> tuple[int, dict[str, str]] | None:
        if path.endswith("/voiceCalls") and seen < 2:
            return 500, {}
        if path.endswith("/omniFlow") and not any(p.path.endswith("/omniFlow") for p in proxy.seen):
            return 429, {"Retry-After": "1"}
        return None

    exchanges: list[ApiExchange] = []
    async with far_end_behind_proxy(public, inject) as (far, proxy), http_client(LOOPBACK) as client:
        api = HttpTelephonyApi(
            connector(proxy.url),
            private,
            client,
            SystemClock(),
            observer=exchanges.append,
            backoff_base=0.05,
        )
        created = await api.create_voice_call({"vendorCallKey": "k1", "callCenterApiName": API_NAME})
        assert created == {"voiceCallId": "0LQ1", "errors": []}
        await api.update_voice_call("k1", {"isActiveCall": True})
        await api.add_messages("k1", {"messages": []})
        loop = asyncio.get_running_loop()
        before = loop.time()
        routed = await api.route("0LQ1", {"dialedNumber": "+12025550100"})
        gaps.append(loop.time() - before)
        assert routed == {"agent": None, "queue": "q"}
        await api.update_voice_call("k1", {"isActiveCall": False})
    # each step reached the far end once; the proxy answered 500, 500 and 429 in between
    assert [op for op, _, _ in far.done] == ["create", "update", "messages", "route", "update"]
    assert [(p.method, p.status, p.injected) for p in proxy.seen] == [
        ("POST", 500, True),
        ("POST", 500, True),
        ("POST", 200, False),
        ("PATCH", 200, False),
        ("POST", 200, False),
        ("PATCH", 429, True),
        ("PATCH", 200, False),
        ("PATCH", 200, False),
    ]
    assert gaps[0] >= 1.0  # Retry-After: 1 was waited for (a lower bound, not a speed check)
    # a fresh token per request: iss, sub, exp, iat, a jti never repeated; the provider header
    assert len({c["jti"] for c in far.claims}) == len(far.claims) == 5
    for claims in far.claims:
        assert (claims["iss"], claims["sub"]) == (ORG, API_NAME)
        assert 0 < claims["exp"] - claims["iat"] <= 300
        assert "aud" not in claims
    assert set(far.provider_names) == {PROVIDER}
    tokens = {p.headers["authorization"] for p in proxy.seen}
    assert len(tokens) == len(proxy.seen)
    # every attempt told to the observer, with its answer
    assert [(x.method, x.path, x.status, x.attempt) for x in exchanges] == [
        ("POST", "/voiceCalls", 500, 1),
        ("POST", "/voiceCalls", 500, 2),
        ("POST", "/voiceCalls", 200, 3),
        ("PATCH", "/voiceCalls/k1", 200, 1),
        ("POST", "/voiceCalls/k1/messages", 200, 1),
        ("PATCH", "/voiceCalls/0LQ1/omniFlow", 429, 1),
        ("PATCH", "/voiceCalls/0LQ1/omniFlow", 200, 2),
        ("PATCH", "/voiceCalls/k1", 200, 1),
    ]
    assert exchanges[2].answer == {"voiceCallId": "0LQ1", "errors": []}


async def test_refusals_and_exhausted_retries_are_errors_the_sequence_can_tell_apart() -> None:
    private, _ = key_pair()
    _, other_public = key_pair()

    def inject(method: str, path: str, seen: int) -> tuple[int, dict[str, str]] | None:
        return (503, {}) if path.endswith("/omniFlow") else None

    async with far_end_behind_proxy(other_public, inject) as (far, proxy), http_client(LOOPBACK) as client:
        api = HttpTelephonyApi(connector(proxy.url), private, client, SystemClock(), backoff_base=0.01)
        # signed with a key the far end does not know: 401, not tried again
        with pytest.raises(TelephonyApiError) as refused:
            await api.create_voice_call({"vendorCallKey": "k1"})
        assert refused.value.status == 401 and not refused.value.retryable
        assert len(proxy.seen) == 1
        # 503 on every try: retryable, after max_tries
        with pytest.raises(TelephonyApiError) as down:
            await api.route("0LQ1", {"dialedNumber": "+12025550100"})
        assert down.value.status == 503 and down.value.retryable
        assert len(proxy.seen) == 1 + 4
    assert far.done == []


async def test_the_network_policy_refuses_the_far_end_before_connecting() -> None:
    private, public = key_pair()
    closed = NetworkPolicy.parse("")
    async with far_end_behind_proxy(public, lambda m, p, s: None) as (_, proxy), http_client(closed) as client:
        api = HttpTelephonyApi(connector(proxy.url), private, client, SystemClock())
        with pytest.raises(TelephonyApiError) as blocked:
            await api.create_voice_call({"vendorCallKey": "k1"})
    assert blocked.value.status == 403 and not blocked.value.retryable
    assert proxy.seen == []


def test_retry_after_reads_seconds_and_dates() -> None:
    now = datetime(2026, 12, 7, 6, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("7", now) == 7.0
    assert retry_after_seconds("Mon, 07 Dec 2026 06:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Mon, 07 Dec 2026 05:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None
