"""What route handlers receive: the services (built by `afterbeep.app`) and the caller's account."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from afterbeep.api.problems import ProblemError
from afterbeep.domain.accounts import Account
from afterbeep.services.accounts import AccountService
from afterbeep.services.call_centers import CallCenterService
from afterbeep.services.campaigns import CampaignService
from afterbeep.services.connectors import ConnectorService
from afterbeep.services.flows import FlowService
from afterbeep.services.mailboxes import MailboxService
from afterbeep.services.media import MediaService
from afterbeep.services.members import MemberService
from afterbeep.services.messages import MessageService
from afterbeep.services.notifications import NotificationService
from afterbeep.services.numbers import NumberService
from afterbeep.services.ports.storage import ObjectStore
from afterbeep.services.queues import QueueService
from afterbeep.services.ring_groups import RingGroupService
from afterbeep.services.ringless import RinglessService
from afterbeep.services.schedules import ScheduleService
from afterbeep.services.sender_numbers import SenderNumberService
from afterbeep.services.telephony_api import TelephonyApiService
from afterbeep.services.transcripts import TranscriptService
from afterbeep.services.users import UserService
from afterbeep.services.voicemail_sequence import TeamDeliveries
from afterbeep.services.webhooks import WebhookService
from afterbeep.services.work_items import WorkItemService


@dataclass(slots=True)
class ApiServices:
    accounts: AccountService
    media: MediaService
    mailboxes: MailboxService
    messages: MessageService
    numbers: NumberService
    webhooks: WebhookService
    notifications: NotificationService
    ringless: RinglessService
    campaigns: CampaignService
    flows: FlowService
    store: ObjectStore
    secret_key: bytes
    public_url: str
    max_upload_bytes: int
    senders: SenderNumberService
    admin_key_hash: bytes | None  # SHA-256 of AFTERBEEP_ADMIN_KEY; None: the admin API is closed
    schedules: ScheduleService
    members: MemberService
    transcripts: TranscriptService
    ring_groups: RingGroupService
    queues: QueueService
    max_body_bytes: int = 256 * 1024
    users: UserService | None = None
    # Issue 18: outside contact centers, and what became of each message sent to a team.
    connectors: ConnectorService | None = None
    team_deliveries: TeamDeliveries | None = None
    # The Telephony API (/telephony/v1) and its call centers (/v1/call-centers).
    telephony: TelephonyApiService | None = None
    call_centers: CallCenterService | None = None
    telephony_jwt_audience: str = ""  # "": the public base URL
    telephony_jwt_max_ttl: float = 4 * 3600.0
    work_items: WorkItemService | None = None


def services(request: Request) -> ApiServices:
    found = request.app.state.services
    assert isinstance(found, ApiServices)
    return found


NO_KEY = "send Authorization: Bearer <api key>"
BAD_KEY = "the API key is not valid"


def bearer_token(header: str) -> str | None:
    """The key of an `Authorization: Bearer <key>` header (any case of `Bearer`), or None."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def current_account(request: Request) -> Account:
    known = getattr(request.state, "account", None)
    if isinstance(known, Account):  # already checked by the request gate (afterbeep.api.limits)
        return known
    token = bearer_token(request.headers.get("authorization", ""))
    if token is None:
        raise ProblemError(401, "unauthorized", "Unauthorized", NO_KEY)
    account = await services(request).accounts.authenticate(token)
    if account is None:
        raise ProblemError(401, "unauthorized", "Unauthorized", BAD_KEY)
    request.state.account = account
    request.state.account_id = account.id
    return account


Svc = Annotated[ApiServices, Depends(services)]
CurrentAccount = Annotated[Account, Depends(current_account)]
