"""Ring groups and queues with a UserLookup (the users repository once merged): members and
agents must be the account's users (agents: `is_agent`), else refused by name."""

from __future__ import annotations

import pytest

from afterbeep.app import Runtime
from afterbeep.domain.errors import InvalidInput, NotFound
from afterbeep.domain.ids import new_id
from afterbeep.domain.numbers import Destination, DestKind
from afterbeep.domain.queues import AgentStatus, QueueMember, QueueSettings
from afterbeep.domain.ring_groups import RingGroupMember
from afterbeep.services.queues import QueueService
from afterbeep.services.ring_groups import RingGroupService
from tests.conftest import TestAccount as Acct

AGENT, PERSON, STRANGER = new_id("usr"), new_id("usr"), new_id("usr")
DEVICE = "dev_01jg8asp59ps9rtt7azhrhvcre"


class Lookup:
    def __init__(self, account_id: str) -> None:
        self.account_id = account_id

    async def user_exists(self, account_id: str, user_id: str) -> bool:
        return account_id == self.account_id and user_id in (AGENT, PERSON)

    async def device_exists(self, account_id: str, device_id: str) -> bool:
        return account_id == self.account_id and device_id == DEVICE

    async def is_agent(self, account_id: str, user_id: str) -> bool:
        return account_id == self.account_id and user_id == AGENT

    async def agent_ids(self, account_id: str) -> list[str]:
        return [AGENT] if account_id == self.account_id else []


async def test_members_must_be_users_of_the_account(runtime: Runtime, account: Acct) -> None:
    lookup = Lookup(account.id)
    groups = RingGroupService(runtime.uow, runtime.clock, lookup)
    created = await groups.create(
        account.id,
        "Sales",
        [RingGroupMember(user_id=PERSON), RingGroupMember(device_id=DEVICE, position=1)],
        exit_dest=Destination(DestKind.USER, AGENT),
    )
    assert len(created.members) == 2
    for members, field in (
        ([RingGroupMember(user_id=STRANGER)], "members[0].user_id"),
        ([RingGroupMember(device_id="dev_01jg8asp59ps9rtt7azhrhvcrf")], "members[0].device_id"),
    ):
        with pytest.raises(InvalidInput) as err:
            await groups.create(account.id, "x", members)
        assert (err.value.field, err.value.error_id) == (field, "unknown-reference")
    with pytest.raises(InvalidInput) as err:
        await groups.create(account.id, "x", exit_dest=Destination(DestKind.USER, STRANGER))
    assert err.value.field == "exit_dest_id"


async def test_queue_members_and_agents_must_be_agent_users(
    runtime: Runtime, account: Acct
) -> None:
    queues = QueueService(runtime.uow, runtime.clock, runtime.queue_engine, Lookup(account.id))
    queue = await queues.create(account.id, "Support", QueueSettings(), [QueueMember(AGENT)])
    assert queue.members == (QueueMember(AGENT),)
    with pytest.raises(InvalidInput) as err:
        await queues.create(account.id, "x", QueueSettings(), [QueueMember(PERSON)])
    assert (err.value.field, err.value.error_id) == ("members[0].user_id", "unknown-reference")
    view = await queues.set_status(account.id, AGENT, AgentStatus.AVAILABLE)
    assert (view.status, view.queue_ids) == (AgentStatus.AVAILABLE, (queue.id,))
    for user_id in (PERSON, STRANGER, "usr_x"):
        with pytest.raises(NotFound):
            await queues.set_status(account.id, user_id, AgentStatus.AVAILABLE)
