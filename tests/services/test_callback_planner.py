"""What a callback may do, from the account's rows (SQLite): E.164 numbers, an agent of the
account, outbound calls allowed through a setup, a trunk the network policy permits."""

from __future__ import annotations

import pytest

from afterbeep.app import Runtime
from afterbeep.domain.errors import InvalidInput, InvalidPhoneNumber, Unavailable
from afterbeep.domain.netpolicy import NetworkPolicy
from afterbeep.services.callbacks import CallbackPlanner
from afterbeep.services.contact_center import CallbackRequest
from afterbeep.services.netguard import HostGuard
from tests.e2e.rig import Api, api_of

pytestmark = pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)

CUSTOMER = "+14155550199"
CALL_CENTER = "+12125550100"


def request(api: Api, agent: str, **fields: str) -> CallbackRequest:
    base = {
        "account_id": api.account_id,
        "agent_user_id": agent,
        "customer_number": CUSTOMER,
        "caller_id": CALL_CENTER,
        "voice_call_id": "vc_01jg8asp59ps9rtt7azhrhvcre",
    }
    return CallbackRequest(**{**base, **fields})


async def setup_of(api: Api, **fields: object) -> str:
    body = {
        "name": "trunk", "trunk_host": "127.0.0.1", "trunk_port": 5060, "transport": "udp",
        "max_calls_per_second": 5, "max_concurrent_calls": 2,
        "numbers": [{"e164": "+12125550101"}], "deposit_uri": "", **fields,
    }  # fmt: skip
    return str((await api.post("/v1/telephony-setups", body))["id"])


async def allow(api: Api, **body: object) -> None:
    response = await api.http.patch("/v1/account", json=body, headers=api.headers)
    assert response.status_code == 200, response.text


async def test_the_plan_and_every_refusal(runtime: Runtime) -> None:
    planner = CallbackPlanner(runtime.lookups, HostGuard(runtime.settings.network_policy()))
    async with api_of(runtime) as api:
        agent = str((await api.post("/v1/users", {"username": "301"}))["id"])
        with pytest.raises(Unavailable) as refused:
            await planner.plan(request(api, agent))
        assert refused.value.error_id == "outbound-not-allowed"
        await allow(api, allow_device_outbound=True)
        with pytest.raises(Unavailable) as refused:
            await planner.plan(request(api, agent))
        assert refused.value.error_id == "no-outbound-setup"
        setup_id = await setup_of(api)
        await allow(api, device_outbound_setup_id=setup_id, language="es")

        plan = await planner.plan(request(api, agent))
        assert plan.outside.setup.id == setup_id and plan.outside.to_e164 == CUSTOMER
        assert plan.outside.caller_id == CALL_CENTER and plan.language == "es"

        for field, value in [
            ("customer_number", "4155550199"),  # national: not E.164
            ("customer_number", "+1415555019"),  # too short
            ("caller_id", "+1 212 555 0100"),  # not in E.164 form
            ("caller_id", ""),
        ]:
            with pytest.raises(InvalidPhoneNumber) as invalid:
                await planner.plan(request(api, agent, **{field: value}))
            assert invalid.value.field == field
        with pytest.raises(InvalidInput) as invalid:
            await planner.plan(request(api, "usr_01jg8asp59ps9rtt7azhrhvcre"))
        assert invalid.value.field == "agent_user_id"
        with pytest.raises(InvalidInput):
            await planner.plan(request(api, "dev_01jg8asp59ps9rtt7azhrhvcre"))

        # the operator's policy no longer opens loopback: the setup's trunk may not be called
        strict = CallbackPlanner(runtime.lookups, HostGuard(NetworkPolicy()))
        with pytest.raises(Unavailable) as refused:
            await strict.plan(request(api, agent))
        assert refused.value.error_id == "address-not-allowed"

        # another account's agent is not this account's
        async with api_of(runtime, "Other Co") as other:
            await allow(other, allow_device_outbound=True)
            await allow(other, device_outbound_setup_id=await setup_of(other))
            with pytest.raises(InvalidInput) as invalid:
                await planner.plan(request(other, agent))
            assert invalid.value.field == "agent_user_id"
