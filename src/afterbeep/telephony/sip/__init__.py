"""SIP signalling for afterbeep: RFC 3261 transactions, dialogs, digest auth, UDP/TCP.

Message parsing and serialising come from aiosipua (pinned); transactions, dialogs, the
user agent and the transports are ours (see issue 3 for aiosipua's defects there).
The call layer uses `UserAgent` and the event types re-exported here.
"""

from afterbeep.telephony.sip.auth import Credentials
from afterbeep.telephony.sip.errors import (
    CallFailed,
    SipError,
    SipParseError,
    SipStateError,
    SipTransportError,
)
from afterbeep.telephony.sip.transaction import TimerConfig
from afterbeep.telephony.sip.ua import (
    Answered,
    Cancelled,
    Dialog,
    DialogAck,
    DialogEvent,
    DtmfReceived,
    Failed,
    HangUp,
    IncomingEvent,
    IncomingInvite,
    InfoReceived,
    InviteState,
    OutgoingEvent,
    OutgoingInvite,
    OutgoingState,
    Provisional,
    UAConfig,
    UserAgent,
)

__all__ = [
    "Answered",
    "CallFailed",
    "Cancelled",
    "Credentials",
    "Dialog",
    "DialogAck",
    "DialogEvent",
    "DtmfReceived",
    "Failed",
    "HangUp",
    "IncomingEvent",
    "IncomingInvite",
    "InfoReceived",
    "InviteState",
    "OutgoingEvent",
    "OutgoingInvite",
    "OutgoingState",
    "Provisional",
    "SipError",
    "SipParseError",
    "SipStateError",
    "SipTransportError",
    "TimerConfig",
    "UAConfig",
    "UserAgent",
]
