"""What route handlers receive: the services (built by `afterbeep.app`) and the caller's account."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from afterbeep.api.problems import ProblemError
from afterbeep.domain.accounts import Account
from afterbeep.services.accounts import AccountService
from afterbeep.services.campaigns import CampaignService
from afterbeep.services.mailboxes import MailboxService
from afterbeep.services.media import MediaService
from afterbeep.services.messages import MessageService
from afterbeep.services.notifications import NotificationService
from afterbeep.services.numbers import NumberService
from afterbeep.services.ports.storage import ObjectStore
from afterbeep.services.ringless import RinglessService
from afterbeep.services.sender_numbers import SenderNumberService
from afterbeep.services.webhooks import WebhookService


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
    store: ObjectStore
    secret_key: bytes
    public_url: str
    max_upload_bytes: int
    senders: SenderNumberService
    admin_key_hash: bytes | None  # SHA-256 of AFTERBEEP_ADMIN_KEY; None: the admin API is closed


def services(request: Request) -> ApiServices:
    found = request.app.state.services
    assert isinstance(found, ApiServices)
    return found


async def current_account(request: Request) -> Account:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ProblemError(401, "unauthorized", "Unauthorized", "send Authorization: Bearer <api key>")
    account = await services(request).accounts.authenticate(token.strip())
    if account is None:
        raise ProblemError(401, "unauthorized", "Unauthorized", "the API key is not valid")
    request.state.account_id = account.id
    return account


Svc = Annotated[ApiServices, Depends(services)]
CurrentAccount = Annotated[Account, Depends(current_account)]
