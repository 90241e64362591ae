"""The SQL unit of work: one transaction, every repository on the same connection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cached_property
from typing import cast

from sqlalchemy.ext.asyncio import AsyncConnection

from afterbeep.db.engine import Database, DirectConnection
from afterbeep.db.repos.accounts import SqlAccountRepo, SqlSecretRepo
from afterbeep.db.repos.campaigns import SqlCampaignRepo
from afterbeep.db.repos.flows import SqlFlowRepo
from afterbeep.db.repos.mailboxes import SqlMailboxRepo, SqlMessageRepo
from afterbeep.db.repos.media import SqlMediaRepo
from afterbeep.db.repos.members import SqlMemberRepo
from afterbeep.db.repos.notifications import SqlNotificationRepo
from afterbeep.db.repos.numbers import SqlNumberRepo, SqlVerifiedSenderRepo
from afterbeep.db.repos.pin_failures import SqlPinFailureRepo
from afterbeep.db.repos.ring_groups import SqlQueueRepo, SqlRingGroupRepo
from afterbeep.db.repos.ringless import (
    SqlConsentRepo,
    SqlSuppressionRepo,
    SqlTelephonySetupRepo,
    SqlUseCaseRepo,
    SqlVoicemailSendRepo,
)
from afterbeep.db.repos.schedules import SqlScheduleRepo
from afterbeep.db.repos.telephony import SqlCallCenterRepo, SqlTelephonyJtiRepo, SqlVoiceCallRepo
from afterbeep.db.repos.transcripts import SqlTranscriptRepo
from afterbeep.db.repos.users import (
    SqlAuthFailureRepo,
    SqlDeviceRepo,
    SqlRegistrationRepo,
    SqlUserRepo,
)
from afterbeep.db.repos.voicemail_sequence import SqlConnectorRepo, SqlDeliveryRepo
from afterbeep.db.repos.webhooks import (
    SqlEventOutbox,
    SqlWebhookRepo,
    notify_published,
    take_published,
)
from afterbeep.db.repos.work_items import SqlWorkItemRepo
from afterbeep.services.ports import UnitOfWork, UnitOfWorkFactory


class SqlUnitOfWork:
    """Repositories are made on first use: a unit on the send path touches three or four of them."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    @cached_property
    def accounts(self) -> SqlAccountRepo:
        return SqlAccountRepo(self.conn)

    @cached_property
    def secrets(self) -> SqlSecretRepo:
        return SqlSecretRepo(self.conn)

    @cached_property
    def media(self) -> SqlMediaRepo:
        return SqlMediaRepo(self.conn)

    @cached_property
    def mailboxes(self) -> SqlMailboxRepo:
        return SqlMailboxRepo(self.conn)

    @cached_property
    def messages(self) -> SqlMessageRepo:
        return SqlMessageRepo(self.conn)

    @cached_property
    def numbers(self) -> SqlNumberRepo:
        return SqlNumberRepo(self.conn)

    @cached_property
    def schedules(self) -> SqlScheduleRepo:
        return SqlScheduleRepo(self.conn)

    @cached_property
    def webhooks(self) -> SqlWebhookRepo:
        return SqlWebhookRepo(self.conn)

    @cached_property
    def events(self) -> SqlEventOutbox:
        return SqlEventOutbox(self.conn)

    @cached_property
    def notifications(self) -> SqlNotificationRepo:
        return SqlNotificationRepo(self.conn)

    @cached_property
    def telephony_setups(self) -> SqlTelephonySetupRepo:
        return SqlTelephonySetupRepo(self.conn)

    @cached_property
    def use_cases(self) -> SqlUseCaseRepo:
        return SqlUseCaseRepo(self.conn)

    @cached_property
    def voicemail_sends(self) -> SqlVoicemailSendRepo:
        return SqlVoicemailSendRepo(self.conn)

    @cached_property
    def suppressions(self) -> SqlSuppressionRepo:
        return SqlSuppressionRepo(self.conn)

    @cached_property
    def consents(self) -> SqlConsentRepo:
        return SqlConsentRepo(self.conn)

    @cached_property
    def campaigns(self) -> SqlCampaignRepo:
        return SqlCampaignRepo(self.conn)

    @cached_property
    def verified_senders(self) -> SqlVerifiedSenderRepo:
        return SqlVerifiedSenderRepo(self.conn)

    @cached_property
    def flows(self) -> SqlFlowRepo:
        return SqlFlowRepo(self.conn)

    @cached_property
    def members(self) -> SqlMemberRepo:
        return SqlMemberRepo(self.conn)

    @cached_property
    def transcripts(self) -> SqlTranscriptRepo:
        return SqlTranscriptRepo(self.conn)

    @cached_property
    def ring_groups(self) -> SqlRingGroupRepo:
        return SqlRingGroupRepo(self.conn)

    @cached_property
    def queues(self) -> SqlQueueRepo:
        return SqlQueueRepo(self.conn)

    @cached_property
    def users(self) -> SqlUserRepo:
        return SqlUserRepo(self.conn)

    @cached_property
    def devices(self) -> SqlDeviceRepo:
        return SqlDeviceRepo(self.conn)

    @cached_property
    def registrations(self) -> SqlRegistrationRepo:
        return SqlRegistrationRepo(self.conn)

    @cached_property
    def sip_auth_failures(self) -> SqlAuthFailureRepo:
        return SqlAuthFailureRepo(self.conn)

    @cached_property
    def cc_deliveries(self) -> SqlDeliveryRepo:
        return SqlDeliveryRepo(self.conn)

    @cached_property
    def cc_connectors(self) -> SqlConnectorRepo:
        return SqlConnectorRepo(self.conn)

    @cached_property
    def call_centers(self) -> SqlCallCenterRepo:
        return SqlCallCenterRepo(self.conn)

    @cached_property
    def voice_calls(self) -> SqlVoiceCallRepo:
        return SqlVoiceCallRepo(self.conn)

    @cached_property
    def telephony_jtis(self) -> SqlTelephonyJtiRepo:
        return SqlTelephonyJtiRepo(self.conn)

    @cached_property
    def work_items(self) -> SqlWorkItemRepo:
        return SqlWorkItemRepo(self.conn)

    @cached_property
    def mailbox_pin_failures(self) -> SqlPinFailureRepo:
        return SqlPinFailureRepo(self.conn)


def unit_of_work_factory(
    db: Database, *, readonly: bool = False, direct: bool = False
) -> UnitOfWorkFactory:
    """Units of work on `db`; `readonly` ones are for look-ups that must not queue behind writes.

    `direct` ones (`Database.begin_direct`) are for the hot request path: on a SQLite file their
    statements skip aiosqlite. A unit must then not hold its transaction across other awaits
    for long: a read-only one runs on the event loop, a writing one holds the writer queue.
    """
    if not direct:

        @asynccontextmanager
        async def unit() -> AsyncIterator[UnitOfWork]:
            async with db.begin(readonly=readonly) as conn:
                yield SqlUnitOfWork(conn)

        return unit

    @asynccontextmanager
    async def direct_unit() -> AsyncIterator[UnitOfWork]:
        published = False
        async with db.begin_direct(readonly=readonly) as conn:
            # The repositories only use execute, dialect, engine and info, which
            # DirectConnection has with the same meaning.
            yield SqlUnitOfWork(cast(AsyncConnection, conn))
            if isinstance(conn, DirectConnection):
                published = take_published(conn.info)
        if published:
            notify_published(db.engine.sync_engine.pool)

    return direct_unit
