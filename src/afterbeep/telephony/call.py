"""Calls over SIP and RTP: `SipCall`, the real `Call` that call scripts run on, and `dial()`.

A `SipCall` joins the signalling of one call (an `IncomingInvite`, then its `Dialog`) to its
media (one `MediaSession`). Everything runs in callbacks of the event loop: RTP audio goes to
the recording that is in progress (if any), keys pressed arrive by RFC 4733 or SIP INFO and
are merged into one stream (a press sent both ways counts once), the remote BYE, a CANCEL, a
missing ACK or RTP inactivity set `ended`. The call owns no task: the script awaits it, and
whoever runs the script calls `hangup()` at the end (the server does, in a `finally`).

A recording starts with the audio received after `record()` is called and ends, for a finish
key sent by RFC 4733, exactly where the key's first packet sits in the RTP stream (the media
layer delivers in packet order). Nothing is trimmed before the key: a phone that also sends the
tone in-band for the few ms before its first event packet leaves those ms in the recording.

Errors (`CallEnded` of the call interface is what scripts see when the far end goes away):

    CallError
    ├── CallStateError   an operation the call's state does not allow (play before answer)
    └── DialFailed       an outbound call that was not answered (SIP code and reason)
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
import urllib.parse
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from dataclasses import dataclass
from typing import NamedTuple, NoReturn, Protocol

import numpy as np

from afterbeep.domain.errors import InvalidPhoneNumber
from afterbeep.domain.ids import new_id
from afterbeep.domain.netpolicy import NetworkPolicy
from afterbeep.domain.phone import mask, to_e164
from afterbeep.metrics import (
    PROMPT_SKIPPED,
    PROMPT_STALLS,
    RECORDING_PREROLL_OVERFLOW,
    RECORDING_START_LATE,
    SIP_INVITE_TO_200,
)
from afterbeep.telephony.interface import (
    Audio,
    CallEnded,
    EndedBy,
    Recording,
    RecordingSink,
)
from afterbeep.telephony.media import (
    MediaAddressNotAllowed,
    MediaEngine,
    MediaError,
    MediaSession,
    MediaSessionStateError,
    MediaStats,
    PortsExhaustedError,
    Prompt,
    SdpError,
)
from afterbeep.telephony.media.preroll import PREROLL_SECONDS, PreRoll
from afterbeep.telephony.sip import (
    Answered,
    CallFailed,
    Cancelled,
    Credentials,
    Dialog,
    DialogAck,
    DialogEvent,
    DtmfReceived,
    Failed,
    HangUp,
    IncomingEvent,
    IncomingInvite,
    OutgoingEvent,
    OutgoingInvite,
    OutgoingState,
    Provisional,
    SipStateError,
    UserAgent,
)
from afterbeep.telephony.sip.message import uri_of

__all__ = [
    "AudioTap",
    "CallEndpoint",
    "CallError",
    "CallSettings",
    "CallStateError",
    "DialFailed",
    "DialState",
    "DigitMerger",
    "OutboundCall",
    "RecordingTake",
    "SipCall",
    "caller_identity",
    "dial",
    "display_name",
    "uri_user",
]

log = logging.getLogger(__name__)

RATE = 8000
FRAME = 160  # 20 ms: the unit of silence detection, as in the fake call
RFC4733 = "rfc4733"
SIP_INFO = "info"
_LISTEN_SILENCE = Prompt(np.zeros(RATE * 60, dtype=np.int16))  # sent while listening
_PLACEMENT_SLACK = 0.6  # s: the media layer may hold received audio this long before delivery
_FILL_BLOCK = RATE // 5  # zeros for missing audio come 200 ms at a time, as received audio does
# While recording, one silence frame in ten (every 200 ms) keeps the leg two-way for NATs and
# the far end's media timers (as Asterisk's rtpkeepalive does, more often): every frame would
# cost a deposit more CPU than all the rest of its recording.
_RECORDING_KEEPALIVE_EVERY = 10


class CallError(Exception):
    """Base of the errors raised by afterbeep.telephony.call (besides CallEnded)."""


class CallStateError(CallError):
    """The call is not in a state that allows this operation."""


class DialFailed(CallError):
    """An outbound call ended without an answer: the SIP final response code and reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


MEDIA_NOT_ALLOWED_REASON = "Media Address Not Allowed"
# `SipCall.end_reason` of a call ended because a re-INVITE moved its media out of the policy.
MEDIA_NOT_ALLOWED = "media-address-not-allowed"


class MediaNotAllowed(DialFailed):
    """The far end's SDP named an RTP/RTCP address outside the network policy: the call was
    refused (CANCEL, or BYE after the answer) before any media went there."""

    def __init__(self) -> None:
        super().__init__(488, MEDIA_NOT_ALLOWED_REASON)


@dataclass(frozen=True, slots=True)
class CallSettings:
    """``default_region`` turns national caller numbers into E.164; ``hangup_grace`` is how
    long RTP still in flight is awaited after a remote BYE before the recording is closed;
    ``dtmf_dedup_window``: the same key by RFC 4733 and by INFO within this is one press;
    ``preroll_seconds``: the audio kept for `record(from_prompt_end=True)`."""

    default_region: str = "US"
    hangup_grace: float = 0.1
    dtmf_dedup_window: float = 0.5
    retry_after: int = 30
    preroll_seconds: float = PREROLL_SECONDS


# --- who is calling -------------------------------------------------------------------------


def uri_user(uri: str) -> str | None:
    """The user part of a SIP URI (``sip:+1202...;npdi@host`` → ``+1202...``), the number of a
    ``tel:`` URI, percent-decoded, without user parameters; None if it has none."""
    scheme, sep, rest = uri.strip().partition(":")
    if not sep:
        return None
    scheme = scheme.lower()
    if scheme == "tel":
        user = rest.split(";", 1)[0]
    elif scheme in ("sip", "sips"):
        if "@" not in rest:
            return None
        user = rest.rsplit("@", 1)[0].split(";", 1)[0].split(":", 1)[0]
    else:
        return None
    user = urllib.parse.unquote(user).strip()
    return user or None


def display_name(header: str | None) -> str | None:
    """The display name of a name-addr header value (``"Alice" <sip:...>``), if any."""
    if not header:
        return None
    text = header.strip()
    lt = text.find("<")
    if lt <= 0:
        return None
    name = text[:lt].strip()
    if name.startswith('"'):
        end = name.rfind('"')
        name = name[1:end] if end > 0 else name[1:]
        name = name.replace('\\"', '"').replace("\\\\", "\\")
    return name.strip() or None


def _number_or(uri: str, user: str | None, region: str) -> str:
    if user:
        try:
            return to_e164(user, region)
        except InvalidPhoneNumber:
            pass
    return uri


def caller_identity(
    from_header: str, pai_header: str | None, region: str
) -> tuple[str | None, str | None]:
    """(caller, caller_name): the number from P-Asserted-Identity, else from From, in E.164 when
    it is one, else that header's SIP URI; the display name of the same header, else From's."""
    source = pai_header if pai_header and pai_header.strip() else from_header
    if not source:
        return None, None
    uri = uri_of(source)
    caller = _number_or(uri, uri_user(uri), region)
    name = display_name(source) or (
        display_name(from_header) if source is not from_header else None
    )
    return caller, name


# --- keys pressed ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Press:
    key: str
    source: str
    time: float
    paired: bool = False


class DigitMerger:
    """One key stream out of two sources (RFC 4733 and SIP INFO), no I/O, time passed in.

    A phone set to send both reports every press twice: a key is dropped when the *other*
    source reported the same key within ``window`` seconds and that report was not already
    paired. Two presses of the same key on one source are always two keys.
    """

    def __init__(self, window: float) -> None:
        self.window = window
        self._recent: deque[_Press] = deque()
        self.duplicates = 0

    def accept(self, key: str, source: str, now: float) -> bool:
        while self._recent and now - self._recent[0].time > self.window:
            self._recent.popleft()
        for press in self._recent:
            if press.key == key and press.source != source and not press.paired:
                press.paired = True
                self.duplicates += 1
                return False
        self._recent.append(_Press(key, source, now))
        return True


# --- the pieces of one call that are in progress ------------------------------------------


class AudioTap:
    """Received audio handed to one listener as it arrives (`listen()`): blocks queue up
    here until read; `close()` ends the iteration once the queue is drained. No I/O.

    Clocked (``since``, a loop time), time passes for the listener when no audio comes: once
    nothing was delivered for `_PLACEMENT_SLACK` s past where the audio so far ends, zeros
    stand for the time gone by (a far end that stopped sending RTP is silent to a detector),
    and the media layer's own zeros for that gap, should the far end come back, are not
    counted again. The count of samples queued then follows the clock, a little behind it.
    """

    def __init__(self, since: float | None = None) -> None:
        self._blocks: deque[Audio] = deque()
        self._changed = asyncio.Event()
        self.closed = False
        self._clocked = since is not None
        self._anchor_at = since or 0.0  # when audio was last delivered ...
        self._anchor = 0  # ... and the samples queued then
        self._queued = 0  # samples queued, received and filled
        self._owed = 0  # zeros filled in that the media layer's gap fill may repeat
        self.filled = 0

    def put(self, pcm: Audio, now: float = 0.0) -> None:
        if self.closed or not pcm.size:
            return
        if self._owed:
            if pcm.any():
                self._owed = 0  # sound: the far end is back, on a timeline without the gap
            else:
                cut = min(self._owed, pcm.size)
                self._owed -= cut
                pcm = pcm[cut:]
                if not pcm.size:
                    return
        self._blocks.append(pcm)
        self._changed.set()
        self._queued += pcm.size
        self._anchor_at, self._anchor = now, self._queued

    def wake_at(self) -> float:
        """When the next block of zeros is due if nothing arrives meanwhile."""
        ahead = self._queued - self._anchor + _FILL_BLOCK
        return self._anchor_at + _PLACEMENT_SLACK + ahead / RATE

    def fill(self, now: float) -> None:
        """Queue zeros for the time without audio up to ``now`` (less the slack)."""
        if self.closed or not self._clocked:
            return
        due = self._anchor + round((now - self._anchor_at - _PLACEMENT_SLACK) * RATE)
        missing = due - self._queued
        if missing < _FILL_BLOCK:
            return
        for start in range(0, missing, RATE):
            self._blocks.append(np.zeros(min(RATE, missing - start), dtype=np.int16))
        self._queued += missing
        self._owed += missing
        self.filled += missing
        self._changed.set()

    def close(self) -> None:
        self.closed = True
        self._changed.set()

    async def blocks(self) -> AsyncGenerator[Audio, None]:
        loop = asyncio.get_running_loop()
        while True:
            while self._blocks:
                yield self._blocks.popleft()
            if self.closed:
                return
            self._changed.clear()
            if not self._clocked:
                await self._changed.wait()
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(self.wake_at()):
                    await self._changed.wait()
            self.fill(loop.time())


class _Typed(NamedTuple):
    """A key pressed while nothing took it: when it arrived (monotonic; an RFC 4733 key, its
    packet's receive time) and the pre-roll's `received` count then (what came before it)."""

    key: str
    arrival: float
    mark: int | None


class _Player:
    __slots__ = ("interrupt", "key", "keys", "typed")

    def __init__(self, keys: str) -> None:
        self.keys = keys
        self.key: str | None = None
        self.typed: _Typed | None = None  # the key, as it came
        self.interrupt = asyncio.Event()


class RecordingTake:
    """A recording in progress: writes to the sink, stops at the limits. No I/O of its own.

    Silence is Asterisk's rule of `afterbeep.audio.levels` (a 20 ms frame whose mean absolute
    value is below the threshold), counted over frames aligned on the start of the take; it
    is computed for a whole delivered block at once, since `SilenceDetector.feed` frame by
    frame costs about 100 us per 200 ms block, a third of a core at 600 calls.
    """

    def __init__(
        self, sink: RecordingSink, limit: int, silence_ms: int, threshold: int, finish_on: str
    ) -> None:
        self.sink = sink
        self.limit = limit
        self.finish_on = finish_on
        self.threshold = threshold
        self.silence_limit = silence_ms * RATE // 1000
        self.silent_run = 0
        self._carry: Audio = np.zeros(0, dtype=np.int16)  # a partial frame from the last block
        self.samples = 0
        self.ended_by: EndedBy | None = None
        self.error: BaseException | None = None
        self.changed = asyncio.Event()
        self.last_audio = asyncio.get_running_loop().time()

    def feed(self, pcm: Audio, now: float) -> None:
        if self.ended_by is not None or pcm.size == 0:
            return
        self.last_audio = now
        end = min(pcm.size, self.limit - self.samples)
        stop: EndedBy | None = EndedBy.MAX_LENGTH if end < pcm.size else None
        cut = self._silence_end(pcm[:end])
        if cut is not None:
            end, stop = cut, EndedBy.SILENCE
        if stop is None and self.samples + end >= self.limit:
            stop = EndedBy.MAX_LENGTH
        if end > 0:
            try:
                self.sink.write(pcm[:end])
            except Exception as exc:  # surfaces from record(), not from a socket callback
                self.error = exc
                stop = stop or EndedBy.HANGUP
            self.samples += end
        if stop is not None:
            self.finish(stop)

    def _silence_end(self, pcm: Audio) -> int | None:
        """Where in ``pcm`` the silence reaches its limit (the end of that frame), if it does."""
        carry = self._carry
        data = np.concatenate([carry, pcm]) if carry.size else pcm
        whole = data.size // FRAME * FRAME
        if whole:
            # mean < threshold as integer sums: np.mean costs ~10 us of Python per block
            sums = np.add.reduce(np.abs(data[:whole].reshape(-1, FRAME), dtype=np.int32), axis=1)
            for index, silent in enumerate((sums < self.threshold * FRAME).tolist()):
                self.silent_run = self.silent_run + FRAME if silent else 0
                if self.silent_run >= self.silence_limit:
                    return (index + 1) * FRAME - carry.size
        self._carry = data[whole:].copy()
        return None

    def quiet_at(self) -> float:
        """When the silence limit is reached if no more audio arrives: the silence heard at the
        end of the audio so far, then the time without packets, count as silence."""
        still = max(0, self.silence_limit - self.silent_run) / RATE
        return self.last_audio + still + _PLACEMENT_SLACK

    def finish(self, ended_by: EndedBy) -> None:
        if self.ended_by is None:
            self.ended_by = ended_by
        self.changed.set()


# --- the call --------------------------------------------------------------------------------


class SipCall:
    """One call leg over SIP and RTP implementing `afterbeep.telephony.interface.Call`.

    ``call_id`` is ours (``call_<ulid>``); ``sip_call_id`` the SIP Call-ID. ``ended`` is set
    when the call is over for the script (remote BYE, CANCEL, no ACK, RTP inactivity,
    shutdown); ``end_reason`` says which.
    """

    call_id: str
    caller: str | None
    caller_name: str | None
    callee: str | None

    def __init__(
        self,
        engine: MediaEngine,
        settings: CallSettings = CallSettings(),
        *,
        invite: IncomingInvite | None = None,
        direction: str = "inbound",
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._loop = asyncio.get_running_loop()
        self.call_id = new_id("call")
        self.direction = direction
        self.invite = invite
        self.dialog: Dialog | None = None
        self.media: MediaSession | None = None
        self.caller = self.caller_name = self.callee = None
        self.request_user: str | None = None
        self.ended = asyncio.Event()
        self.end_reason: str | None = None
        self.answered = False
        self._hung_up = False
        self._answer_lock = asyncio.Lock()
        self._awaiting_answer_in_ack = False
        self._acked = asyncio.Event()
        self._answered_at: float | None = None  # time.monotonic() as the 200 OK left
        # Inbound, nothing is sent before the caller is confirmed (the ACK, or its RTP): until
        # then the SDP address is only the INVITE's word, maybe a victim's (reflection).
        self._confirmed = asyncio.Event()
        if invite is None:
            self._confirmed.set()  # outbound: the far end answered our INVITE
        self._merger = DigitMerger(settings.dtmf_dedup_window)
        self._typed: deque[_Typed] = deque()
        self._wake = asyncio.Event()
        self._player: _Player | None = None
        self._plays = 0  # play() calls in progress
        self._played = asyncio.Event()  # set when the last of them ended
        self._fillers: dict[asyncio.Event, asyncio.Event] = {}  # `_silence`: hush → its quiet
        self._take: RecordingTake | None = None
        self._taps: list[AudioTap] = []
        self.digits_received = 0
        # From the first play on, what is received while nothing records (bounded), so that
        # `record(from_prompt_end=True)` starts at the last prompt's end on the media clock.
        self._preroll: PreRoll | None = None
        self._prompt_end: float | None = None  # time.monotonic(): the last prompt's scheduled end
        self._late_key: _Typed | None = None  # the last play's key, come after that end
        if invite is not None:
            self._identify(invite)
            invite.listener = self._on_invite_event
            if not invite.answerable:
                self._end("cancelled")

    def _identify(self, invite: IncomingInvite) -> None:
        region = self._settings.default_region
        self.caller, self.caller_name = caller_identity(
            invite.from_header, invite.request.headers.get_first("p-asserted-identity"), region
        )
        self.request_user = uri_user(invite.request.uri)
        user = self.request_user or uri_user(invite.to_uri)
        self.callee = _number_or(user, user, region) if user else None

    @property
    def sip_call_id(self) -> str:
        if self.dialog is not None:
            return self.dialog.call_id
        return self.invite.call_id if self.invite is not None else ""

    def __repr__(self) -> str:
        return f"<SipCall {self.call_id} {self.direction} caller={mask(self.caller)}>"

    def media_stats(self) -> MediaStats | None:
        return self.media.stats() if self.media is not None else None

    # --- signalling events (run on the loop, from datagram callbacks) ---------------------

    def _on_invite_event(self, event: IncomingEvent) -> None:
        if isinstance(event, Cancelled):
            self._end("cancelled" if event.reason == "CANCEL" else event.reason)

    def _on_dialog_event(self, event: DialogEvent) -> None:
        if isinstance(event, DtmfReceived):
            self._on_key(event.digit, SIP_INFO)
        elif isinstance(event, DialogAck):
            self._on_ack(event.body)
        elif isinstance(event, HangUp):
            self._end(event.reason)

    def _on_ack(self, body: bytes) -> None:
        if self._awaiting_answer_in_ack and self.media is not None:
            self._awaiting_answer_in_ack = False
            try:
                self.media.accept_answer(body)
            except MediaAddressNotAllowed:
                log.warning("call %s: media address not allowed, hanging up", self.call_id)
                self._end(MEDIA_NOT_ALLOWED)
            except (SdpError, MediaSessionStateError) as exc:
                log.info("call %s: unusable SDP answer in ACK: %s", self.call_id, exc)
                self._end("bad-sdp")
        self._acked.set()
        self._confirmed.set()
        if self.media is not None:
            self.media.confirm()

    def _on_caller_rtp(self) -> None:
        self._confirmed.set()

    def _on_reinvite(self, offer: bytes) -> bytes | None:
        """Hold, resume, new address or codec; None answers 488."""
        media = self.media
        if media is None or self.ended.is_set():
            return None
        try:
            if not offer:
                self._awaiting_answer_in_ack = True
                return media.offer()
            return media.answer(offer)
        except MediaAddressNotAllowed:
            log.warning("call %s: re-INVITE media address not allowed, hanging up", self.call_id)
            self._end(MEDIA_NOT_ALLOWED)
            return None
        except (SdpError, MediaSessionStateError, ValueError) as exc:
            log.info("call %s: re-INVITE refused: %s", self.call_id, exc)
            return None

    def _on_inactivity(self) -> None:
        log.info("call %s: no RTP, hanging up", self.call_id)
        self._end("rtp-timeout")

    # --- media events ---------------------------------------------------------------------

    def _on_audio(self, pcm: Audio, offset: int) -> None:
        take = self._take
        if take is not None:
            take.feed(pcm, self._loop.time())
        elif self._preroll is not None and self.media is not None:
            self._preroll.put(pcm, self.media.block_arrival)
        if self._taps:
            now = self._loop.time()
            for tap in self._taps:
                tap.put(pcm, now)

    def _on_rfc4733(self, key: str) -> None:
        arrival = self.media.event_arrival if self.media is not None else time.monotonic()
        self._on_key(key, RFC4733, arrival)

    def _flush_received(self) -> None:
        """Have the media layer deliver the audio it holds (re-setting the sink does that)."""
        if self.media is not None:
            self.media.on_audio = self._on_audio

    def _on_key(self, key: str, source: str, arrival: float | None = None) -> None:
        if not self._merger.accept(key, source, self._loop.time()):
            return
        self.digits_received += 1
        player, take = self._player, self._take
        if player is not None and player.key is None and key in player.keys:
            player.key = key
            player.typed = self._typed_key(key, arrival)
            player.interrupt.set()
        elif take is not None and take.ended_by is None:
            if key in take.finish_on:
                self._flush_received()  # audio before the key (RFC 4733 keeps packet order)
                take.finish(EndedBy.FINISH_KEY)
            # other keys during a recording are ignored, as in the fake call
        else:
            self._typed.append(self._typed_key(key, arrival))
            self._wake.set()

    def _typed_key(self, key: str, arrival: float | None) -> _Typed:
        """The key with its arrival and, while the pre-roll keeps audio, the audio before it
        delivered there first (RFC 4733 keeps packet order) and counted."""
        mark = None
        if self._preroll is not None and self._take is None:
            self._flush_received()
            mark = self._preroll.received
        return _Typed(key, time.monotonic() if arrival is None else arrival, mark)

    def _end(self, reason: str) -> None:
        if self.ended.is_set():
            return
        self.end_reason = reason
        self.ended.set()
        self._wake.set()
        for tap in self._taps:
            tap.close()
        if self._player is not None:
            self._player.interrupt.set()
        if self._take is not None:
            self._take.changed.set()

    def end(self, reason: str = "shutdown") -> None:
        """End the call for the script now (it sees CallEnded, a recording ends as by hang-up);
        the BYE goes out when `hangup()` runs."""
        self._end(reason)

    # --- the Call interface ---------------------------------------------------------------

    def ringing(self) -> None:
        """Send 180 Ringing (inbound, before answer)."""
        if self.invite is not None and not self.answered:
            self.invite.ringing()

    async def answer(self) -> None:
        """Bind RTP, answer the offer (488 when nothing is common), send 200; hold and resume
        are then answered from the same session. Raises CallEnded if the caller is gone."""
        async with self._answer_lock:
            if not self.answered:
                self._answerable()
                try:
                    media = await self._engine.open_session(
                        on_audio=self._on_audio,
                        on_dtmf=self._on_rfc4733,
                        on_inactivity=self._on_inactivity,
                    )
                except (PortsExhaustedError, MediaSessionStateError) as exc:
                    self._no_media(exc)
                try:
                    self._answer_with(media)
                except CallEnded:
                    await self._close_media()
                    raise
        await self._late_offer_acked()

    def answer_now(self) -> bool:
        """Answer without waiting, if the media engine has a pre-bound port pair: the 200 is
        sent before this returns. False (nothing done) when there is none or an `answer()` is
        under way; raises CallEnded like `answer()` (the media is closed by `hangup()`). A
        late-offer call still needs `answer()` afterwards, to wait for the ACK's answer."""
        if self.answered:
            return True
        if self._answer_lock.locked():
            return False
        self._answerable()
        try:
            media = self._engine.session_now(
                on_audio=self._on_audio,
                on_dtmf=self._on_rfc4733,
                on_inactivity=self._on_inactivity,
            )
        except MediaSessionStateError as exc:
            self._no_media(exc)
        if media is None:
            return False
        self._answer_with(media)
        return True

    def _answerable(self) -> IncomingInvite:
        invite = self.invite
        if invite is None:
            raise CallStateError("an outbound call is answered by the far end")
        if self.ended.is_set() or not invite.answerable:
            self._end("cancelled")
            raise CallEnded()
        return invite

    def _no_media(self, exc: Exception) -> NoReturn:
        log.warning("call %s: %s", self.call_id, exc)
        retry = (("Retry-After", str(self._settings.retry_after)),)
        assert self.invite is not None
        self.invite.reject(503, "No Media Ports", retry)
        self._end("no-media-ports")
        raise CallEnded() from exc

    def _answer_with(self, media: MediaSession) -> None:
        """The SDP answer (or, for a late offer, our offer) on ``media`` and the 200; raises
        CallEnded (after 488, or if the INVITE was cancelled meanwhile)."""
        invite = self.invite
        assert invite is not None
        self.media = media
        if not self._confirmed.is_set():
            media.expect_confirmation(self._on_caller_rtp)
        try:
            if invite.sdp:
                local_sdp = media.answer(invite.sdp)
            else:
                local_sdp = media.offer()
                self._awaiting_answer_in_ack = True
        except SdpError as exc:
            log.info("call %s: 488, %s", self.call_id, exc)
            invite.reject(488)
            self._end("no-common-media")
            raise CallEnded() from exc
        dialog = invite.accept(local_sdp)
        if dialog is None:
            self._end("cancelled")
            raise CallEnded()
        self._answered_at = time.monotonic()
        SIP_INVITE_TO_200.observe(time.monotonic() - invite.received_at)
        self._attach(dialog)

    async def _late_offer_acked(self) -> None:
        invite = self.invite
        if invite is None or invite.sdp or not self.answered:
            return
        await self._wait_for(self._acked)
        # Answered once a usable ACK came, even if the caller hung up right after it.
        if not self._acked.is_set() or self.end_reason == "bad-sdp":
            raise CallEnded()

    def _attach(self, dialog: Dialog) -> None:
        self.dialog = dialog
        self.answered = True
        dialog.listener = self._on_dialog_event
        dialog.on_reinvite = self._on_reinvite
        if dialog.terminated:
            self._end("remote")

    async def _wait_for(self, *events: asyncio.Event) -> None:
        """Until one of ``events`` or the end of the call."""
        if self.ended.is_set() or any(event.is_set() for event in events):
            return
        waiters = {asyncio.ensure_future(e.wait()) for e in (*events, self.ended)}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    def _require_media(self) -> MediaSession:
        if not self.answered or self.media is None:
            raise CallStateError("the call is not answered")
        if self.ended.is_set():
            raise CallEnded()
        return self.media

    async def play(
        self,
        audio: Audio | tuple[Audio, ...],
        interrupt_on: str = "",
        then: Audio | None = None,
        from_answer: bool = False,
    ) -> str | None:
        """Play to the end, or until one of `interrupt_on` is pressed (that key is returned);
        a tuple, `then` and `from_answer` as `Call.play` says.

        Raises CallEnded when the far end hangs up.
        """
        media = self._require_media()
        if self._preroll is None:
            self._preroll = PreRoll(round(self._settings.preroll_seconds * RATE))
        self._plays += 1
        for hush in self._fillers:
            hush.set()  # silence being sent gives way
        try:
            if not self._confirmed.is_set():
                await self._wait_for(self._confirmed)  # the prompt then starts from its beginning
                if not self._confirmed.is_set():
                    raise CallEnded()
            player = _Player(interrupt_on)
            self._player = player
            start_at = self._answered_at if from_answer else None
            try:
                played = await media.play(
                    audio, interrupt=player.interrupt, then=then, start_at=start_at
                )
                if start_at is not None:
                    PROMPT_SKIPPED.observe(played.skipped / RATE)
                if media.send_stream.begun:
                    self._prompt_end = media.send_stream.due
                    typed = player.typed
                    late = typed is not None and typed.arrival >= self._prompt_end
                    self._late_key = typed if late else None
            except MediaSessionStateError as exc:
                raise CallEnded() from exc
            finally:
                if self._player is player:
                    self._player = None
        finally:
            self._plays -= 1
            if not self._plays:
                self._played.set()
        if player.key is not None:
            return player.key
        if self.ended.is_set():
            raise CallEnded()
        return None

    def _finish_typed(self, since: float, finish_on: str) -> _Typed | None:
        """For a recording from ``since``: the keys that arrived from then on came during it,
        the last play's key too when it arrived after the prompt's end (its play returned
        late). The first finish key among them is returned; the keys typed ahead before it
        are taken (ignored, as keys during a recording are), those after it stay."""
        late, self._late_key = self._late_key, None
        finish = late if late is not None and late.key in finish_on else None
        kept: deque[_Typed] = deque()
        for typed in self._typed:
            if typed.arrival < since or (finish is not None and typed.arrival >= finish.arrival):
                kept.append(typed)
            elif finish is None and typed.key in finish_on:
                finish = typed
        self._typed = kept
        return finish

    async def record(
        self,
        sink: RecordingSink,
        *,
        max_seconds: float,
        silence_seconds: float,
        finish_on: str = "#",
        silence_threshold: int = 200,
        from_prompt_end: bool = False,
    ) -> Recording:
        """Record into `sink` until a finish key, hang-up, the maximum length, or silence.

        A hang-up ends the recording normally (what was said is kept). While it records the
        call sends silence: carriers and NATs drop a leg that is silent one way. With
        `from_prompt_end`, as `interface.Call.record` says: the recording, its maximum length
        and its silence start at the last prompt's scheduled end, the audio received since
        then is kept (up to `PREROLL_SECONDS`).
        """
        media = self._require_media()
        self._flush_received()  # delivers what the media layer holds: to the pre-roll
        preroll, self._preroll = self._preroll, None
        take = RecordingTake(
            sink,
            limit=round(max_seconds * RATE),
            silence_ms=round(silence_seconds * 1000),
            threshold=silence_threshold,
            finish_on=finish_on,
        )
        started = self._loop.time()
        if from_prompt_end and self._prompt_end is not None:
            finish = self._finish_typed(self._prompt_end, finish_on)
            until = finish.mark if finish is not None else None
            started = self._take_preroll(take, preroll, self._prompt_end, until)
            if finish is not None:
                take.finish(EndedBy.FINISH_KEY)  # pressed after the beep, before we got here
        self._take = take
        quiet = asyncio.Event()
        filler = self._send_silence(media, quiet, every=_RECORDING_KEEPALIVE_EVERY)
        try:
            while take.ended_by is None:
                if self.ended.is_set():
                    await self._collect_tail()
                    take.finish(EndedBy.HANGUP)
                    break
                now = self._loop.time()
                max_at = started + max_seconds + _PLACEMENT_SLACK
                quiet_at = take.quiet_at()
                if now >= max_at:
                    take.finish(EndedBy.MAX_LENGTH)  # the caller sent too little audio to count
                elif now >= quiet_at:
                    take.finish(EndedBy.SILENCE)  # nothing arrived at all (hold, DTX)
                else:
                    take.changed.clear()
                    try:
                        async with asyncio.timeout(min(max_at, quiet_at) - now):
                            await take.changed.wait()
                    except TimeoutError:
                        pass
        finally:
            if self._take is take:
                self._take = None
            await self._stop_silence(filler, quiet)
        if take.error is not None:
            raise take.error
        assert take.ended_by is not None
        return Recording(take.samples, take.ended_by)

    def _take_preroll(
        self, take: RecordingTake, preroll: PreRoll | None, since: float, until: int | None = None
    ) -> float:
        """Feed `take` what was received from ``since`` (monotonic) on (and before the mark
        ``until``); the take's start on the loop's clock."""
        now = time.monotonic()
        since = min(since, now)
        shift = self._loop.time() - now  # the loop's clock (uvloop's: in ms)
        late = now - since
        RECORDING_START_LATE.observe(late)
        take.last_audio = since + shift
        if preroll is None:
            return since + shift
        lost = preroll.lost_after(since)
        if lost > 0:
            RECORDING_PREROLL_OVERFLOW.inc()
            log.warning(
                "call %s: recording set up %.0f ms after the prompt's end, past the audio kept: "
                "its first %.0f ms are lost",
                self.call_id,
                late * 1000,
                lost * 1000,
            )
        for pcm, arrival in preroll.since(since, until):
            take.feed(pcm, arrival + pcm.size / RATE + shift)
        return since + shift

    async def listen(self) -> AsyncGenerator[Audio, None]:
        """The audio received from now on, in blocks as the media layer delivers them (gaps
        filled with zeros), until the call ends. Close it (`contextlib.aclosing`) when done.

        While it is open the call sends silence, so that the far end's media path (a NAT
        binding, an SBC that latches on our packets, an RTP inactivity timer) stays open."""
        tap = AudioTap(since=self._loop.time())
        if self.ended.is_set():
            tap.close()
        self._taps.append(tap)
        quiet = asyncio.Event()
        filler = self._send_silence(self.media, quiet)
        try:
            async for block in tap.blocks():
                yield block
        finally:
            self._taps.remove(tap)
            await self._stop_silence(filler, quiet)

    def _send_silence(
        self, media: MediaSession | None, quiet: asyncio.Event, every: int = 1
    ) -> asyncio.Task[None] | None:
        """Silence sent on the shared pacer (one frame in ``every``), once the caller is
        confirmed and whenever nothing else plays, until ``quiet`` is set (stop it with
        `_stop_silence`)."""
        if media is None or self.ended.is_set():
            return None
        return asyncio.create_task(
            self._silence(media, quiet, every), name=f"silence-{self.call_id}"
        )

    async def _silence(self, media: MediaSession, quiet: asyncio.Event, every: int) -> None:
        await self._wait_for(self._confirmed, quiet)
        while self._confirmed.is_set() and not quiet.is_set() and not self.ended.is_set():
            if self._plays:
                self._played.clear()
                await self._wait_for(self._played, quiet)
                continue
            hush = asyncio.Event()
            self._fillers[hush] = quiet
            try:
                result = await media.play(_LISTEN_SILENCE, interrupt=hush, every=every)
            finally:
                del self._fillers[hush]
            if result.interrupted and not self._plays:
                return  # quiet, or the session closed

    async def _stop_silence(self, filler: asyncio.Task[None] | None, quiet: asyncio.Event) -> None:
        if filler is not None:
            quiet.set()
            for hush, its_quiet in self._fillers.items():
                if its_quiet is quiet:
                    hush.set()
            with contextlib.suppress(MediaSessionStateError):
                await filler

    async def _collect_tail(self) -> None:
        """After a hang-up: let RTP in flight land, then close the media (flushing its buffers)."""
        if self.media is not None and self.end_reason == "remote":
            await asyncio.sleep(self._settings.hangup_grace)
        await self._close_media()

    async def collect_digits(
        self,
        max_digits: int,
        timeout: float,
        terminator: str = "#",
        *,
        inter_digit_timeout: float | None = None,
    ) -> str:
        """Keys pressed (including any typed ahead), without the terminator. Raises CallEnded.

        As `interface.Call.collect_digits` says: `terminator` is any of its keys; with
        `inter_digit_timeout`, `timeout` is the wait for the first key only."""
        digits = ""
        deadline = self._loop.time() + timeout
        while True:
            had = len(digits)
            while self._typed:
                key = self._typed.popleft().key
                if key in terminator:
                    return digits
                digits += key
                if len(digits) >= max_digits:
                    return digits
            if self.ended.is_set():
                raise CallEnded()
            if inter_digit_timeout is not None and len(digits) > had:
                deadline = self._loop.time() + inter_digit_timeout
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                return digits
            self._wake.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def hangup(self) -> None:
        """BYE (or, before answer, 480), close the media. Idempotent; safe after a remote BYE."""
        if self._hung_up:
            return
        self._hung_up = True
        self._end("local")
        await self._close_media()
        if self.dialog is not None:
            await self.dialog.bye()
        elif self.invite is not None and self.invite.answerable:
            self.invite.reject(480)

    async def _close_media(self) -> None:
        media = self.media
        if media is not None:
            try:
                slips = media.stats().schedule_slips
                if slips:
                    PROMPT_STALLS.inc(slips)
                await media.close()
            except (OSError, MediaError) as exc:
                log.warning("call %s: closing media failed: %s", self.call_id, exc)


# --- outbound --------------------------------------------------------------------------------


class CallEndpoint(Protocol):
    """What `dial()` needs: a started user agent, the media engine, call settings."""

    @property
    def ua(self) -> UserAgent: ...

    @property
    def media(self) -> MediaEngine: ...

    @property
    def call_settings(self) -> CallSettings: ...


class DialState(enum.Enum):
    CALLING = "calling"
    RINGING = "ringing"  # 180 (or any 18x without SDP)
    EARLY_MEDIA = "early_media"  # 18x with SDP: the callee's audio flows before the answer
    ANSWERED = "answered"
    FAILED = "failed"


class OutboundCall:
    """An INVITE we sent. ``updates()`` yields each state; ``wait_answered()`` gives the `SipCall`
    or raises DialFailed (code, reason). Call ``aclose()`` if you stop caring before the end."""

    def __init__(self, endpoint: CallEndpoint, media: MediaSession, offer: bytes) -> None:
        self._endpoint = endpoint
        self.media = media
        self._offer = offer
        self.state = DialState.CALLING
        self.ringing = asyncio.Event()
        self.early_media = asyncio.Event()
        self.call: SipCall | None = None
        self.failure: DialFailed | None = None
        self._out: OutgoingInvite | None = None
        self._settled = asyncio.Event()
        self._updates: asyncio.Queue[DialState] = asyncio.Queue()
        self._pending_bye: Dialog | None = None
        self._early_taps: list[AudioTap] = []

    @property
    def sip_call_id(self) -> str:
        return self._out.call_id if self._out is not None else ""

    def _set(self, state: DialState) -> None:
        if state is self.state:
            return
        self.state = state
        self._updates.put_nowait(state)
        if state in (DialState.ANSWERED, DialState.FAILED):
            self._settled.set()
            for tap in self._early_taps:
                tap.close()

    def _on_early_audio(self, pcm: Audio, offset: int) -> None:
        for tap in self._early_taps:
            tap.put(pcm)

    async def early_audio(self) -> AsyncGenerator[Audio, None]:
        """Early media (18x with SDP) as it arrives, until the call is answered or fails."""
        tap = AudioTap()
        if self._settled.is_set():
            tap.close()
        self._early_taps.append(tap)
        if self.call is None:
            self.media.on_audio = self._on_early_audio
        try:
            async for block in tap.blocks():
                yield block
        finally:
            self._early_taps.remove(tap)

    async def settled(self) -> DialState:
        """Wait until the call is answered or has failed; that state."""
        await self._settled.wait()
        return self.state

    def _fail(self, code: int, reason: str, failure: DialFailed | None = None) -> None:
        if self.state in (DialState.ANSWERED, DialState.FAILED):
            return
        self.failure = failure if failure is not None else DialFailed(code, reason)
        self._set(DialState.FAILED)

    def _refuse_media(self, dialog: Dialog | None) -> None:
        """The far end's SDP names a media address the policy refuses: the attempt fails, the
        INVITE is cancelled (or, answered, the dialog gets its BYE from `aclose`)."""
        log.warning("call %s: media address not allowed, giving up", self.sip_call_id)
        failure = MediaNotAllowed()
        self._fail(failure.code, failure.reason, failure)
        if dialog is not None:
            self._pending_bye = dialog
        elif self._out is not None:
            self._out.cancel()

    def _on_event(self, event: OutgoingEvent) -> None:
        if isinstance(event, Provisional):
            if event.sdp and self.state is not DialState.EARLY_MEDIA:
                try:
                    self.media.accept_answer(event.sdp, self._offer)
                except MediaAddressNotAllowed:
                    self._refuse_media(None)
                    return
                except SdpError as exc:
                    log.info("unusable early media SDP: %s", exc)
                else:
                    self.early_media.set()
                    self._set(DialState.EARLY_MEDIA)
                    return
            if self.state is DialState.CALLING:
                self.ringing.set()
                self._set(DialState.RINGING)
        elif isinstance(event, Answered):
            self._on_answered(event.dialog, event.sdp)
        elif isinstance(event, Failed):
            self._fail(event.code, event.reason)

    def _on_answered(self, dialog: Dialog, sdp: bytes) -> None:
        if sdp or self.media.negotiated is None:
            try:
                self.media.accept_answer(sdp, self._offer)
            except MediaAddressNotAllowed:
                self._refuse_media(dialog)
                return
            except SdpError as exc:
                log.info("unusable SDP answer, hanging up: %s", exc)
                self._fail(488, "Not Acceptable Here")
                self._pending_bye = dialog
                return
        call = SipCall(self._endpoint.media, self._endpoint.call_settings, direction="outbound")
        call.media = self.media
        self.media.on_audio = call._on_audio
        self.media.on_dtmf = call._on_rfc4733
        self.media.on_inactivity = call._on_inactivity
        out = self._out
        if out is not None:
            region = self._endpoint.call_settings.default_region
            from_uri = out.request.headers.get_first("from") or ""
            to_uri = out.request.headers.get_first("to") or ""
            call.caller, call.caller_name = caller_identity(from_uri, None, region)
            call.callee, _ = caller_identity(to_uri, None, region)
        call._attach(dialog)
        self.call = call
        self._set(DialState.ANSWERED)

    async def updates(self) -> AsyncIterator[DialState]:
        """Each new state, up to ANSWERED or FAILED."""
        while True:
            state = await self._updates.get()
            yield state
            if state in (DialState.ANSWERED, DialState.FAILED):
                return

    async def wait_answered(self) -> SipCall:
        await self._settled.wait()
        if self.call is not None:
            return self.call
        await self.aclose()
        assert self.failure is not None
        raise self.failure

    def cancel(self) -> None:
        """Give up before the answer: CANCEL goes out, the call fails with 487."""
        if self._out is not None:
            self._out.cancel()
        self._fail(487, "Request Terminated")

    async def aclose(self) -> None:
        """Cancel if still ringing; release the media unless a `SipCall` took it over."""
        if self.state in (DialState.CALLING, DialState.RINGING, DialState.EARLY_MEDIA):
            self.cancel()
        dialog, self._pending_bye = self._pending_bye, None
        if dialog is not None:
            await dialog.bye()
        if self.call is None:
            await self.media.close()


async def dial(
    endpoint: CallEndpoint,
    to_uri: str,
    from_uri: str,
    *,
    credentials: Credentials | None = None,
    outbound_proxy: str | None = None,
    timeout: float = 60.0,
    headers: Iterable[tuple[str, str]] = (),
    network_policy: NetworkPolicy | None = None,
) -> OutboundCall:
    """Place a call: binds RTP, sends the INVITE with our offer, returns at once.

    Raises DialFailed(503) when no RTP port is free or the user agent is closing; every
    other failure (busy, no answer by ``timeout``, unreachable) comes from ``wait_answered()``.
    """
    try:
        media = await endpoint.media.open_session()
    except (PortsExhaustedError, MediaSessionStateError) as exc:
        raise DialFailed(503, str(exc)) from exc
    # The far end's SDP is a tenant's trunk's word: media goes only where signalling may.
    media.destination_policy = network_policy or endpoint.ua.config.network_policy
    offer = media.offer()
    outbound = OutboundCall(endpoint, media, offer)
    try:
        out = await endpoint.ua.invite(
            to_uri,
            from_uri,
            to_uri,
            offer,
            headers=headers,
            credentials=credentials,
            answer_timeout=timeout,
            outbound_proxy=outbound_proxy,
            network_policy=network_policy,
        )
    except (SipStateError, ValueError) as exc:
        await media.close()
        raise DialFailed(503, str(exc)) from exc
    except BaseException:
        await media.close()
        raise
    outbound._out = out
    out.listener = outbound._on_event
    if out.state is OutgoingState.FAILED:  # failed inside invite(), before the listener was set
        try:
            await out.wait_answered()
        except CallFailed as exc:
            outbound._fail(exc.code, exc.reason)
    log.info("dialing %s", mask(uri_user(to_uri)))
    return outbound
