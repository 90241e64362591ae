"""/telephony/v1 authentication on both backends: a token shaped like the vendor's demo
connector's is accepted; every refusal (expired, past the maximum lifetime, wrong audience,
unknown call center, reused jti, wrong signature, missing exp, ...) is a 401 problem."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from afterbeep.app import Runtime
from tests.api.telephony_support import (
    API_NAME,
    ORG_ID,
    PROVIDER,
    bearer,
    demo_connector_token,
    make_call_center,
    new_key,
    private_key,
    token,
)
from tests.api.test_telephony_api import seed_body
from tests.conftest import Backend, make_settings
from tests.conftest import TestAccount as Acct


@pytest.fixture
async def center(client: httpx.AsyncClient, account: Acct) -> dict[str, Any]:
    return await make_call_center(client, account)


async def create_with(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await client.post("/telephony/v1/voiceCalls", json=seed_body(new_key()), headers=headers)


def refused(response: httpx.Response, error_id: str, title: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["www-authenticate"] == "Bearer"
    body = response.json()
    assert (body["status"], body["error_id"], body["title"]) == (401, error_id, title), body


async def test_a_token_like_the_demo_connectors_is_accepted(
    client: httpx.AsyncClient, center: dict[str, Any]
) -> None:
    demo = demo_connector_token()
    assert set(jwt.decode(demo, options={"verify_signature": False})) == {
        "iss",
        "sub",
        "exp",
        "iat",
    }
    r = await create_with(client, bearer(demo))
    assert r.status_code == 201, r.text
    # the same token again (no jti): accepted again
    assert (await create_with(client, bearer(demo))).status_code == 201
    # no iat either: the lifetime counts from now
    assert (
        await create_with(client, bearer(token(lifetime=4 * 3600 - 5, with_iat=False)))
    ).status_code == 201
    # without the Telephony-Provider-Name header too
    plain = {"Authorization": f"Bearer {token()}"}
    assert (await create_with(client, plain)).status_code == 201


async def test_every_token_failure_is_a_401_problem(
    client: httpx.AsyncClient, runtime: Runtime, center: dict[str, Any]
) -> None:
    now = time.time()
    public = runtime.settings.resolved_public_url()
    refused(
        await create_with(client, bearer(token(iat=now - 3600, lifetime=600))),
        "token-expired",
        "Token expired",
    )
    refused(
        await create_with(client, bearer(token(lifetime=4 * 3600 + 60))),
        "token-lifetime-too-long",
        "Token lifetime too long",
    )
    refused(
        await create_with(client, bearer(token(lifetime=5 * 3600, with_iat=False))),
        "token-lifetime-too-long",
        "Token lifetime too long",
    )
    refused(
        await create_with(client, bearer(token(aud="https://elsewhere.example"))),
        "wrong-audience",
        "Wrong audience",
    )
    refused(
        await create_with(client, bearer(token(sub="SomeOtherCenter"))),
        "unknown-call-center",
        "Unknown call center",
    )
    refused(
        await create_with(client, bearer(token(iss="00DOTHERORG"))),
        "unknown-call-center",
        "Unknown call center",
    )
    refused(
        await create_with(client, bearer(token(iss="00D\x00X"))),
        "unknown-call-center",
        "Unknown call center",
    )
    refused(await create_with(client, bearer(token(key=1))), "bad-signature", "Bad signature")
    no_exp = jwt.encode(
        {"iss": ORG_ID, "sub": API_NAME, "iat": int(now)}, private_key(), algorithm="RS256"
    )
    refused(await create_with(client, bearer(no_exp)), "missing-claim", "Missing claim")
    hs256 = jwt.encode(
        {"iss": ORG_ID, "sub": API_NAME, "exp": int(now) + 60}, "s" * 32, algorithm="HS256"
    )
    refused(
        await create_with(client, bearer(hs256)), "unsupported-algorithm", "Unsupported algorithm"
    )
    refused(await create_with(client, bearer("abc.def.ghi")), "malformed-token", "Malformed token")
    refused(await create_with(client, bearer("not-a-key")), "unauthorized", "Unauthorized")
    refused(await create_with(client, PROVIDER), "unauthorized", "Unauthorized")
    future = token(iat=now + 3600, lifetime=600)
    refused(await create_with(client, bearer(future)), "token-not-yet-valid", "Token not yet valid")

    # the audience of this service is accepted, with or without a trailing slash
    assert (await create_with(client, bearer(token(aud=public)))).status_code == 201
    assert (await create_with(client, bearer(token(aud=[public + "/", "x"])))).status_code == 201


async def test_a_jti_is_accepted_once(client: httpx.AsyncClient, center: dict[str, Any]) -> None:
    once = token(jti="f1b0c3")
    assert (await create_with(client, bearer(once))).status_code == 201
    refused(await create_with(client, bearer(once)), "token-reused", "Token reused")
    # a new token with the same jti is a replay too; another jti is not
    refused(
        await create_with(client, bearer(token(jti="f1b0c3", lifetime=200))),
        "token-reused",
        "Token reused",
    )
    assert (await create_with(client, bearer(token(jti="f1b0c4")))).status_code == 201


async def test_a_token_is_for_its_own_call_center_only(
    client: httpx.AsyncClient, account: Acct, other_account: Acct, center: dict[str, Any]
) -> None:
    # the other account has a call center of the same org id and name, with another key
    await make_call_center(client, other_account, key=1)
    mine, theirs = bearer(token()), bearer(token(key=1))
    r = await create_with(client, mine)
    assert r.status_code == 201, r.text
    vc = r.json()["voiceCallId"]
    r = await create_with(client, theirs)
    assert r.status_code == 201, r.text
    their_vc = r.json()["voiceCallId"]
    assert (await client.get(f"/telephony/v1/voiceCalls/{vc}", headers=mine)).status_code == 200
    assert (await client.get(f"/telephony/v1/voiceCalls/{vc}", headers=theirs)).status_code == 404
    assert (
        await client.get(f"/telephony/v1/voiceCalls/{their_vc}", headers=mine)
    ).status_code == 404
    # a second call center of the account: the first one's token does not reach its calls
    second = await make_call_center(client, account, call_center_api_name="Second", org_id=ORG_ID)
    assert second["call_center_api_name"] == "Second"
    key = new_key()
    r = await client.post(
        "/telephony/v1/voiceCalls",
        json={**seed_body(key), "callCenterApiName": "Second"},
        headers=account.headers,
    )
    assert r.status_code == 201, r.text
    assert (await client.get(f"/telephony/v1/voiceCalls/{key}", headers=mine)).status_code == 404
    wrong = await client.post(
        "/telephony/v1/voiceCalls",
        json={**seed_body(new_key()), "callCenterApiName": "Second"},
        headers=mine,
    )
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["field"] == "callCenterApiName"


async def test_the_audience_and_the_longest_lifetime_are_settings(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AFTERBEEP_TELEPHONY_JWT_MAX_TTL", "900")
    monkeypatch.setenv("AFTERBEEP_TELEPHONY_JWT_AUDIENCE", "https://scrt.example.com")
    rt = Runtime(make_settings(backend))
    assert rt.settings.telephony_jwt_max_ttl == 900
    await rt.start(workers=False)
    try:
        transport = httpx.ASGITransport(app=rt.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://afterbeep.test"
        ) as client:
            issued = await rt.accounts.create_account("Settings Co")
            await make_call_center(client, Acct(issued.account_id, issued.secret))
            ok = bearer(token(aud="https://scrt.example.com", lifetime=900))
            assert (await create_with(client, ok)).status_code == 201
            public = rt.settings.resolved_public_url()
            refused(
                await create_with(client, bearer(token(aud=public))),
                "wrong-audience",
                "Wrong audience",
            )
            refused(
                await create_with(client, bearer(demo_connector_token())),
                "token-lifetime-too-long",
                "Token lifetime too long",
            )
    finally:
        await rt.stop()


async def test_seen_token_ids_are_forgotten_once_expired(
    runtime: Runtime, center: dict[str, Any]
) -> None:
    now = datetime.now(UTC)
    async with runtime.uow() as uow:
        jtis = uow.telephony_jtis
        assert await jtis.remember(center["id"], "old", now + timedelta(seconds=5), now)
        assert not await jtis.remember(center["id"], "old", now + timedelta(seconds=5), now)
        later = now + timedelta(seconds=10)
        assert await jtis.remember(center["id"], "new", later + timedelta(hours=1), later)
        # "old" expired and was pruned by the last call: it may be seen again
        assert await jtis.remember(center["id"], "old", later + timedelta(hours=1), later)
        assert not await jtis.remember(center["id"], "new", later + timedelta(hours=1), later)
        # ids are per call center
        assert await jtis.remember("cc_other", "new", later + timedelta(hours=1), later)
