"""The media layer of the call core: SDP offer/answer, RTP/RTCP sessions, recording, DTMF, playout.

Pure cores (no I/O, time passed in): ``sdp``, ``reorder``, ``placement``, ``recorder``,
``dtmf``, ``latch``, ``rtcp``, ``sender``. Asyncio shell: ``session`` (one
``MediaSession`` per call, one ``MediaEngine`` per process) and ``pacer`` (one paced
send loop for every session).
"""

from afterbeep.telephony.media.errors import (
    MediaAddressNotAllowed,
    MediaError,
    MediaSessionStateError,
    NoCommonMediaError,
    PortsExhaustedError,
    SdpError,
)
from afterbeep.telephony.media.recorder import AudioSink, DigitSink
from afterbeep.telephony.media.sdp import (
    Codec,
    Direction,
    Negotiated,
    SdpPrefs,
    answer,
    offer,
    parse_answer,
)
from afterbeep.telephony.media.sender import PlayResult, Prompt
from afterbeep.telephony.media.session import (
    MediaConfig,
    MediaEngine,
    MediaSession,
    MediaStats,
    SessionState,
)

__all__ = [
    "AudioSink",
    "Codec",
    "DigitSink",
    "Direction",
    "MediaAddressNotAllowed",
    "MediaConfig",
    "MediaEngine",
    "MediaError",
    "MediaSession",
    "MediaSessionStateError",
    "MediaStats",
    "Negotiated",
    "NoCommonMediaError",
    "PlayResult",
    "PortsExhaustedError",
    "Prompt",
    "SdpError",
    "SdpPrefs",
    "SessionState",
    "answer",
    "offer",
    "parse_answer",
]
