"""MailboxService: mailbox settings, their PIN and what they hold.

The PIN is hashed with Argon2id (`argon2-cffi`) and the hash kept in the secret store under
`kv:vm:<mailbox id>:pin`; the mailbox row keeps only that reference. Hashing runs in a worker
thread, outside any transaction, because it is deliberately slow.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from afterbeep.domain import mailboxes as rules
from afterbeep.domain import messages as message_rules
from afterbeep.domain.clock import Clock
from afterbeep.domain.errors import Conflict, InvalidInput, NotFound
from afterbeep.domain.flows import RefKind, parse_graph, references
from afterbeep.domain.ids import is_id, new_id
from afterbeep.domain.mailboxes import Mailbox, Usage
from afterbeep.services.numbers import name_users
from afterbeep.services.ports import Page, UnitOfWork, UnitOfWorkFactory
from afterbeep.services.ports.storage import ObjectStore

log = logging.getLogger("afterbeep.mailboxes")

_RESOURCE = "mailbox"


@dataclass(frozen=True, slots=True)
class MailboxView:
    """A mailbox with what it currently holds."""

    mailbox: Mailbox
    usage: Usage

    @property
    def full(self) -> bool:
        return rules.is_full(self.mailbox, self.usage)


async def find_mailbox(uow: UnitOfWork, account_id: str, mailbox_id: str) -> Mailbox | None:
    """The account's mailbox; None for another account's or a malformed id (never queried)."""
    if not is_id(mailbox_id, "vm"):
        return None
    return await uow.mailboxes.get(account_id, mailbox_id)


def _check_fields(fields: Mapping[str, object]) -> None:
    for name in fields:
        if name not in rules.EDITABLE:
            raise InvalidInput(name, "is not a mailbox setting that can be set")
    for name, value in fields.items():
        if value is None and name not in rules.NULLABLE:
            raise InvalidInput(name, "must not be null")


class MailboxService:
    def __init__(self, uow: UnitOfWorkFactory, store: ObjectStore, clock: Clock) -> None:
        self._uow = uow
        self._store = store
        self._clock = clock
        self._hasher = PasswordHasher()

    async def create(self, account_id: str, settings: Mapping[str, object]) -> MailboxView:
        """A new mailbox: `name` is required, every other setting defaults to `rules.DEFAULTS`."""
        _check_fields(settings)
        if "name" not in settings:
            raise InvalidInput("name", "is required")
        now = self._clock.now()
        values: dict[str, object] = {**rules.DEFAULTS, **settings}
        mailbox = rules.check_mailbox(
            Mailbox(
                id=new_id("vm"),
                account_id=account_id,
                pin_secret_ref=None,
                created_at=now,
                updated_at=now,
                **values,  # type: ignore[arg-type]  # check_mailbox checks every type
            )
        )
        async with self._uow() as uow:
            await self._check_greeting(uow, mailbox)
            await self._check_owner(uow, mailbox)
            await self._check_team(uow, mailbox, None)
            await uow.mailboxes.add(mailbox)
        log.info("mailbox created", extra={"mailbox_id": mailbox.id, "account_id": account_id})
        return MailboxView(mailbox, Usage(0, 0))

    async def get(self, account_id: str, mailbox_id: str) -> MailboxView:
        async with self._uow() as uow:
            mailbox = await self._mailbox(uow, account_id, mailbox_id)
            usage = await uow.messages.usage(account_id, [mailbox_id])
        return MailboxView(mailbox, usage[mailbox_id])

    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[MailboxView]:
        async with self._uow() as uow:
            page = await uow.mailboxes.list(account_id, cursor, limit)
            usage = await uow.messages.usage(account_id, [m.id for m in page.items])
        return Page([MailboxView(m, usage[m.id]) for m in page.items], page.next_cursor)

    async def update(
        self, account_id: str, mailbox_id: str, changes: Mapping[str, object]
    ) -> MailboxView:
        """Change only the settings given; the others keep their values."""
        _check_fields(changes)
        async with self._uow() as uow:
            current = await self._mailbox(uow, account_id, mailbox_id)
            if not changes:
                updated = current
            else:
                updated = rules.check_mailbox(
                    dataclasses.replace(current, updated_at=self._clock.now(), **changes)  # type: ignore[arg-type]
                )
                if updated.greeting_ids != current.greeting_ids:
                    await self._check_greeting(uow, updated)
                if updated.owner_member_id != current.owner_member_id:
                    await self._check_owner(uow, updated)
                await self._check_team(uow, updated, current)
                await uow.mailboxes.update(updated)
            usage = await uow.messages.usage(account_id, [mailbox_id])
        return MailboxView(updated, usage[mailbox_id])

    async def delete(self, account_id: str, mailbox_id: str) -> None:
        """Remove the mailbox, its messages with their audio (`message.deleted` for each), and
        its PIN.

        Refused (`Conflict`) while a number routes calls to it or the current version of a flow
        leads to it (a voicemail node). Audio objects are deleted last
        inside the transaction: if one cannot be deleted nothing is committed and a retry
        finishes the job.
        """
        async with self._uow() as uow:
            mailbox = await self._mailbox(uow, account_id, mailbox_id)
            if await uow.mailboxes.numbers_routed_to(account_id, mailbox_id):
                raise Conflict("a number still sends calls to this mailbox", "mailbox-in-use")
            flows = [
                saved.flow.id
                for saved in await uow.flows.current_versions_mentioning(account_id, mailbox_id)
                if mailbox_id
                in references(parse_graph(saved.graph.get("nodes"), saved.graph.get("edges")))[
                    RefKind.MAILBOX
                ]
            ]
            if flows:
                raise Conflict(
                    f"mailbox {mailbox_id!r} is used by {name_users('flows', flows)}",
                    "mailbox-in-use",
                )
            users = await uow.users.with_mailbox(account_id, mailbox_id)
            if users:
                raise Conflict(
                    f"mailbox {mailbox_id!r} is used by {name_users('users', users)}",
                    "mailbox-in-use",
                )
            messages = await uow.messages.delete_in_mailbox(account_id, mailbox_id)
            for message in messages:
                await uow.events.publish(
                    account_id, message_rules.DELETED, message_rules.to_json(message)
                )
            await uow.secrets.delete(account_id, rules.pin_secret_ref(mailbox.id))
            await uow.mailbox_pin_failures.clear_mailbox(mailbox.id)
            await uow.mailboxes.delete(account_id, mailbox_id)
            for message in messages:
                await self._store.delete(message.audio_key)
        log.info(
            "mailbox deleted",
            extra={"mailbox_id": mailbox_id, "account_id": account_id, "messages": len(messages)},
        )

    async def set_pin(self, account_id: str, mailbox_id: str, pin: str) -> None:
        """Check the PIN's strength, then keep only its Argon2 hash in the secret store."""
        rules.check_pin(pin)
        hashed = await asyncio.to_thread(self._hasher.hash, pin)
        async with self._uow() as uow:
            mailbox = await self._mailbox(uow, account_id, mailbox_id)
            ref = rules.pin_secret_ref(mailbox.id)
            await uow.secrets.put(account_id, ref, hashed)
            await uow.mailboxes.update(
                dataclasses.replace(mailbox, pin_secret_ref=ref, updated_at=self._clock.now())
            )
        log.info("mailbox pin set", extra={"mailbox_id": mailbox_id, "account_id": account_id})

    async def verify_pin(self, account_id: str, mailbox_id: str, pin: str) -> bool:
        """Whether `pin` is the mailbox's PIN; False when it has none or does not exist."""
        if not (pin.isascii() and pin.isdigit() and len(pin) <= rules.PIN_MAX_DIGITS):
            return False
        async with self._uow() as uow:
            mailbox = await find_mailbox(uow, account_id, mailbox_id)
            if mailbox is None or mailbox.pin_secret_ref is None:
                return False
            ref = mailbox.pin_secret_ref
            hashed = await uow.secrets.get(account_id, ref)
        if hashed is None:
            return False
        try:
            await asyncio.to_thread(self._hasher.verify, hashed, pin)
        except (VerificationError, InvalidHashError):
            return False
        if self._hasher.check_needs_rehash(hashed):
            rehashed = await asyncio.to_thread(self._hasher.hash, pin)
            async with self._uow() as uow:
                await uow.secrets.put(account_id, ref, rehashed)
        return True

    async def _mailbox(self, uow: UnitOfWork, account_id: str, mailbox_id: str) -> Mailbox:
        mailbox = await find_mailbox(uow, account_id, mailbox_id)
        if mailbox is None:
            raise NotFound(_RESOURCE, mailbox_id)
        return mailbox

    async def _check_greeting(self, uow: UnitOfWork, mailbox: Mailbox) -> None:
        for field_name, greeting in zip(rules.GREETING_FIELDS, mailbox.greeting_ids, strict=True):
            if greeting is not None and await uow.media.get(mailbox.account_id, greeting) is None:
                raise InvalidInput(
                    field_name, "no media with this id in the account", "invalid-reference"
                )

    async def _check_owner(self, uow: UnitOfWork, mailbox: Mailbox) -> None:
        owner = mailbox.owner_member_id
        if owner is not None and await uow.members.get(mailbox.account_id, owner) is None:
            raise InvalidInput(
                "owner_member_id", "no member with this id in the account", "invalid-reference"
            )

    async def _check_team(self, uow: UnitOfWork, mailbox: Mailbox, current: Mailbox | None) -> None:
        """The queue, the call center and the connector named must be the account's."""
        account_id = mailbox.account_id
        queue_id = mailbox.queue_id
        changed = current is None or queue_id != current.queue_id
        if queue_id is not None and changed and await uow.queues.get(account_id, queue_id) is None:
            raise InvalidInput("queue_id", "no queue with this id in the account", "invalid-reference")
        center_id = mailbox.call_center_id
        changed = current is None or center_id != current.call_center_id
        if center_id is not None and changed and await uow.call_centers.get(account_id, center_id) is None:
            raise InvalidInput(
                "call_center_id", "no call center with this id in the account", "invalid-reference"
            )
        connector_id = mailbox.connector_id
        changed = current is None or connector_id != current.connector_id
        if (
            connector_id is not None
            and changed
            and await uow.cc_connectors.get(account_id, connector_id) is None
        ):
            raise InvalidInput(
                "connector_id", "no connector with this id in the account", "invalid-reference"
            )
