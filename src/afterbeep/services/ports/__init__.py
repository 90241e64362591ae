"""Ports: what services need from the outside world, as Protocols the adapters implement.

A service receives a `UnitOfWorkFactory`; `async with uow_factory() as uow:` is one
transaction across every repository (committed at the end of the block, rolled back on error).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from afterbeep.services.ports.accounts import AccountRepo, SecretRepo
from afterbeep.services.ports.campaigns import CampaignRepo
from afterbeep.services.ports.events import EventOutbox, WebhookRepo
from afterbeep.services.ports.flows import FlowRepo
from afterbeep.services.ports.mailboxes import MailboxRepo, MessageRepo
from afterbeep.services.ports.media import MediaRepo
from afterbeep.services.ports.members import MemberRepo
from afterbeep.services.ports.notifications import NotificationRepo
from afterbeep.services.ports.numbers import NumberRepo, VerifiedSenderRepo
from afterbeep.services.ports.pin_failures import PinFailureRepo
from afterbeep.services.ports.ring_groups import QueueRepo, RingGroupRepo
from afterbeep.services.ports.ringless import (
    ConsentRepo,
    SuppressionRepo,
    TelephonySetupRepo,
    UseCaseRepo,
    VoicemailSendRepo,
)
from afterbeep.services.ports.schedules import ScheduleRepo
from afterbeep.services.ports.telephony import CallCenterRepo, TelephonyJtiRepo, VoiceCallRepo
from afterbeep.services.ports.transcripts import TranscriptRepo
from afterbeep.services.ports.users import (
    AuthFailureRepo,
    DeviceRepo,
    RegistrationRepo,
    UserRepo,
)
from afterbeep.services.ports.voicemail_sequence import ConnectorRepo, DeliveryRepo
from afterbeep.services.ports.work_items import WorkItemRepo

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


class UnitOfWork(Protocol):
    @property
    def accounts(self) -> AccountRepo: ...
    @property
    def secrets(self) -> SecretRepo: ...
    @property
    def media(self) -> MediaRepo: ...
    @property
    def mailboxes(self) -> MailboxRepo: ...
    @property
    def messages(self) -> MessageRepo: ...
    @property
    def numbers(self) -> NumberRepo: ...
    @property
    def schedules(self) -> ScheduleRepo: ...
    @property
    def webhooks(self) -> WebhookRepo: ...
    @property
    def events(self) -> EventOutbox: ...
    @property
    def notifications(self) -> NotificationRepo: ...
    @property
    def telephony_setups(self) -> TelephonySetupRepo: ...
    @property
    def use_cases(self) -> UseCaseRepo: ...
    @property
    def voicemail_sends(self) -> VoicemailSendRepo: ...
    @property
    def suppressions(self) -> SuppressionRepo: ...
    @property
    def consents(self) -> ConsentRepo: ...
    @property
    def campaigns(self) -> CampaignRepo: ...
    @property
    def verified_senders(self) -> VerifiedSenderRepo: ...
    @property
    def flows(self) -> FlowRepo: ...
    @property
    def members(self) -> MemberRepo: ...
    @property
    def transcripts(self) -> TranscriptRepo: ...
    @property
    def ring_groups(self) -> RingGroupRepo: ...
    @property
    def queues(self) -> QueueRepo: ...
    @property
    def users(self) -> UserRepo: ...
    @property
    def devices(self) -> DeviceRepo: ...
    @property
    def registrations(self) -> RegistrationRepo: ...
    @property
    def sip_auth_failures(self) -> AuthFailureRepo: ...
    @property
    def cc_deliveries(self) -> DeliveryRepo: ...
    @property
    def cc_connectors(self) -> ConnectorRepo: ...
    @property
    def call_centers(self) -> CallCenterRepo: ...
    @property
    def voice_calls(self) -> VoiceCallRepo: ...
    @property
    def telephony_jtis(self) -> TelephonyJtiRepo: ...
    @property
    def work_items(self) -> WorkItemRepo: ...
    @property
    def mailbox_pin_failures(self) -> PinFailureRepo: ...


UnitOfWorkFactory = Callable[[], AbstractAsyncContextManager[UnitOfWork]]

__all__ = [
    "AccountRepo",
    "CampaignRepo",
    "ConsentRepo",
    "EventOutbox",
    "FlowRepo",
    "MailboxRepo",
    "MediaRepo",
    "MemberRepo",
    "MessageRepo",
    "NotificationRepo",
    "NumberRepo",
    "Page",
    "QueueRepo",
    "RingGroupRepo",
    "ScheduleRepo",
    "SecretRepo",
    "SuppressionRepo",
    "TelephonySetupRepo",
    "UnitOfWork",
    "UnitOfWorkFactory",
    "UseCaseRepo",
    "VerifiedSenderRepo",
    "VoicemailSendRepo",
    "WebhookRepo",
]
