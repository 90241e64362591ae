"""Exception tree of the SIP signalling layer.

SipError
├── SipParseError        a message that cannot be used (carries the status to answer with)
├── SipTransportError    a socket could not be opened, written or connected
├── SipStateError        an operation that the current call/dialog state does not allow
└── CallFailed           an outgoing INVITE ended without a dialog (code, reason)
"""

from __future__ import annotations

from aiosipua.message import SipRequest, SipResponse


class SipError(Exception):
    """Base of every error raised by afterbeep.telephony.sip."""


class SipParseError(SipError, ValueError):
    """A malformed SIP message.

    ``status`` is the response code a UAS should answer with (400, 416, 505),
    or ``None`` when the message must be dropped. ``message`` is what could be
    parsed, enough to build that response when it has a Via.
    """

    def __init__(
        self,
        reason: str,
        status: int | None = 400,
        message: SipRequest | SipResponse | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.message = message


class SipTransportError(SipError):
    """The transport could not carry a message."""


class SipStateError(SipError):
    """The call or dialog is in a state that does not allow this operation."""


class CallFailed(SipError):
    """An outgoing call ended without being answered."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason
