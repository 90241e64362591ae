"""FlowService: an account's call flows, saved as numbered versions of their graph.

Saving checks the graph with `afterbeep.domain.flows` and then every id its nodes refer to:
media, mailboxes, schedules, queues, ring groups and users must exist in the same account. Every error is raised at once
(`InvalidFlow`), and nothing is stored then. A save makes a new version and leaves the older
ones readable, so a call keeps the version it started with.

The texts a flow speaks (a say node's `text`, a menu's or collect's `promptText`) are made into
audio when it is saved, after the graph is found valid: each in its node's `language` (else the
account's) by the `SpeechSynthesizer`, stored as media of the account (counted against its
quota, with the telephony rendition like any media) and recorded in the version's `speech` map
(`{"<node id>/<field>": "<media id>"}`). The same text, language and voice make the same bytes,
and the media library keeps one copy of the same bytes: saving again reuses the media. A text
that cannot be spoken, or an unknown language or voice, is an `InvalidFlow` error naming its
node, found before anything is stored; an engine that cannot run at all is `Unavailable`.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import re
from typing import Any

from afterbeep.domain.clock import Clock
from afterbeep.domain.errors import (
    Conflict,
    DomainError,
    InvalidAudio,
    InvalidFlow,
    NotFound,
    PayloadTooLarge,
    QuotaExceeded,
    Unavailable,
)
from afterbeep.domain.flows import (
    FlowError,
    FlowGraph,
    RefKind,
    SpeechSite,
    check_flow,
    reference_sites,
    speech_sites,
)
from afterbeep.domain.ids import is_id, new_id
from afterbeep.domain.media import MAX_NAME_LENGTH, ImportRules
from afterbeep.domain.numbers import DestKind
from afterbeep.services.media import MediaService
from afterbeep.services.numbers import name_users
from afterbeep.services.ports import Page, UnitOfWork, UnitOfWorkFactory
from afterbeep.services.ports.flows import Flow, FlowVersion
from afterbeep.services.ports.speech import (
    SpeechError,
    SpeechSynthesizer,
    SpeechUnavailable,
    UnknownVoice,
)

log = logging.getLogger("afterbeep.flows")

# The references whose existence in the account is checked when a flow is saved.
CHECKED_IN_ACCOUNT = (
    RefKind.MEDIA,
    RefKind.MAILBOX,
    RefKind.SCHEDULE,
    RefKind.QUEUE,
    RefKind.RING_GROUP,
    RefKind.USER,
)
_PREFIX = {
    RefKind.MEDIA: "media",
    RefKind.MAILBOX: "vm",
    RefKind.SCHEDULE: "sch",
    RefKind.QUEUE: "q",
    RefKind.RING_GROUP: "rg",
    RefKind.USER: "usr",
}
# Texts spoken at once while a flow is saved (each is one engine process).
SPEECH_CONCURRENCY = 4
_SPEECH_RULES = ImportRules(allowed_formats=frozenset({"WAV"}))


class FlowService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        media: MediaService,
        speech: SpeechSynthesizer,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._media = media
        self._speech = speech

    async def create(
        self, account_id: str, name: str, nodes: list[Any], edges: list[Any]
    ) -> FlowVersion:
        graph = {"nodes": nodes, "edges": edges}
        async with self._uow() as uow:
            checked = await _check(uow, account_id, nodes, edges)
            language = await _account_language(uow, account_id)
        speech, made = await self._speak(account_id, checked, language)
        now = self._clock.now()
        flow = Flow(new_id("flow"), account_id, name, 1, now, now)
        saved = FlowVersion(flow, 1, graph, now, speech)
        try:
            async with self._uow() as uow:
                await _check(uow, account_id, nodes, edges)
                await _check_speech_kept(uow, account_id, speech)
                await uow.flows.add(saved)
        except BaseException:
            await self._forget(account_id, made)
            raise
        return saved

    async def get(self, account_id: str, flow_id: str) -> FlowVersion:
        _check_id(flow_id)
        async with self._uow() as uow:
            flow = await uow.flows.get(account_id, flow_id)
            found = (
                None
                if flow is None
                else await uow.flows.get_version(account_id, flow_id, flow.version)
            )
        if found is None:
            raise NotFound("flow", flow_id)
        return found

    async def version(self, account_id: str, flow_id: str, version: int) -> FlowVersion:
        _check_id(flow_id)
        async with self._uow() as uow:
            flow = await uow.flows.get(account_id, flow_id)
            if flow is None:
                raise NotFound("flow", flow_id)
            found = await uow.flows.get_version(account_id, flow_id, version)
        if found is None:
            raise NotFound("flow version", f"{flow_id}/versions/{version}")
        return found

    async def list(self, account_id: str, cursor: str | None = None, limit: int = 50) -> Page[Flow]:
        async with self._uow() as uow:
            return await uow.flows.list(account_id, cursor, limit)

    async def replace(
        self,
        account_id: str,
        flow_id: str,
        name: str,
        nodes: builtins.list[Any],
        edges: builtins.list[Any],
    ) -> FlowVersion:
        """Save the graph as the flow's next version; the older versions stay readable."""
        _check_id(flow_id)
        graph = {"nodes": nodes, "edges": edges}
        async with self._uow() as uow:
            if await uow.flows.get(account_id, flow_id) is None:
                raise NotFound("flow", flow_id)
            checked = await _check(uow, account_id, nodes, edges)
            language = await _account_language(uow, account_id)
        speech, made = await self._speak(account_id, checked, language)
        try:
            async with self._uow() as uow:
                await _check(uow, account_id, nodes, edges)
                await _check_speech_kept(uow, account_id, speech)
                version = await uow.flows.add_version(
                    account_id, flow_id, name, graph, self._clock.now(), speech
                )
                saved = (
                    None
                    if version is None
                    else await uow.flows.get_version(account_id, flow_id, version)
                )
            if saved is None:
                raise NotFound("flow", flow_id)
        except BaseException:
            await self._forget(account_id, made)
            raise
        return saved

    async def delete(self, account_id: str, flow_id: str) -> None:
        """Remove the flow and its versions; refused (`Conflict`) while a number routes calls
        to it (as its destination, closed-hours or holiday destination), naming them."""
        _check_id(flow_id)
        async with self._uow() as uow:
            users = await self.in_use(uow, account_id, flow_id)
            if users:
                raise Conflict(
                    f"flow {flow_id!r} is used by {name_users('numbers', users)}", "flow-in-use"
                )
            forwarding = await uow.users.forwarding_to(account_id, "flow", flow_id)
            if forwarding:
                raise Conflict(
                    f"flow {flow_id!r} is used by {name_users('users', forwarding)}",
                    "flow-in-use",
                )
            if not await uow.flows.delete(account_id, flow_id):
                raise NotFound("flow", flow_id)

    # -- speech -----------------------------------------------------------------

    async def _speak(
        self, account_id: str, graph: FlowGraph, account_language: str
    ) -> tuple[dict[str, str], builtins.list[str]]:
        """The speech map of a valid graph, and the ids of the media this made (new to the
        account). Every text is spoken before any is stored, so a text that cannot be spoken
        leaves nothing behind."""
        sites = speech_sites(graph)
        if not sites:
            return {}, []
        voices = await self._voices(sites, account_language)
        wanted: dict[tuple[str, str], SpeechSite] = {}
        for site in sites:
            wanted.setdefault((voices[site.key], site.text), site)
        gate = asyncio.Semaphore(SPEECH_CONCURRENCY)

        async def speak(voice: str, text: str) -> bytes | SpeechError:
            async with gate:
                try:
                    return await self._speech.synthesize(text, voice)
                except SpeechError as exc:
                    return exc

        async with asyncio.TaskGroup() as group:
            tasks = {key: group.create_task(speak(*key)) for key in wanted}
        spoken: dict[tuple[str, str], bytes] = {}
        errors: list[FlowError] = []
        for key, task in tasks.items():
            result = task.result()
            site = wanted[key]
            if isinstance(result, SpeechUnavailable):
                raise Unavailable(
                    f"node {site.node_id!r}: speech cannot be made here: {result}",
                    "speech-unavailable",
                ) from result
            if isinstance(result, SpeechError):
                errors.append(
                    FlowError(
                        site.node_id, None, f"data.{site.field}", f"cannot be spoken: {result}"
                    )
                )
            else:
                spoken[key] = result
        if errors:
            raise InvalidFlow([error.as_dict() for error in errors])

        media_of: dict[tuple[str, str], str] = {}
        made: list[str] = []
        try:
            for key, wav in spoken.items():
                site = wanted[key]
                try:
                    media, new = await self._media.import_bytes(
                        account_id, wav, _media_name(key[0], site.text), _SPEECH_RULES
                    )
                except QuotaExceeded as exc:
                    raise QuotaExceeded(f"the speech of node {site.node_id!r}: {exc}") from exc
                except (InvalidAudio, PayloadTooLarge) as exc:
                    problem = FlowError(
                        site.node_id, None, f"data.{site.field}", f"its speech: {exc.message}"
                    )
                    raise InvalidFlow([problem.as_dict()]) from exc
                media_of[key] = media.id
                if new:
                    made.append(media.id)
        except BaseException:
            await self._forget(account_id, made)
            raise
        log.info(
            "flow speech: %d texts, %d spoken, %d new media", len(sites), len(spoken), len(made)
        )
        return {site.key: media_of[(voices[site.key], site.text)] for site in sites}, made

    async def _voices(self, sites: builtins.list[SpeechSite], account_language: str) -> dict[str, str]:
        """The engine's voice for each site (by its key); every unknown language or voice is
        an error naming its node."""
        voices: dict[str, str] = {}
        errors: list[FlowError] = []
        for site in sites:
            language = site.language or account_language
            try:
                voice = await self._speech.voice(language)
            except UnknownVoice as exc:
                whose = "" if site.language else " (the account's language: set the node's)"
                errors.append(FlowError(site.node_id, None, "data.language", f"{exc}{whose}"))
                continue
            except SpeechUnavailable as exc:
                raise Unavailable(
                    f"node {site.node_id!r}: speech cannot be made here: {exc}",
                    "speech-unavailable",
                ) from exc
            if site.voice is not None:
                try:
                    voice = await self._speech.voice(language, site.voice)
                except UnknownVoice as exc:
                    errors.append(FlowError(site.node_id, None, "data.voice", str(exc)))
                    continue
            voices[site.key] = voice
        if errors:
            unique = list({(e.node_id, e.field, e.message): e for e in errors}.values())
            raise InvalidFlow([error.as_dict() for error in unique])
        return voices

    async def _forget(self, account_id: str, media_ids: builtins.list[str]) -> None:
        """Delete the media a failed save made (unless something uses them meanwhile)."""
        for media_id in media_ids:
            try:
                await self._media.delete(account_id, media_id)
            except DomainError:
                log.info("speech media %s kept: %s", media_id, "in use or gone")

    async def in_use(self, uow: UnitOfWork, account_id: str, flow_id: str) -> builtins.list[str]:
        """The ids of the numbers routing calls to the flow (empty: not in use)."""
        numbers = await uow.numbers.numbers_pointing_to(account_id, DestKind.FLOW, flow_id)
        return [number.id for number in numbers]


async def _account_language(uow: UnitOfWork, account_id: str) -> str:
    account = await uow.accounts.get(account_id)
    if account is None:
        raise NotFound("account", account_id)
    return account.language


async def _check_speech_kept(uow: UnitOfWork, account_id: str, speech: dict[str, str]) -> None:
    """The speech media made for the save still exist (no delete slipped in before the flow
    held them)."""
    wanted = set(speech.values())
    if wanted - await uow.flows.existing_media(account_id, wanted):
        raise Conflict("a speech media of the flow was deleted while it was saved: save again")


_SPACES = re.compile(r"\s+")


def _media_name(voice: str, text: str) -> str:
    name = f"Speech ({voice}): {_SPACES.sub(' ', text).strip()}"
    if len(name) > MAX_NAME_LENGTH:
        name = name[: MAX_NAME_LENGTH - 1] + "…"
    return "".join(ch if ch.isprintable() else " " for ch in name)


async def _check(
    uow: UnitOfWork, account_id: str, nodes: list[Any], edges: list[Any]
) -> FlowGraph:
    try:
        json.dumps([nodes, edges], allow_nan=False)
    except ValueError as exc:
        # NaN and Infinity parse in Python but are not JSON: no database column takes them.
        problem = FlowError(None, None, "body", "numbers must be finite (no NaN or Infinity)")
        raise InvalidFlow([problem.as_dict()]) from exc
    graph, errors = check_flow(nodes, edges)
    if not graph.too_large:
        sites = reference_sites(graph)
        wanted: dict[RefKind, set[str]] = {kind: set() for kind in CHECKED_IN_ACCOUNT}
        for site in sites:
            prefix = _PREFIX.get(site.kind)
            if prefix is not None and is_id(site.id, prefix) and site.kind in wanted:
                wanted[site.kind].add(site.id)
        found = {
            RefKind.MEDIA: await uow.flows.existing_media(account_id, wanted[RefKind.MEDIA]),
            RefKind.MAILBOX: await uow.flows.existing_mailboxes(
                account_id, wanted[RefKind.MAILBOX]
            ),
            RefKind.SCHEDULE: await uow.flows.existing_schedules(
                account_id, wanted[RefKind.SCHEDULE]
            ),
            RefKind.QUEUE: {
                q for q in wanted[RefKind.QUEUE] if await uow.queues.get(account_id, q)
            },
            RefKind.RING_GROUP: {
                g for g in wanted[RefKind.RING_GROUP] if await uow.ring_groups.get(account_id, g)
            },
            RefKind.USER: {u for u in wanted[RefKind.USER] if await uow.users.get(account_id, u)},
        }
        for site in sites:
            message = _reference_problem(site.kind, site.id, found)
            if message is not None:
                errors.append(FlowError(site.node_id, None, site.field, message))
    if errors:
        raise InvalidFlow([error.as_dict() for error in errors])
    return graph


def _reference_problem(kind: RefKind, ref: str, found: dict[RefKind, set[str]]) -> str | None:
    prefix = _PREFIX[kind]
    if not is_id(ref, prefix):
        return f"is not a {kind.value} id ({prefix}_...)"
    if kind in found and ref not in found[kind]:
        return f"{kind.value} {ref!r} was not found in this account"
    return None


def _check_id(flow_id: str) -> None:
    # Not a flow id at all: it cannot exist, and must not reach a query.
    if not is_id(flow_id, "flow"):
        raise NotFound("flow", flow_id[:40])
