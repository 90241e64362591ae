"""The SQL unit of work: one transaction, every repository on the same connection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection

from afterbeep.db.engine import Database
from afterbeep.db.repos.accounts import SqlAccountRepo, SqlSecretRepo
from afterbeep.db.repos.campaigns import SqlCampaignRepo
from afterbeep.db.repos.mailboxes import SqlMailboxRepo, SqlMessageRepo
from afterbeep.db.repos.media import SqlMediaRepo
from afterbeep.db.repos.notifications import SqlNotificationRepo
from afterbeep.db.repos.numbers import SqlNumberRepo
from afterbeep.db.repos.ringless import (
    SqlConsentRepo,
    SqlSuppressionRepo,
    SqlTelephonySetupRepo,
    SqlUseCaseRepo,
    SqlVoicemailSendRepo,
)
from afterbeep.db.repos.webhooks import SqlEventOutbox, SqlWebhookRepo
from afterbeep.services.ports import UnitOfWork, UnitOfWorkFactory


class SqlUnitOfWork:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.accounts = SqlAccountRepo(conn)
        self.secrets = SqlSecretRepo(conn)
        self.media = SqlMediaRepo(conn)
        self.mailboxes = SqlMailboxRepo(conn)
        self.messages = SqlMessageRepo(conn)
        self.numbers = SqlNumberRepo(conn)
        self.webhooks = SqlWebhookRepo(conn)
        self.events = SqlEventOutbox(conn)
        self.notifications = SqlNotificationRepo(conn)
        self.telephony_setups = SqlTelephonySetupRepo(conn)
        self.use_cases = SqlUseCaseRepo(conn)
        self.voicemail_sends = SqlVoicemailSendRepo(conn)
        self.suppressions = SqlSuppressionRepo(conn)
        self.consents = SqlConsentRepo(conn)
        self.campaigns = SqlCampaignRepo(conn)


def unit_of_work_factory(db: Database, *, readonly: bool = False) -> UnitOfWorkFactory:
    """Units of work on `db`; `readonly` ones are for look-ups that must not queue behind writes."""

    @asynccontextmanager
    async def unit() -> AsyncIterator[UnitOfWork]:
        async with db.begin(readonly=readonly) as conn:
            yield SqlUnitOfWork(conn)

    return unit
