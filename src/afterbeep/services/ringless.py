"""RinglessService: telephony setups, use cases, suppressions, consents, and accepting sends.

Accepting a send checks everything that can be checked without the media first (recipient,
use case, sender; on read-only units of work), then checks the MP3 (MP3 only, 10 to 60 s, at
most 8 MB: its frame headers scanned and its first second decoded, see `services.media`) and
stores the original (the telephony rendition is made by the delivery engine on first use), then adds the media row, the send `accepted` and its `voicemail.status`
event in one transaction. If that transaction fails, the objects are removed again, so a
refused send leaves nothing. A send of a stored `media_id` is one transaction.
Delivery itself (claiming due sends, rules, attempts) is the delivery engine's.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

from afterbeep.domain.clock import Clock
from afterbeep.domain.drops import DROP_STATUS_EVENT, drop_status_payload
from afterbeep.domain.errors import Conflict, InvalidAudio, InvalidInput, NotFound
from afterbeep.domain.ids import is_id, new_id
from afterbeep.domain.media import ImportRules, Media
from afterbeep.domain.metadata import check_metadata
from afterbeep.domain.netpolicy import sip_uri_hosts
from afterbeep.domain.phone import mask, to_e164
from afterbeep.domain.ringless import (
    AUDIO_FORMATS,
    DEFAULT_FIRST_CALL_BOUND_MS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RETRY_BACKOFF_SECONDS,
    DEFAULT_SECOND_CALL_DELAY_MS,
    MAX_AUDIO_BYTES,
    MAX_AUDIO_MS,
    MIN_AUDIO_MS,
    SEND_ID_PREFIX,
    VOICEMAIL_STATUS_EVENT,
    CallingWindow,
    Channel,
    Consent,
    DropTechnique,
    RecipientCap,
    SendAttempt,
    SenderSelection,
    SendKind,
    SendStats,
    SetupNumber,
    Suppression,
    TelephonySetup,
    Transport,
    UseCase,
    VoicemailSend,
    check_deposit_headers,
    check_deposit_uri,
    check_host,
    check_sip_uri,
    check_text,
    check_use_case,
    follow_ups,
    password_ref,
    pick_sender,
    status_payload,
)
from afterbeep.services.media import MediaService, StagedUpload
from afterbeep.services.netguard import HostGuard
from afterbeep.services.ports import Page, UnitOfWork, UnitOfWorkFactory
from afterbeep.services.ports.ringless import SendFilter

log = logging.getLogger("afterbeep.ringless")

MAX_PAGE_LIMIT = 200
SCAN_MAX_SENDS = 5000  # the follow-up list and the drops' answers look at this many sends at most
SEND_RULES = ImportRules(
    allowed_formats=AUDIO_FORMATS, max_bytes=MAX_AUDIO_BYTES, min_ms=MIN_AUDIO_MS, max_ms=MAX_AUDIO_MS
)


@dataclass(frozen=True, slots=True)
class SetupSpec:
    name: str
    trunk_host: str
    trunk_port: int = 5060
    transport: Transport = Transport.UDP
    username: str | None = None
    password: str | None = None
    outbound_proxy: str | None = None
    from_domain: str | None = None
    max_calls_per_second: float = 1.0
    max_concurrent_calls: int = 10
    numbers: Sequence[str] = ()  # caller ids; the operator verifies them
    deposit_uri: str = "sip:{to}@localhost"
    deposit_headers: Mapping[str, str] = field(default_factory=dict)


SETUP_FIELDS = frozenset(SetupSpec.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class UseCaseSpec:
    name: str
    setup_id: str
    channel: Channel = Channel.RINGLESS_VOICEMAIL
    description: str | None = None
    sender_selection: SenderSelection = SenderSelection.ROUND_ROBIN
    sender_number: str | None = None
    require_consent: bool = True
    calling_window: CallingWindow = field(default_factory=CallingWindow)
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    retry_backoff_seconds: int = DEFAULT_RETRY_BACKOFF_SECONDS
    recipient_cap: RecipientCap = field(default_factory=RecipientCap)
    fallback_use_case_id: str | None = None  # ringless only: a voicemail_drop use case
    second_call_delay_ms: int = DEFAULT_SECOND_CALL_DELAY_MS  # drops only
    first_call_bound_ms: int = DEFAULT_FIRST_CALL_BOUND_MS  # drops only


USE_CASE_FIELDS = frozenset(UseCaseSpec.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class SendDetail:
    send: VoicemailSend
    attempts: list[SendAttempt]


class RinglessService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        media: MediaService,
        default_region: str,
        on_accepted: Callable[[], None] | None = None,
        *,
        lookups: UnitOfWorkFactory | None = None,
        sends: UnitOfWorkFactory | None = None,
        guard: HostGuard | None = None,
    ) -> None:
        """`lookups`: read-only units of work for the look-ups before a send's insert (on
        SQLite they do not queue behind writers); `sends`: units of work for a send's insert
        (its media row, the send and its event; they hold no other awaits). Both are
        `uow` when not given. `guard`: refuses hosts the network policy does not allow."""
        self._guard = guard
        self._uow = uow
        self._lookups = lookups or uow
        self._sends = sends or uow
        self._clock = clock
        self._media = media
        self._region = default_region
        self.on_accepted = on_accepted

    # -- telephony setups ---------------------------------------------------------

    async def create_setup(self, account_id: str, spec: SetupSpec) -> TelephonySetup:
        now = self._clock.now()
        setup_id = new_id("setup")
        setup = self._setup_from(account_id, setup_id, spec, now, now)
        await self._check_hosts(setup, SETUP_FIELDS)
        async with self._uow() as uow:
            setup = await _with_verified(uow, setup)
            await uow.telephony_setups.add(setup)
            if spec.password:
                await uow.secrets.put(account_id, password_ref(setup_id), spec.password)
        return setup

    async def get_setup(self, account_id: str, setup_id: str) -> TelephonySetup:
        async with self._uow() as uow:
            return await _setup_of(uow, account_id, setup_id)

    async def list_setups(
        self, account_id: str, cursor: str | None = None, limit: int = 50
    ) -> Page[TelephonySetup]:
        _check_limit(limit)
        async with self._uow() as uow:
            return await uow.telephony_setups.list(account_id, cursor, limit)

    async def update_setup(
        self, account_id: str, setup_id: str, changes: Mapping[str, Any]
    ) -> TelephonySetup:
        unknown = set(changes) - SETUP_FIELDS
        if unknown:
            raise InvalidInput(sorted(unknown)[0], "unknown field")
        async with self._uow() as uow:
            current = await _setup_of(uow, account_id, setup_id)
            spec = SetupSpec(
                name=current.name,
                trunk_host=current.trunk_host,
                trunk_port=current.trunk_port,
                transport=current.transport,
                username=current.username,
                outbound_proxy=current.outbound_proxy,
                from_domain=current.from_domain,
                max_calls_per_second=current.max_calls_per_second,
                max_concurrent_calls=current.max_concurrent_calls,
                numbers=[n.e164 for n in current.numbers],
                deposit_uri=current.deposit_uri,
                deposit_headers=current.deposit_headers,
            )
            spec = replace(spec, **{k: v for k, v in changes.items() if k != "password"})
            setup = self._setup_from(
                account_id, setup_id, spec, current.created_at, self._clock.now()
            )
            await self._check_hosts(setup, frozenset(changes))
            if "password" in changes:
                ref = password_ref(setup_id)
                password = changes["password"]
                check_text("password", password)
                if password:
                    await uow.secrets.put(account_id, ref, str(password))
                else:
                    await uow.secrets.delete(account_id, ref)
                    setup = replace(setup, password_ref=None)
            elif current.password_ref is not None:
                setup = replace(setup, password_ref=current.password_ref)
            setup = await _with_verified(uow, setup)
            await uow.telephony_setups.update(setup)
        return setup

    async def delete_setup(self, account_id: str, setup_id: str) -> None:
        async with self._uow() as uow:
            await _setup_of(uow, account_id, setup_id)
            if await uow.telephony_setups.in_use(account_id, setup_id):
                raise Conflict(
                    "the setup is used by a use case or a send", error_id="setup-in-use"
                )
            await uow.telephony_setups.delete(account_id, setup_id)
            await uow.secrets.delete(account_id, password_ref(setup_id))

    def _setup_from(
        self, account_id: str, setup_id: str, spec: SetupSpec, created: datetime, updated: datetime
    ) -> TelephonySetup:
        name = spec.name.strip()
        if not name or len(name) > 200:
            raise InvalidInput("name", "must be 1 to 200 characters")
        if not spec.trunk_host.strip():
            raise InvalidInput("trunk_host", "is required")
        check_text("name", name)
        check_host("trunk_host", spec.trunk_host.strip())
        check_host("from_domain", spec.from_domain)
        check_text("username", spec.username)
        if spec.username is not None and ('"' in spec.username or "\\" in spec.username):
            raise InvalidInput("username", "must not contain quotes or backslashes")
        check_text("password", spec.password)
        if spec.outbound_proxy is not None:
            check_sip_uri("outbound_proxy", spec.outbound_proxy)
        if not 1 <= spec.trunk_port <= 65535:
            raise InvalidInput("trunk_port", "must be 1 to 65535")
        if not 0 < spec.max_calls_per_second <= 1000:
            raise InvalidInput("max_calls_per_second", "must be above 0 and at most 1000")
        if not 1 <= spec.max_concurrent_calls <= 10_000:
            raise InvalidInput("max_concurrent_calls", "must be 1 to 10000")
        check_deposit_uri(spec.deposit_uri)
        check_deposit_headers(spec.deposit_headers)
        numbers: list[SetupNumber] = []
        for i, number in enumerate(spec.numbers):
            e164 = to_e164(number, self._region, f"numbers[{i}].e164")
            if any(n.e164 == e164 for n in numbers):
                raise InvalidInput(f"numbers[{i}].e164", "is listed twice")
            numbers.append(SetupNumber(e164, verified=False))
        return TelephonySetup(
            id=setup_id,
            account_id=account_id,
            name=name,
            trunk_host=spec.trunk_host.strip(),
            trunk_port=spec.trunk_port,
            transport=spec.transport,
            username=spec.username,
            password_ref=password_ref(setup_id) if spec.password else None,
            outbound_proxy=spec.outbound_proxy,
            from_domain=spec.from_domain,
            max_calls_per_second=spec.max_calls_per_second,
            max_concurrent_calls=spec.max_concurrent_calls,
            numbers=tuple(numbers),
            deposit_uri=spec.deposit_uri,
            deposit_headers=dict(spec.deposit_headers),
            created_at=created,
            updated_at=updated,
        )

    async def _check_hosts(self, setup: TelephonySetup, fields: frozenset[str]) -> None:
        """The hosts among `fields` that the service would connect to, against the policy."""
        if self._guard is None:
            return
        hosts: list[tuple[str, str]] = []
        if "trunk_host" in fields:
            hosts.append(("trunk_host", setup.trunk_host))
        if "outbound_proxy" in fields and setup.outbound_proxy:
            hosts += [("outbound_proxy", h) for h in sip_uri_hosts(setup.outbound_proxy)]
        if "deposit_uri" in fields and setup.deposit_uri:
            target = setup.deposit_target("+15550000000")
            hosts += [("deposit_uri", h) for h in sip_uri_hosts(target)]
        for field_name, host in hosts:
            await self._guard.check(field_name, host)

    # -- use cases ----------------------------------------------------------------

    async def create_use_case(self, account_id: str, spec: UseCaseSpec) -> UseCase:
        now = self._clock.now()
        async with self._uow() as uow:
            use_case = await self._use_case_from(uow, account_id, new_id("uc"), spec, now, now)
            await uow.use_cases.add(use_case)
        return use_case

    async def get_use_case(self, account_id: str, use_case_id: str) -> UseCase:
        async with self._uow() as uow:
            return await _use_case_of(uow, account_id, use_case_id)

    async def list_use_cases(
        self,
        account_id: str,
        channel: Channel | None = None,
        setup_id: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page[UseCase]:
        _check_limit(limit)
        async with self._uow() as uow:
            return await uow.use_cases.list(account_id, channel, setup_id, cursor, limit)

    async def update_use_case(
        self, account_id: str, use_case_id: str, changes: Mapping[str, Any]
    ) -> UseCase:
        unknown = set(changes) - USE_CASE_FIELDS
        if unknown:
            raise InvalidInput(sorted(unknown)[0], "unknown field")
        async with self._uow() as uow:
            current = await _use_case_of(uow, account_id, use_case_id)
            spec = UseCaseSpec(
                name=current.name,
                setup_id=current.setup_id,
                channel=current.channel,
                description=current.description,
                sender_selection=current.sender_selection,
                sender_number=current.sender_number,
                require_consent=current.require_consent,
                calling_window=current.calling_window,
                max_attempts=current.max_attempts,
                retry_backoff_seconds=current.retry_backoff_seconds,
                recipient_cap=current.recipient_cap,
                fallback_use_case_id=current.fallback_use_case_id,
                second_call_delay_ms=current.second_call_delay_ms,
                first_call_bound_ms=current.first_call_bound_ms,
            )
            spec = replace(spec, **changes)
            if spec.channel != current.channel and (
                await uow.use_cases.has_sends(account_id, use_case_id)
                or await uow.use_cases.is_fallback(account_id, use_case_id)
            ):
                raise Conflict(
                    "the channel of a use case with sends, or named as a fallback, cannot change",
                    error_id="use-case-in-use",
                )
            use_case = await self._use_case_from(
                uow, account_id, use_case_id, spec, current.created_at, self._clock.now()
            )
            await uow.use_cases.update(use_case)
        return use_case

    async def delete_use_case(self, account_id: str, use_case_id: str) -> None:
        async with self._uow() as uow:
            await _use_case_of(uow, account_id, use_case_id)
            if await uow.use_cases.has_sends(account_id, use_case_id):
                raise Conflict("the use case has sends", error_id="use-case-in-use")
            if await uow.use_cases.is_fallback(account_id, use_case_id):
                raise Conflict(
                    "the use case is the fallback of another use case", error_id="use-case-in-use"
                )
            await uow.use_cases.delete(account_id, use_case_id)

    async def _use_case_from(
        self,
        uow: UnitOfWork,
        account_id: str,
        use_case_id: str,
        spec: UseCaseSpec,
        created: datetime,
        updated: datetime,
    ) -> UseCase:
        name = spec.name.strip()
        if not name or len(name) > 200:
            raise InvalidInput("name", "must be 1 to 200 characters")
        if not is_id(spec.setup_id, "setup"):
            raise _unknown_setup()
        setup = await uow.telephony_setups.get(account_id, spec.setup_id)
        if setup is None:
            raise _unknown_setup()
        sender = spec.sender_number
        if sender is not None:
            sender = to_e164(sender, self._region, "sender_number")
        use_case = UseCase(
            id=use_case_id,
            account_id=account_id,
            channel=spec.channel,
            name=name,
            description=spec.description,
            setup_id=spec.setup_id,
            sender_selection=spec.sender_selection,
            sender_number=sender,
            require_consent=spec.require_consent,
            calling_window=spec.calling_window,
            max_attempts=spec.max_attempts,
            retry_backoff_seconds=spec.retry_backoff_seconds,
            recipient_cap=spec.recipient_cap,
            created_at=created,
            updated_at=updated,
            fallback_use_case_id=spec.fallback_use_case_id,
            second_call_delay_ms=spec.second_call_delay_ms,
            first_call_bound_ms=spec.first_call_bound_ms,
        )
        check_use_case(use_case, setup)
        if use_case.fallback_use_case_id is not None:
            fallback_id = use_case.fallback_use_case_id
            fallback = (
                await uow.use_cases.get(account_id, fallback_id) if is_id(fallback_id, "uc") else None
            )
            if fallback is None or fallback.channel is not Channel.VOICEMAIL_DROP:
                raise InvalidInput(
                    "fallback_use_case_id",
                    "must be a voicemail_drop use case of your account",
                    error_id="unknown-reference",
                )
        return use_case

    # -- sends --------------------------------------------------------------------

    async def create_send(
        self,
        account_id: str,
        to: str,
        use_case_id: str,
        *,
        media_id: str | None = None,
        upload: StagedUpload | None = None,
        audio_path: Path | None = None,
        audio_name: str = "voicemail.mp3",
        foreign_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        send_at: datetime | None = None,
        kind: SendKind = SendKind.RINGLESS,
        technique: DropTechnique | None = None,
    ) -> VoicemailSend:
        """Accept a send. The audio is exactly one of `media_id` (a stored MP3 of the account),
        `upload` (a finished upload the caller still owns) or `audio_path` (a local file).
        A drop (`kind=drop`) needs a voicemail_drop use case; its technique defaults to
        two_call. A ringless send needs a ringless_voicemail use case and has no technique."""
        if sum(x is not None for x in (media_id, upload, audio_path)) != 1:
            raise InvalidInput("audio", "send exactly one of an audio file or a media_id")
        if kind is SendKind.DROP:
            technique = technique or DropTechnique.TWO_CALL
        elif technique is not None:
            raise InvalidInput("technique", "is for drops only")
        to_e = to_e164(to, self._region, "to")
        _check_foreign_id(foreign_id)
        check_metadata(metadata)
        if send_at is not None and send_at.tzinfo is None:
            raise InvalidInput("send_at", "needs a time zone offset")
        if media_id is not None:
            async with self._sends() as uow:
                use_case, setup = await self._sending_context(uow, account_id, use_case_id, kind)
                media = await stored_send_media(uow, account_id, media_id)
                send = await self._add_send(
                    uow, account_id, use_case, setup, media, to_e, foreign_id, metadata,
                    send_at, kind, technique,
                )  # fmt: skip
        else:
            async with self._lookups() as uow:
                use_case, setup = await self._sending_context(uow, account_id, use_case_id, kind)
            # Checked before the audio is looked at; the round-robin pick is made with the insert.
            pick_sender(use_case, setup.numbers, to_e, 0)
            if upload is not None:
                media = await self._media.prepare_upload(
                    account_id, upload, audio_name, SEND_RULES, defer_rendition=True
                )
            else:
                assert audio_path is not None
                media = await self._media.prepare_file(
                    account_id, audio_path, audio_name, SEND_RULES, defer_rendition=True
                )
            try:
                async with self._sends() as uow:
                    stored = await uow.media.add(media)
                    send = await self._add_send(
                        uow, account_id, use_case, setup, stored, to_e, foreign_id, metadata,
                        send_at, kind, technique,
                    )  # fmt: skip
            except BaseException:
                await self._media.discard_prepared(media)
                raise
            if stored.id != media.id:  # the same audio was stored meanwhile: that copy is used
                await self._media.discard_prepared(media)
        log.info("%s %s accepted for %s", kind.value, send.id, mask(to_e))
        if self.on_accepted is not None:
            self.on_accepted()
        return send

    async def _add_send(
        self,
        uow: UnitOfWork,
        account_id: str,
        use_case: UseCase,
        setup: TelephonySetup,
        media: Media,
        to_e: str,
        foreign_id: str | None,
        metadata: Mapping[str, Any] | None,
        send_at: datetime | None,
        kind: SendKind,
        technique: DropTechnique | None,
    ) -> VoicemailSend:
        """Insert the send `accepted` and its status event, in the caller's transaction."""
        turn = 0
        if use_case.sender_selection is not SenderSelection.FIXED:
            turn = await uow.use_cases.advance_rr(account_id, use_case.id)
        now = self._clock.now()
        send = VoicemailSend.accepted(
            account_id=account_id,
            use_case_id=use_case.id,
            setup_id=setup.id,
            media_id=media.id,
            from_e164=pick_sender(use_case, setup.numbers, to_e, turn),
            to_e164=to_e,
            now=now,
            send_at=send_at,
            foreign_id=foreign_id,
            metadata=metadata,
            kind=kind,
            technique=technique,
        )
        await uow.voicemail_sends.add(send)
        await uow.events.publish(account_id, *_status_event(send))
        return send

    async def _sending_context(
        self, uow: UnitOfWork, account_id: str, use_case_id: str, kind: SendKind
    ) -> tuple[UseCase, TelephonySetup]:
        if not is_id(use_case_id, "uc"):
            raise _unknown_use_case()
        use_case = await uow.use_cases.get(account_id, use_case_id)
        if use_case is None:
            raise _unknown_use_case()
        channel = _CHANNEL[kind]
        if use_case.channel is not channel:
            raise InvalidInput(
                "use_case_id", f"is not a {channel.value} use case", error_id="wrong-channel"
            )
        setup = await uow.telephony_setups.get(account_id, use_case.setup_id)
        if setup is None:
            raise _unknown_use_case()
        return use_case, setup

    async def get_send(
        self, account_id: str, send_id: str, kind: SendKind = SendKind.RINGLESS
    ) -> SendDetail:
        if not is_id(send_id, SEND_ID_PREFIX[kind]):
            raise NotFound(_NOUN[kind], send_id[:40])
        async with self._uow() as uow:
            send = await uow.voicemail_sends.get(account_id, send_id)
            if send is None or send.kind is not kind:
                raise NotFound(_NOUN[kind], send_id)
            attempts = await uow.voicemail_sends.attempts(account_id, send_id)
        return SendDetail(send, attempts)

    async def list_sends(
        self,
        account_id: str,
        where: SendFilter,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page[VoicemailSend]:
        _check_limit(limit)
        where = self._normalise_filter(where)
        async with self._uow() as uow:
            return await uow.voicemail_sends.list(account_id, where, cursor, limit)

    async def stats(self, account_id: str, where: SendFilter) -> SendStats:
        where = self._normalise_filter(where)
        async with self._uow() as uow:
            return await uow.voicemail_sends.stats(account_id, where)

    async def scan_sends(
        self, account_id: str, where: SendFilter, max_sends: int = SCAN_MAX_SENDS
    ) -> tuple[list[VoicemailSend], bool]:
        """The sends matching `where`, newest first, `max_sends` at most; True if cut there."""
        found: list[VoicemailSend] = []
        cursor: str | None = None
        while len(found) < max_sends:
            page = await self.list_sends(
                account_id, where, cursor, min(MAX_PAGE_LIMIT, max_sends - len(found))
            )
            found += page.items
            cursor = page.next_cursor
            if cursor is None:
                return found, False
        return found, True

    async def follow_ups(
        self, account_id: str, where: SendFilter, max_sends: int = SCAN_MAX_SENDS
    ) -> tuple[list[VoicemailSend], bool]:
        """Recipients to reach another way (`domain.ringless.follow_ups`) among the sends
        matching `where` (its status ignored); True if more sends than `max_sends` matched."""
        sends, cut = await self.scan_sends(account_id, replace(where, status=None), max_sends)
        return follow_ups(sends), cut

    async def cancel_send(
        self, account_id: str, send_id: str, kind: SendKind = SendKind.RINGLESS
    ) -> VoicemailSend:
        noun = _NOUN[kind]
        if not is_id(send_id, SEND_ID_PREFIX[kind]):
            raise NotFound(noun, send_id[:40])
        async with self._uow() as uow:
            found = await uow.voicemail_sends.get(account_id, send_id)
            if found is None or found.kind is not kind:
                raise NotFound(noun, send_id)
            cancelled = await uow.voicemail_sends.cancel(account_id, send_id, self._clock.now())
            if cancelled is None:
                raise Conflict(
                    f"the {noun} was already attempted or has ended",
                    error_id=f"{noun}-not-cancellable",
                )
            await uow.events.publish(account_id, *_status_event(cancelled))
        return cancelled

    def _normalise_filter(self, where: SendFilter) -> SendFilter:
        if where.to_e164 is not None:
            where = replace(where, to_e164=to_e164(where.to_e164, self._region, "to"))
        return where

    # -- suppressions and consents --------------------------------------------------

    async def add_suppression(
        self, account_id: str, e164: str, reason: str | None = None
    ) -> Suppression:
        suppression = Suppression(
            id=new_id("sup"),
            account_id=account_id,
            e164=to_e164(e164, self._region),
            reason=reason,
            created_at=self._clock.now(),
        )
        async with self._uow() as uow:
            if not await uow.suppressions.add(suppression):
                raise Conflict("the number is already suppressed", error_id="already-suppressed")
        return suppression

    async def list_suppressions(
        self, account_id: str, cursor: str | None = None, limit: int = 50
    ) -> Page[Suppression]:
        _check_limit(limit)
        async with self._uow() as uow:
            return await uow.suppressions.list(account_id, cursor, limit)

    async def delete_suppression(self, account_id: str, suppression_id: str) -> None:
        if not is_id(suppression_id, "sup"):
            raise NotFound("suppression", suppression_id[:40])
        async with self._uow() as uow:
            if not await uow.suppressions.delete(account_id, suppression_id):
                raise NotFound("suppression", suppression_id)

    async def add_consent(
        self, account_id: str, e164: str, source: str, captured_at: datetime
    ) -> Consent:
        source = source.strip()
        if not source or len(source) > 500:
            raise InvalidInput("source", "must be 1 to 500 characters")
        if captured_at.tzinfo is None:
            raise InvalidInput("captured_at", "needs a time zone offset")
        now = self._clock.now()
        if captured_at > now:
            raise InvalidInput("captured_at", "is in the future")
        consent = Consent(
            id=new_id("cons"),
            account_id=account_id,
            e164=to_e164(e164, self._region),
            source=source,
            captured_at=captured_at.astimezone(UTC),
            revoked_at=None,
            created_at=now,
        )
        async with self._uow() as uow:
            await uow.consents.add(consent)
        return consent

    async def list_consents(
        self, account_id: str, e164: str | None = None, cursor: str | None = None, limit: int = 50
    ) -> Page[Consent]:
        _check_limit(limit)
        number = to_e164(e164, self._region) if e164 is not None else None
        async with self._uow() as uow:
            return await uow.consents.list(account_id, number, cursor, limit)

    async def revoke_consent(self, account_id: str, consent_id: str) -> Consent:
        if not is_id(consent_id, "cons"):
            raise NotFound("consent", consent_id[:40])
        async with self._uow() as uow:
            if not await uow.consents.revoke(account_id, consent_id, self._clock.now()):
                if await uow.consents.get(account_id, consent_id) is None:
                    raise NotFound("consent", consent_id)
                raise Conflict("the consent is already revoked", error_id="consent-revoked")
            found = await uow.consents.get(account_id, consent_id)
        assert found is not None
        return found



async def stored_send_media(uow: UnitOfWork, account_id: str, media_id: str) -> Media:
    """A stored media of the account that meets the send audio rules (MP3, 10 to 60 s, 8 MB)."""
    media = await uow.media.get(account_id, media_id) if is_id(media_id, "media") else None
    if media is None:
        raise InvalidInput(
            "media_id", "no media with this id in your account", error_id="unknown-reference"
        )
    if media.format.upper() not in AUDIO_FORMATS:
        raise InvalidAudio(
            f"{media.format} audio is not accepted here, only MP3", "audio-format-not-allowed"
        )
    if media.duration_ms < MIN_AUDIO_MS:
        raise InvalidAudio("the audio is shorter than 10 s", "audio-too-short")
    if media.duration_ms > MAX_AUDIO_MS:
        raise InvalidAudio("the audio is longer than 60 s", "audio-too-long")
    if media.size_bytes > MAX_AUDIO_BYTES:
        raise InvalidAudio("the audio is larger than 8 MB", "audio-too-large")
    return media


def parse_hhmm(value: str, field_name: str) -> time:
    if not re.fullmatch(r"\d\d:\d\d", value):
        raise InvalidInput(field_name, "must be HH:MM")
    try:
        return time.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(field_name, "must be HH:MM") from exc


async def _setup_of(uow: UnitOfWork, account_id: str, setup_id: str) -> TelephonySetup:
    setup = (
        await uow.telephony_setups.get(account_id, setup_id) if is_id(setup_id, "setup") else None
    )
    if setup is None:
        raise NotFound("telephony setup", setup_id[:40])
    return setup


async def _with_verified(uow: UnitOfWork, setup: TelephonySetup) -> TelephonySetup:
    """The setup's numbers marked as the operator verified them for its account."""
    verified = await uow.verified_senders.verified_among(
        setup.account_id, (n.e164 for n in setup.numbers)
    )
    numbers = tuple(SetupNumber(n.e164, n.e164 in verified) for n in setup.numbers)
    return replace(setup, numbers=numbers)


async def _use_case_of(uow: UnitOfWork, account_id: str, use_case_id: str) -> UseCase:
    found = await uow.use_cases.get(account_id, use_case_id) if is_id(use_case_id, "uc") else None
    if found is None:
        raise NotFound("use case", use_case_id[:40])
    return found


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE_LIMIT:
        raise InvalidInput("limit", f"must be 1 to {MAX_PAGE_LIMIT}")


def _check_foreign_id(foreign_id: str | None) -> None:
    if foreign_id is not None and not 1 <= len(foreign_id) <= 200:
        raise InvalidInput("foreign_id", "must be 1 to 200 characters")


_NOUN = {SendKind.RINGLESS: "voicemail", SendKind.DROP: "drop"}
_CHANNEL = {SendKind.RINGLESS: Channel.RINGLESS_VOICEMAIL, SendKind.DROP: Channel.VOICEMAIL_DROP}


def _status_event(send: VoicemailSend) -> tuple[str, dict[str, Any]]:
    """The status event of a send: `voicemail.status` or, for a drop, `drop.status`."""
    if send.kind is SendKind.DROP:
        return DROP_STATUS_EVENT, drop_status_payload(send)
    return VOICEMAIL_STATUS_EVENT, status_payload(send)


def _unknown_setup() -> InvalidInput:
    return InvalidInput(
        "setup_id", "no telephony setup with this id in your account", error_id="unknown-reference"
    )


def _unknown_use_case() -> InvalidInput:
    return InvalidInput(
        "use_case_id", "no use case with this id in your account", error_id="unknown-reference"
    )
